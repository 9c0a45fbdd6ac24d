"""Replies shown as markdown block by block while they stream, over a real
socket against `datasette serve`: "block" events carry the blocks just
finished, a reconnect, a reload and another process show the same, and
"done" does not send the reply again."""

import re

from helpers import HTMX, STREAM_URL, rendered, start, streamed_reply, streamed_text
from sse_client import iter_events, read_until_final
from xss_payloads import PAYLOADS

REPLY = (
    "# Plan\n\n"
    "Intro with a **bold** word and `code`.\n\n"
    "- one\n- two\n  - nested\n\n"
    "1. first\n\n2. second\n\n"
    "```python\ndef f():\n\n    return 1\n```\n\n"
    "| name | value |\n|---|---:|\n| a | 1 |\n| b | 2 |\n\n"
    "Title\n-----\n\n"
    "> a quote\n\n"
    "<b>not html</b> and the last paragraph."
)


def blocks_of(event):
    """A block event's HTML before its tail."""
    return re.split(r'<(?:div|pre) class="stream-tail', event.data)[0]


def test_blocks_stream_before_done_and_add_up_to_the_finished_reply(server):
    with server.client() as client:
        cid, url, _ = start(client, option_text=REPLY, option_chunk_size="4", option_delay="0.01")
        events = read_until_final(client, url)
    names = [e.name for e in events if e.name != "comment"]
    assert names[0] == "snapshot" and names[-1] == "done"
    blocks = [e for e in events if e.name == "block"]
    assert len(blocks) >= 5
    # formatted before the end: a list and a bold word
    shown = "".join(blocks_of(e) for e in blocks[:-1])
    assert "<li>one" in shown and "<strong>bold</strong>" in shown
    # an open fence was shown as code while it was written
    assert any('<pre class="stream-tail"><code class="stream-text">' in e.data for e in blocks)
    # what the browser ends with is the finished reply's HTML, exactly
    assert streamed_reply(events) == (rendered(REPLY), None)
    # tokens are escaped text; only block events carry (sanitized) HTML
    assert all("<" not in e.data for e in events if e.name == "token")
    assert "<b>" not in "".join(e.data for e in events)
    # ids count characters, never going back
    ids = [int(e.id) for e in events if e.id is not None]
    assert ids == sorted(ids) and ids[-1] == len(REPLY)
    # done keeps what the browser shows, and sends none of it again
    done = events[-1].data
    assert re.search(r'<div class="reply-body markdown" id="m-[0-9a-z]{26}-part-0" hx-preserve="true"></div>', done)
    assert "last paragraph" not in done and len(done) < 4000
    # and the page drawn afterwards is what was streamed
    with server.client() as client:
        page = client.get(f"/-/llm/{cid}").text
    body = re.search(r'<div class="reply-body markdown" id="m-[0-9a-z]{26}-part-0">(.*?)</div>\s*<footer', page, re.S)
    assert body.group(1) == rendered(REPLY)


def test_a_reconnect_sees_the_blocks_so_far_then_the_rest(server):
    with server.client() as client:
        cid, url, _ = start(client, option_text=REPLY, option_chunk_size="3", option_delay="0.03")
        first = []
        with client.stream("GET", url) as response:
            for event in iter_events(response):
                first.append(event)
                if sum(e.name == "block" for e in first) >= 2:
                    break
        shown, _ = streamed_reply(first)
        assert "<h1>Plan</h1>" in shown
        again = read_until_final(client, url, headers={"Last-Event-ID": first[-1].id})
    # the reconnect's snapshot draws the blocks already shown, then the tail
    assert again[0].name == "snapshot"
    assert streamed_reply(again[:1])[0].startswith(shown)
    finished = (rendered(REPLY), None)
    assert streamed_reply(again) == finished
    assert streamed_reply(first + again) == finished  # nothing doubled


def test_a_page_reloaded_mid_reply_draws_the_finished_blocks(server):
    with server.client() as client:
        cid, url, _ = start(client, option_text=REPLY, option_chunk_size="3", option_delay="0.03")
        seen = []
        with client.stream("GET", url) as response:
            for event in iter_events(response):
                seen.append(event)
                if "<li>one" in streamed_reply(seen)[0]:
                    break
            # while that stream is still open, the page is drawn
            page = client.get(f"/-/llm/{cid}").text
    assert "sse-connect" in page
    live = re.search(r'<div class="reply-body markdown" id="m-[0-9a-z]{26}-part-0">(.*)', page, re.S).group(1)
    assert "<h1>Plan</h1>" in live and "<li>one" in live
    assert live.index("<li>one") < live.index('class="stream-tail')
    with server.client() as client:
        events = read_until_final(client, STREAM_URL.search(page).group(1))
    assert streamed_reply(events) == (rendered(REPLY), None)


def test_a_reply_followed_from_another_process_streams_in_blocks(make_server):
    first = make_server()
    second = make_server()
    with first.client() as client:
        cid, url, _ = start(client, option_text=REPLY, option_chunk_size="3", option_delay="0.04")
    with second.client() as client:
        events = read_until_final(client, url, timeout=60)
    assert sum(e.name == "block" for e in events) >= 2
    assert streamed_reply(events) == (rendered(REPLY), None)
    assert 'hx-preserve="true"' in events[-1].data


def test_a_link_defined_later_resolves_when_the_reply_ends(server):
    """The documented exception: a link whose definition comes after it
    shows as text until the end; then done sends the finished text whole."""
    text = "See [the docs] first.\n\nMore words here.\n\n[the docs]: https://example.com/docs\n"
    with server.client() as client:
        cid, url, _ = start(client, option_text=text, option_delay="0.02")
        events = read_until_final(client, url)
    assert any(e.name == "block" and "[the docs]" in e.data for e in events)
    done = events[-1].data
    assert "hx-preserve" not in done
    assert '<a href="https://example.com/docs" rel="nofollow noopener noreferrer">the docs</a>' in done


def test_a_follow_up_streams_in_blocks_too(server):
    with server.client() as client:
        cid, url, _ = start(client, option_chunks="2", option_delay="0")
        read_until_final(client, url)
        response = client.post(
            f"/-/llm/{cid}/prompt",
            data={"prompt": "more", "option_text": REPLY, "option_chunk_size": "5", "option_delay": "0.01"},
            headers=HTMX,
        )
        # the htmx swap draws the reply being written as the page does
        assert 'class="stream-blocks" sse-swap="block"' in response.text
        events = read_until_final(client, STREAM_URL.search(response.text).group(1))
    assert streamed_reply(events) == (rendered(REPLY), None)


def test_the_xss_corpus_streamed_in_blocks(server):
    """Every payload, streamed in small pieces: what the stream shows is the
    finished (sanitized) render, and no payload's markup is live on the way."""
    with server.client() as client:
        for payload in PAYLOADS[::3]:
            text = "Intro\n\n" + payload + "\n\nafter\n\n" + payload
            cid, url, _ = start(client, option_text=text, option_chunk_size="3", option_delay="0")
            events = read_until_final(client, url)
            assert streamed_reply(events) == (rendered(text), None), payload
            for event in events:
                if event.name in ("snapshot", "block", "token"):
                    lowered = event.data.lower()
                    assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
                    assert not re.search(r"<[^>]*\son\w+\s*=", lowered), payload


def test_text_of_a_reply_is_never_lost_between_blocks(server):
    """The visible text, block events and tokens together, is the reply's."""
    text = "\n\n".join(f"Paragraph {i} with **some** words." for i in range(30))
    with server.client() as client:
        cid, url, _ = start(client, option_text=text, option_chunk_size="7", option_delay="0.002")
        events = read_until_final(client, url)
    shown = streamed_text(events)
    for i in range(30):
        assert f"Paragraph {i} with some words." in shown
