"""llm's OpenAI plugin against a local OpenAI-compatible server (bench/):
replies through the chat reuse one client per event loop, endpoint and
key, and never share one between two keys."""

import asyncio
import json
import pathlib
import socket
import subprocess
import sys
import time

import httpx
import pytest
from helpers import ROOT, cid_from, cookies_for, wait_for_generations

from datasette_llm_htmx import catalog, openai_reuse

SERVER = pathlib.Path(__file__).parent.parent / "bench" / "openai_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def upstream(user_dir):
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    (user_dir / "extra-openai-models.yaml").write_text(
        "- model_id: local-upstream\n"
        "  model_name: local-upstream\n"
        f"  api_base: http://127.0.0.1:{port}/v1\n"
        "  api_key_name: local-upstream\n"
    )
    (user_dir / "keys.json").write_text(json.dumps({"local-upstream": "dummy-not-a-secret"}))
    catalog.resolve_model.cache_clear()
    yield port
    process.terminate()
    process.wait()
    catalog.resolve_model.cache_clear()


@pytest.mark.asyncio
async def test_replies_reuse_one_client(make_datasette, upstream):
    ds = make_datasette({"default_model": "local-upstream", "title_model": False})
    await ds.invoke_startup()
    before = dict(openai_reuse.stats)
    cids = []
    for prompt in ("tokens=5", "tokens=7"):
        response = await ds.client.post(
            "/-/llm/start", cookies=cookies_for(ds, ROOT), data={"model_id": "local-upstream", "prompt": prompt}
        )
        cids.append(cid_from(response))
        await wait_for_generations(ds)
    for cid in cids:
        data = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies_for(ds, ROOT))).json()
        assert data["messages"][0]["status"] == "done", data
    assert openai_reuse.stats["built"] - before["built"] == 1
    assert openai_reuse.stats["reused"] - before["reused"] >= 1


@pytest.mark.asyncio
async def test_two_keys_never_share_a_client(upstream):
    model, _ = catalog.resolve_model("local-upstream")
    first = model.get_client("key-of-alice", async_=True)
    assert model.get_client("key-of-alice", async_=True) is first
    other = model.get_client("key-of-bob", async_=True)
    assert other is not first and other.api_key == "key-of-bob"
    # another event loop gets its own (a pool belongs to its loop)
    elsewhere = await asyncio.to_thread(lambda: asyncio.run(_client_in_new_loop(model)))
    assert elsewhere is not first


async def _client_in_new_loop(model):
    return model.get_client("key-of-alice", async_=True)
