"""Streaming over a real socket, against `datasette serve` in a subprocess."""

import json
import re
import sqlite3
import zlib

from helpers import HTMX, STREAM_URL, llm_cli, rendered, start, streamed_reply, streamed_text
from sse_client import read_until_final


def test_stream_snapshot_tokens_done(server, user_dir):
    with server.client() as client:
        cid, stream_url, page = start(client, option_chunks="8", option_delay="0.05")
        # the page follows the reply while it streams
        assert f'sse-connect="{stream_url}"' in page.text, page.text
        assert 'hx-ext="sse"' in page.text
        events = read_until_final(client, stream_url)
        names = [e.name for e in events if e.name != "comment"]
        assert names[0] == "snapshot"
        assert names.count("token") >= 3
        assert names[-1] == "done"
        # ids count characters of reply text covered so far
        ids = [int(e.id) for e in events if e.id is not None]
        assert ids == sorted(ids)
        expected = "Reply to: Hello\n" + "".join(f"token{i} " for i in range(8))
        # the reply ends shown as the finished reply's HTML
        assert streamed_reply(events) == (rendered(expected), None)
        assert int(events[-1].id) == len(expected)
        # the done event is the finished message, drawn by the page's partial;
        # the reply the browser already shows is kept, not sent again
        done = events[-1].data
        assert done.startswith('<article id="m-')
        assert "status-done" in done and "sse-connect" not in done
        assert re.search(r'<div class="reply-body markdown" id="m-[0-9a-z]{26}-part-0" hx-preserve="true"></div>', done)
        assert "token0" not in done
        after = client.get(f"/-/llm/{cid}").text
        assert "sse-connect" not in after
        assert "token7" in after
    logs = sqlite3.connect(user_dir / "logs.db").execute(
        "select count(*) from turns where thread_id = ?", [cid]
    ).fetchone()[0]
    assert logs == 1


def test_multi_line_and_special_text_arrives_intact(server):
    text = "line one\nline two\r\nthird\u2028line & <b>tags</b>\n\n\nend"
    with server.client() as client:
        cid, stream_url, _ = start(client, option_text=text, option_delay="0.02")
        events = read_until_final(client, stream_url)
    assert streamed_reply(events) == (rendered(text), None)
    assert "<b>" not in "".join(e.data for e in events if e.name in ("snapshot", "token", "block"))


def test_sync_only_model_streams_from_a_thread(server):
    with server.client() as client:
        cid, stream_url, _ = start(
            client, model_id="steady-sync", option_chunks="6", option_delay="0.05"
        )
        events = read_until_final(client, stream_url)
    names = [e.name for e in events]
    assert names[0] == "snapshot" and names[-1] == "done"
    assert names.count("token") >= 3
    assert "token5" in streamed_text(events)


def test_llm_markov_streams(server):
    with server.client() as client:
        cid, stream_url, _ = start(
            client,
            model_id="markov",
            prompt="the quick brown fox jumps over the lazy dog",
            option_length="20",
            option_delay="0.02",
        )
        events = read_until_final(client, stream_url)
    assert events[-1].name == "done"
    assert len(streamed_text(events).split()) == 20


def test_follow_up_by_htmx_streams_and_keeps_context(server):
    with server.client() as client:
        cid, stream_url, _ = start(client, prompt="first question")
        read_until_final(client, stream_url)
        response = client.post(
            f"/-/llm/{cid}/prompt", data={"prompt": "second question"}, headers=HTMX
        )
        assert response.status_code == 200
        follow_url = STREAM_URL.search(response.text).group(1)
        events = read_until_final(client, follow_url)
        assert "Earlier prompts: first question" in streamed_text(events)


def test_context_survives_a_restart(make_server, user_dir):
    first = make_server()
    with first.client() as client:
        cid, stream_url, _ = start(client, prompt="remember the word tangerine", system="Be terse")
        read_until_final(client, stream_url)
    first.stop()
    second = make_server()
    with second.client() as client:
        response = client.post(
            f"/-/llm/{cid}/prompt", data={"prompt": "what was the word?"}, headers=HTMX
        )
        events = read_until_final(client, STREAM_URL.search(response.text).group(1))
    text = streamed_text(events)
    assert "Earlier prompts: remember the word tangerine" in text
    assert "System: Be terse" in text


def test_logged_reply_continues_with_llm_chat_cid(server, user_dir):
    """The conversation is llm's: `llm logs --cid` shows it."""
    with server.client() as client:
        cid, stream_url, _ = start(
            client, model_id="echo", prompt="browser prompt", option_delay=""
        )
        assert read_until_final(client, stream_url)[-1].name == "done"
    out = llm_cli(user_dir, "logs", "--cid", cid)
    assert "browser prompt" in out
    assert f"conversation: {cid}" in out
    out = llm_cli(user_dir, "-m", "echo", "--cid", cid, "from the cli")
    assert json.loads(out)["prompt"] == "from the cli"
    # and the interactive `llm chat --cid` continues it too
    out = llm_cli(user_dir, "chat", "--cid", cid, input="from llm chat\nquit\n")
    assert '"prompt": "from llm chat"' in out
    with server.client() as client:
        page = client.get(f"/-/llm/{cid}").text
    assert "browser prompt" in page and "from the cli" in page and "from llm chat" in page
    assert page.count('class="message status-done"') == 3


def test_stream_is_gzipped_for_clients_that_accept_it(server):
    with server.client() as client:
        cid, stream_url, _ = start(client, option_chunks="20", option_delay="0.02")
        with client.stream("GET", stream_url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["content-encoding"] == "gzip"
            inflate = zlib.decompressobj(31)
            text = b""
            for chunk in response.iter_raw():
                # every event is flushed: each chunk inflates to whole events
                text += inflate.decompress(chunk)
                if b"event: done" in text:
                    break
        assert text.startswith(b"retry: 1000\n\nid: ")
        assert b"event: done" in text
        with client.stream("GET", stream_url, headers={"Accept-Encoding": "identity"}) as response:
            assert "content-encoding" not in response.headers
            assert response.read().startswith(b"retry: 1000")


def test_an_event_in_pieces_goes_out_in_one_write(server):
    # Each write through the ASGI stack is a chunk of the chunked response
    # (and a gzip flush, and a syscall): a snapshot, a block or a done event
    # is drawn in several pieces but goes out as one chunk.
    import socket

    text = "".join(f"Paragraph {i} with **bold** words.\n\n" for i in range(6))
    with server.client() as client:
        cid, url, _ = start(client, option_text=text, option_delay="0.03")
    cookie = "; ".join(f"{k}={v}" for k, v in server.root_cookies.items())
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        stream = sock.makefile("rb")
        while stream.readline() not in (b"\r\n", b""):
            pass  # the headers
        chunks = []
        while True:
            size = int(stream.readline().split(b";")[0], 16)
            if size == 0:
                break
            chunks.append(stream.read(size).decode())
            stream.read(2)
            if "event: done" in chunks[-1]:
                break
    for name in ("snapshot", "block", "done"):
        mine = [chunk for chunk in chunks if f"event: {name}\n" in chunk]
        assert mine, (name, chunks)
        # the whole event, from its first line to its blank line, in one chunk
        assert all(chunk.endswith("\n\n") for chunk in mine), mine
