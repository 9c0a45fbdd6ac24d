import asyncio
import re

from datasette_llm_htmx.generation import generations

LOCATION = re.compile(r"/-/llm/([0-9a-z]{26})$")
STREAM_URL = re.compile(r'sse-connect="([^"]+)"')
MESSAGE_ID = re.compile(r'<article id="m-([0-9a-z]{26})"')


async def wait_for_generations(ds, timeout=10):
    """Wait until every generation started in this process has finished,
    and named its conversation if it was the first."""
    running = list(generations(ds).running.values())
    tasks = [g.task for g in running if g.task]
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)
    titles = [g.title for g in running if g.title is not None]
    if titles:
        await asyncio.wait_for(asyncio.gather(*titles, return_exceptions=True), timeout)


def cid_from(response) -> str:
    assert response.status_code == 303, response.text
    match = LOCATION.search(response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)
