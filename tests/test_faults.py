"""Faults that real networks, users and models produce, injected against a
real `datasette serve`: nothing lost, nothing doubled, no model run twice."""

import re
import signal
import sqlite3
import threading

from helpers import (
    HTMX,
    STREAM_URL,
    calls,
    cid_from,
    logged_turns,
    read_some,
    rendered,
    start,
    streamed_reply,
    streamed_text,
    wait_until,
)
from sse_client import read_until_final


def unlogged_text(user_dir, mid):
    """The text so far of a reply, as its process last saved it."""
    conn = sqlite3.connect(user_dir / "logs.db")
    try:
        row = conn.execute("select text from unlogged_messages where id = ?", [mid]).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def reply_body(html):
    return re.search(r'<div class="reply-body markdown"[^>]*>(.*?)</div>', html, re.S).group(1)


def test_closing_the_tab_does_not_stop_the_reply(server, user_dir):
    with server.client() as client:
        cid, stream_url, _ = start(client, option_chunks="20", option_delay="0.05")
        events = read_some(client, stream_url, 3)
        assert events[0].name == "snapshot"
    # the client went away mid-reply; the reply still finishes and is logged
    turns = wait_until(lambda: logged_turns(user_dir, cid))
    assert "token19" in turns[0][1]
    with server.client() as client:
        page = client.get(f"/-/llm/{cid}").text
    assert "token19" in page and "sse-connect" not in page


def test_many_connections_one_model_call_same_text(server, user_dir):
    with server.client() as client:
        cid, stream_url, _ = start(
            client, prompt="only once", option_chunks="30", option_delay="0.03"
        )
        results = {}

        def follow(name):
            with server.client() as other:
                results[name] = read_until_final(other, stream_url)

        threads = [threading.Thread(target=follow, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        # a third connection drops after a few events and reconnects, as the
        # browser's EventSource does, sending Last-Event-ID
        first = read_some(client, stream_url, 4)
        last_id = [e.id for e in first if e.id][-1]
        again = read_until_final(client, stream_url, headers={"Last-Event-ID": last_id})
        for thread in threads:
            thread.join(30)
    assert again[0].name == "snapshot"  # a reconnect starts from the whole text
    expected = "Reply to: only once\n" + "".join(f"token{i} " for i in range(30))
    finished = (rendered(expected), None)
    assert streamed_reply(results["a"]) == finished
    assert streamed_reply(results["b"]) == finished
    assert streamed_reply(again) == finished
    # the browser's view after the reconnect: the snapshot replaced what the
    # first connection had appended, so nothing is doubled
    assert streamed_reply(first + again) == finished
    # (a second call, with a longer prompt, names the conversation)
    assert calls(user_dir).count("steady\t'only once'") == 1
    assert len(logged_turns(user_dir, cid)) == 1


def test_page_reload_mid_reply_shows_text_once(server):
    with server.client() as client:
        cid, stream_url, _ = start(client, option_chunks="40", option_delay="0.03")
        read_some(client, stream_url, 5)
        page = client.get(f"/-/llm/{cid}").text
        shown = re.search(r'<div class="stream-tail stream-text">(.*?)</div>', page, re.S).group(1)
        assert shown.count("token0 ") == 1
        events = read_until_final(client, STREAM_URL.search(page).group(1))
        assert events[0].name == "snapshot"
        assert streamed_text(events).count("token0 ") == 1


def test_stop_keeps_the_partial_text(server, user_dir):
    with server.client() as client:
        cid, stream_url, _ = start(client, option_chunks="200", option_delay="0.05")
        read_some(client, stream_url, 4)
        mid = stream_url.rsplit("/", 1)[1]
        response = client.post(f"/-/llm/{cid}/stop/{mid}", headers=HTMX)
        assert response.status_code == 200
        assert "status-stopped" in response.text
        assert "Stopped" in response.text
        assert "sse-connect" not in response.text
        assert 'action="/-/llm/%s/retry/%s"' % (cid, mid) in response.text
        kept = reply_body(response.text)
        assert "token0" in kept and "token199" not in kept
        # it stays stopped: the model is not running any more, and the text
        # is the text the stop answered with
        page = client.get(f"/-/llm/{cid}").text
        assert "status-stopped" in page and "token199" not in page
        assert reply_body(page) == kept
        # a stream of a stopped message ends at once with the stopped message
        final = read_until_final(client, stream_url)
        assert final[-1].name == "done" and "status-stopped" in final[-1].data
        # drawn by the snapshot, and kept as it is by the done event
        assert streamed_reply(final) == (kept, None)
        assert 'hx-preserve="true"' in final[-1].data
    # after a restart it is still stopped, with its text
    server.stop()
    server.start()
    with server.client() as client:
        page = client.get(f"/-/llm/{cid}").text
    assert "status-stopped" in page and "token0" in page
    assert logged_turns(user_dir, cid) == []


def test_stop_without_javascript_redirects(server):
    with server.client() as client:
        cid, stream_url, _ = start(client, option_chunks="200", option_delay="0.05")
        mid = stream_url.rsplit("/", 1)[1]
        response = client.post(f"/-/llm/{cid}/stop/{mid}")
        assert response.status_code == 303
        assert response.headers["location"] == f"/-/llm/{cid}#m-{mid}"
        assert "status-stopped" in client.get(f"/-/llm/{cid}").text


def test_model_error_shows_text_so_far_and_retry(server, user_dir):
    with server.client() as client:
        cid, stream_url, _ = start(
            client, prompt="fail please", option_chunks="10", option_fail_after="4"
        )
        events = read_until_final(client, stream_url)
        final = events[-1]
        assert final.name == "error"
        assert "status-failed" in final.data
        assert "steady failed after 4 tokens" in final.data
        # the text so far stays: shown as it streamed, kept by the error event
        assert "token2" in streamed_text(events)
        assert 'hx-preserve="true"' in final.data
        mid = stream_url.rsplit("/", 1)[1]
        assert f"/-/llm/{cid}/retry/{mid}" in final.data
        page = client.get(f"/-/llm/{cid}").text
        assert "steady failed after 4 tokens" in page
        # Retry runs the same prompt again, as a new message; options included,
        # so it fails again the same way
        response = client.post(f"/-/llm/{cid}/retry/{mid}", headers=HTMX)
        assert response.status_code == 200
        assert "fail please" in response.text
        new_url = STREAM_URL.search(response.text).group(1)
        assert new_url != stream_url
        assert read_until_final(client, new_url)[-1].name == "error"


def test_kill_mid_reply_then_interrupted_then_retry(server, user_dir):
    with server.client() as client:
        cid, stream_url, _ = start(
            client, prompt="long one", option_chunks="400", option_delay="0.02"
        )
        read_some(client, stream_url, 4)
        mid = stream_url.rsplit("/", 1)[1]
        # the text so far is saved about once a second: kill once it has been
        wait_until(lambda: "token0" in (unlogged_text(user_dir, mid) or ""))
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.start()
    with server.client() as client:
        page = client.get(f"/-/llm/{cid}").text
        assert "status-interrupted" in page
        assert "Interrupted" in page
        assert "token0" in page  # the partial text survived
        assert "sse-connect" not in page
        response = client.post(f"/-/llm/{cid}/retry/{mid}")
        assert response.status_code == 303
        page = client.get(f"/-/llm/{cid}").text
        new_url = STREAM_URL.search(page).group(1)
        events = read_until_final(client, new_url, timeout=60)
        assert events[-1].name == "done"
        assert "token399" in streamed_text(events)
    turns = logged_turns(user_dir, cid)
    assert len(turns) == 1 and "token399" in turns[0][1]


def test_heartbeat_comment_on_an_idle_stream(make_server):
    # a keep-alive every 0.3 s instead of every 15 (see serve.py)
    server = make_server(env={"LLM_HTMX_TEST_SET": "sse.PING_INTERVAL=0.3"})
    with server.client() as client:
        cid, stream_url, _ = start(client, option_chunks="2", option_delay="1.2")
        events = read_until_final(client, stream_url)
    assert any(e.name == "comment" and e.data == "ping" for e in events)
    assert events[-1].name == "done"


def test_a_second_worker_process_follows_the_database(make_server, user_dir):
    first = make_server()
    second = make_server()
    with first.client() as client:
        cid, stream_url, _ = start(client, option_chunks="60", option_delay="0.05")
    with second.client() as client:
        page = client.get(f"/-/llm/{cid}").text
        assert "status-running" in page or "status-pending" in page
        events = read_until_final(client, stream_url, timeout=60)
    assert events[0].name == "snapshot"
    assert events[-1].name == "done"
    # tokens as saved by the other process, then the finished blocks
    expected = "Reply to: Hello\n" + "".join(f"token{i} " for i in range(60))
    assert streamed_reply(events) == (rendered(expected), None)
    assert len([e for e in events if e.name == "token"]) >= 2
    # stopping from the other process works too
    with first.client() as client:
        cid, stream_url, _ = start(client, option_chunks="400", option_delay="0.05")
    mid = stream_url.rsplit("/", 1)[1]
    with second.client() as client:
        assert client.post(f"/-/llm/{cid}/stop/{mid}").status_code == 303
        final = read_until_final(client, stream_url, timeout=30)
    assert "status-stopped" in final[-1].data


def test_no_javascript_flow(server):
    """Plain form posts, redirects, and a page that refreshes itself."""
    with server.client() as client:
        response = client.post(
            "/-/llm/start",
            data={"model_id": "steady", "prompt": "no js", "option_chunks": "20", "option_delay": "0.05"},
        )
        cid = cid_from(response)
        page = client.get(f"/-/llm/{cid}").text
        assert f'<noscript><meta http-equiv="refresh" content="2; url=/-/llm/{cid}"></noscript>' in page
        # the text so far is on the page itself
        assert '<div class="stream-tail stream-text">' in page
        page = wait_until(
            lambda: (p := client.get(f"/-/llm/{cid}").text) and "status-done" in p and p
        )
        assert "http-equiv=\"refresh\"" not in page
        response = client.post(f"/-/llm/{cid}/prompt", data={"prompt": "again"})
        assert response.status_code == 303
        page = wait_until(
            lambda: (p := client.get(f"/-/llm/{cid}").text) and p.count("status-done") == 2 and p
        )
        assert "Earlier prompts: no js" in page


def test_stream_refuses_cross_site(server):
    with server.client() as client:
        cid, stream_url, _ = start(client)
        response = client.get(stream_url, headers={"Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 403


def test_stream_of_unknown_message_is_404(server):
    with server.client() as client:
        cid, stream_url, _ = start(client, option_delay="")
        for url in (
            f"/-/llm/{cid}/stream/01h00000000000000000000000",
            f"/-/llm/{cid}/stream/nope",
            "/-/llm/01h00000000000000000000000/stream/01h00000000000000000000000",
        ):
            assert client.get(url).status_code == 404, url
