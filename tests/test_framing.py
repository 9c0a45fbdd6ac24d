"""Text at its edges: line separators that could forge SSE frames, lone
surrogates, NUL, and Markdown that could forge headings in an export. Read
back over a real socket with a parser that follows the SSE spec."""

import sqlite3

import pytest
from helpers import (
    HTMX,
    ROOT,
    STREAM_URL,
    cid_from,
    cookies_for,
    logged_turns,
    start,
    rendered,
    streamed_reply,
    wait_for_generations,
)
from llm_test_models import ODD_REPLIES
from sse_client import iter_events

RAW_SEPARATORS = ("\r", "\u2028", "\u2029", "\x85")


def start_odd(client, prompt):
    """(cid, stream URL) of a reply of the odd model, which takes no options."""
    cid, url, _ = start(client, model_id="odd", prompt=prompt, option_delay="")
    return cid, url


def read_raw(client, url):
    """The body as it crossed the wire (no gzip), and its events."""
    with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
        body = response.read()
    text = body.decode("utf-8")  # valid UTF-8, or this raises

    class Replay:
        def iter_text(self):
            yield text

    events = [e for e in iter_events(Replay()) if e.name != "comment"]
    return text, events


def assert_clean_framing(raw, events):
    for separator in RAW_SEPARATORS:
        assert separator not in raw, repr(separator)
    names = [e.name for e in events]
    assert names[0] == "snapshot"
    assert set(names) <= {"snapshot", "token", "block", "done", "error"}, names
    assert sum(name in ("done", "error") for name in names) == 1, names
    assert names[-1] in ("done", "error")


def test_a_reply_cannot_forge_an_event(server):
    with server.client() as client:
        cid, url = start_odd(client, "forge")
        raw, events = read_raw(client, url)
        # a reconnect mid-reply starts from a snapshot: it too stays one event
        again, again_events = read_raw(client, url)
    assert_clean_framing(raw, events)
    assert_clean_framing(again, again_events)
    assert events[-1].name == "done"
    assert streamed_reply(events) == (rendered("".join(ODD_REPLIES["forge"])), None)
    assert not any(e.data == "SPOOFED" for e in events + again_events)


def test_separators_in_a_reply_and_a_prompt_stay_text(server):
    prompt = "prompt cr\rls\u2028ps\u2029nel\x85end"
    with server.client() as client:
        cid, url = start_odd(client, "separators")
        raw, events = read_raw(client, url)
        assert_clean_framing(raw, events)
        # NEL is a line break: HTML has no character reference for it
        expected = rendered(ODD_REPLIES["separators"][0]).replace("\x85", "\n")
        assert streamed_reply(events) == (expected, None)
        # the prompt is in the done event (and names the conversation)
        cid, url = start_odd(client, prompt)
        raw, events = read_raw(client, url)
        assert_clean_framing(raw, events)
        assert "prompt cr&#13;ls&#8232;ps&#8233;nel" in events[-1].data
        # a follow-up by htmx answers HTML with the prompt, outside SSE
        response = client.post(
            f"/-/llm/{cid}/prompt", data={"prompt": prompt}, headers=HTMX
        )
        raw, events = read_raw(client, STREAM_URL.search(response.text).group(1))
        assert_clean_framing(raw, events)


def test_an_error_cannot_forge_an_event(server):
    with server.client() as client:
        cid, url = start_odd(client, "error:bad\r\revent: done\rdata: SPOOFED\u2028\x85!")
        raw, events = read_raw(client, url)
    assert_clean_framing(raw, events)
    assert events[-1].name == "error"
    assert "status-failed" in events[-1].data
    assert "bad&#13;&#13;event: done&#13;" in events[-1].data


def test_a_title_cannot_carry_a_line_break(server):
    with server.client() as client:
        cid, url = start_odd(client, "hello")
        read_raw(client, url)
        response = client.post(
            f"/-/llm/{cid}/title", data={"title": "one\rtwo\u2028three\x85four\nfive"},
            headers=HTMX,
        )
        assert "<h1>one two three four five</h1>" in response.text


def test_lone_surrogates_are_replaced_not_fatal(server, user_dir):
    with server.client() as client:
        cid, url = start_odd(client, "surrogate")
        raw, events = read_raw(client, url)
        assert_clean_framing(raw, events)
        assert events[-1].name == "done", events[-1].data
        expected = "".join(ODD_REPLIES["surrogate"]).replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
        assert streamed_reply(events) == (rendered(expected), None)
        page = client.get(f"/-/llm/{cid}")
        assert page.status_code == 200 and "status-done" in page.text
        assert client.get(f"/-/llm/{cid}.md").status_code == 200
        assert client.get(f"/-/llm/{cid}.json").status_code == 200
    [(_, logged)] = logged_turns(user_dir, cid)
    assert "\ufffd" in logged
    conn = sqlite3.connect(user_dir / "logs.db")
    assert conn.execute("select count(*) from unlogged_messages").fetchone()[0] == 0


@pytest.mark.asyncio
async def test_any_search_string_answers_200(ds):
    for q in ("\x00", "a\x00b", "\x00\x00\x00", '"\x00', "\x7f\x01", "\ufffd", "*", "NEAR(", "\u2028"):
        response = await ds.client.get("/-/llm", params={"q": q}, cookies=cookies_for(ds, ROOT))
        assert response.status_code == 200, repr(q)


@pytest.mark.asyncio
async def test_the_markdown_export_cannot_be_forged(ds):
    prompt = "question\n## Response\n\nforged by the prompt\n```\n## Response\n"
    reply = "answer\n\n````\n## Response\n\nforged by the reply\n# 2024-01-01 conversation: x"
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": "steady", "prompt": prompt, "option_text": reply},
        cookies=cookies_for(ds, ROOT),
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    text = (await ds.client.get(f"/-/llm/{cid}.md", cookies=cookies_for(ds, ROOT))).text
    # Read as a Markdown reader would: every line of the prompt and of the
    # reply is inside a fence, and every fence is closed
    headings, outside, fence = [], [], None
    title, *lines = text.split("\n")
    assert title.startswith("# ")  # one line, whatever the title says
    for line in lines:
        if fence is None and line.startswith("```"):
            fence = "`" * (len(line) - len(line.lstrip("`")))
        elif fence is not None and line == fence:
            fence = None
        elif fence is None:
            outside.append(line)
            if line.startswith("#"):
                headings.append(line)
    assert fence is None
    assert not any("forged" in line or line in ("question", "answer") for line in outside)
    assert [h for h in headings if h.startswith("## ")] == ["## Prompt", "## Response"]
    assert len([h for h in headings if h.startswith("# ")]) == 1  # one message
    # and the text is all there, as typed
    assert prompt in text and reply in text
