"""What the tests share: ids and URLs found in pages, cookies, starting a
chat over HTTP, reading streams, waiting on conditions, the llm CLI, rows as
llm before 0.32 logged them."""

import asyncio
import html
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import time

from sse_client import iter_events

ROOT = {"id": "root"}
HTMX = {"HX-Request": "true"}
LOCATION = re.compile(r"/-/llm/([0-9a-z]{26})$")
STREAM_URL = re.compile(r'sse-connect="([^"]+)"')
MESSAGE_ID = re.compile(r'<article id="m-([0-9a-z]{26})"')


def cookies_for(ds, actor):
    """Cookies that sign ``actor`` in, for requests through ``ds.client``."""
    return {"ds_actor": ds.client.actor_cookie(actor)}


def cid_from(response) -> str:
    assert response.status_code == 303, response.text
    match = LOCATION.search(response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def start(client, **fields):
    """Start a conversation over HTTP (a small delay per token keeps the
    reply streaming while the page loads). Returns (cid, the stream URL of
    its reply, the page)."""
    data = {"model_id": "steady", "prompt": "Hello", "option_delay": "0.02", **fields}
    cid = cid_from(client.post("/-/llm/start", data=data))
    page = client.get(f"/-/llm/{cid}")
    assert page.status_code == 200
    return cid, stream_url_of_last(cid, page.text), page


def stream_url_of_last(cid, page_html) -> str:
    """The stream of the last message on a page, streaming or not: the
    stream of a finished reply answers its snapshot and done at once."""
    mid = MESSAGE_ID.findall(page_html)[-1]
    return f"/-/llm/{cid}/stream/{mid}"


LIVE_BODY = re.compile(r'<div class="reply-body markdown" id="[^"]+">')
TAIL = re.compile(
    r'(?:<div class="stream-tail stream-text">|<pre class="stream-tail"><code class="stream-text">)'
    r"(.*?)</(?:div|code)>",
    re.S,
)


def streamed_reply(events):
    """The text being written as a browser ends up with it: (the HTML of
    its finished blocks, the text still being written after them, or None
    once it is all blocks). The last snapshot draws both, tokens append to
    the tail, and a block event puts blocks in the tail's place, with a new
    tail (or none)."""
    blocks, tail = "", None
    for event in events:
        if event.name == "snapshot":
            starts = list(LIVE_BODY.finditer(event.data))
            body = event.data[starts[-1].end():] if starts else ""
            blocks, tail = _blocks_and_tail(body, in_body=True)
        elif event.name == "token":
            tail = (tail or "") + html.unescape(event.data)
        elif event.name == "block":
            more, tail = _blocks_and_tail(event.data)
            blocks += more
    return blocks, tail


# What sse.py writes in place of characters that may not reach the wire raw
FRAMED = {"&#13;": "\r", "&#8232;": "\u2028", "&#8233;": "\u2029"}


def _blocks_and_tail(data, in_body=False):
    for reference, character in FRAMED.items():
        data = data.replace(reference, character)
    found = TAIL.search(data)
    if found:
        return data[: found.start()], html.unescape(found.group(1))
    if in_body:  # a complete text: its body's blocks, up to the body's end
        data = data[: data.rindex("</div>")] if "</div>" in data else data
    return data, None


def streamed_text(events):
    """The reply text a browser ends up showing: its blocks' text (tags
    dropped), then the text still being written."""
    blocks, tail = streamed_reply(events)
    return html.unescape(re.sub(r"<[^>]+>", "", blocks)) + (tail or "")


def rendered(text):
    """The finished reply's HTML for ``text``, as the server renders it."""
    from datasette_llm_htmx.rendering import _render

    return _render(text)


def read_some(client, url, count):
    """Read ``count`` events, then drop the connection."""
    events = []
    with client.stream("GET", url) as response:
        for event in iter_events(response):
            events.append(event)
            if len(events) >= count:
                break
    return events


def wait_until(predicate, timeout=15, interval=0.05):
    """The predicate's first true value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def calls(user_dir):
    """One line per model call the test models received."""
    path = user_dir.parent / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def llm_cli(user_dir, *args, input=None):
    """Run the real llm CLI (with the test models) against the test's logs.db."""
    result = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).parent / "llm_cli.py"), *args],
        env={**os.environ, "LLM_USER_PATH": str(user_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def logged_turns(user_dir, cid):
    """(turn id, response) of each reply of a conversation that llm logged."""
    conn = sqlite3.connect(user_dir / "logs.db")
    try:
        return conn.execute(
            "select turns.id, turn_search.response from turns"
            " join turn_search on turn_search.turn_id = turns.id"
            " where thread_id = ?",
            [cid],
        ).fetchall()
    finally:
        conn.close()


async def wait_for_generations(ds, timeout=10):
    """Wait until every generation started in this process has finished,
    and named its conversation if it was the first."""
    from datasette_llm_htmx.generations import generations

    running = list(generations(ds).replies.values())
    tasks = [g.task for g in running if g.task]
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)
    titles = [g.title for g in running if g.title is not None]
    if titles:
        await asyncio.wait_for(asyncio.gather(*titles, return_exceptions=True), timeout)


async def started(ds, cookies, **data) -> str:
    """A conversation started in-process (through Datasette), its first
    reply finished: its id."""
    cid = cid_from(await ds.client.post("/-/llm/start", data=data, cookies=cookies))
    await wait_for_generations(ds)
    return cid


LEGACY_ROWS = [
    # (id, conversation_id, model, prompt, system, response, datetime_utc)
    ("01h00000000000000000000001", "01h0000000000000000000000c", "gpt-4o-mini",
     "legacy question", "legacy system", "legacy **answer**", "2024-05-01T10:00:00"),
    ("01h00000000000000000000002", "01h0000000000000000000000c", "gpt-4o-mini",
     "legacy follow-up", None, "second legacy answer", "2024-05-01T10:01:00"),
]


def insert_legacy(conn):
    """Rows as llm before 0.32 wrote them: conversations and responses."""
    conn.execute(
        "insert into conversations (id, name, model) values (?, ?, ?)",
        ["01h0000000000000000000000c", "legacy question", "gpt-4o-mini"],
    )
    for row in LEGACY_ROWS:
        conn.execute(
            "insert into responses (id, conversation_id, model, prompt, system, response,"
            " datetime_utc, options_json, duration_ms, input_tokens, output_tokens)"
            " values (?, ?, ?, ?, ?, ?, ?, '{}', 1200, 5, 7)",
            row,
        )
    conn.commit()
