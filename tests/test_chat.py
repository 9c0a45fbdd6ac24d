"""The chat core, through Datasette: start, page, follow-ups, logging."""

import json
import re
import os
import sqlite3
import subprocess
import sys

import pytest
from helpers import (
    MESSAGE_ID,
    ROOT,
    cid_from,
    cookies_for,
    insert_legacy,
    llm_cli,
    start,
    started,
    wait_for_generations,
)
from sse_client import read_until_final


@pytest.mark.asyncio
async def test_index_has_model_select_form_and_menu_link(ds):
    response = await ds.client.get("/-/llm", cookies=cookies_for(ds, ROOT))
    assert response.status_code == 200
    html = response.text
    assert "<select id=\"model_id\" name=\"model_id\"" in html
    assert '<option value="steady" selected>' in html
    assert '<option value="echo">' in html
    assert '<option value="markov">' in html
    assert 'name="system"' in html and 'name="prompt"' in html
    # the select comes before the textarea, and both are in the start form
    assert html.index('id="model_id"') < html.index('id="prompt"')
    assert 'action="/-/llm/start"' in html
    # vendored htmx, loaded on the plugin's pages only
    assert "/-/static-plugins/datasette-llm-htmx/htmx-2.0.11.js" in html
    assert "/-/static-plugins/datasette-llm-htmx/htmx-ext-sse-2.2.4.js" in html
    home = await ds.client.get("/", cookies=cookies_for(ds, ROOT))
    assert "htmx-2.0.11.js" not in home.text
    assert '<a href="/-/llm">LLM chat</a>' in home.text


@pytest.mark.asyncio
async def test_static_files_are_served(ds):
    for name in (
        "htmx-2.0.11.js",
        "htmx-ext-sse-2.2.4.js",
        "llm-htmx.js",
        "llm-htmx.css",
        "htmx-2.0.11.LICENSE.txt",
        "htmx-ext-sse-2.2.4.LICENSE.txt",
    ):
        response = await ds.client.get(f"/-/static-plugins/datasette-llm-htmx/{name}")
        assert response.status_code == 200, name


@pytest.mark.asyncio
async def test_default_model_falls_back_to_llms_default(user_dir, make_datasette):
    llm_cli(user_dir, "models", "default", "echo")
    ds = make_datasette({})
    await ds.invoke_startup()
    response = await ds.client.get("/-/llm", cookies=cookies_for(ds, ROOT))
    assert '<option value="echo" selected>' in response.text


@pytest.mark.asyncio
async def test_start_records_initiated_and_redirects(ds, user_dir):
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": "steady", "prompt": "Hello there", "system": "Be brief"},
        cookies=cookies_for(ds, ROOT),
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    conn = sqlite3.connect(user_dir / "logs.db")
    row = conn.execute(
        "select model_id, prompt, system, actor_id from initiated where id = ?", [cid]
    ).fetchone()
    assert row == ("steady", "Hello there", "Be brief", "root")
    # the finished reply is logged by llm itself: the turn has the message id
    turns = conn.execute("select id, model from turns where thread_id = ?", [cid]).fetchall()
    assert len(turns) == 1 and turns[0][1] == "steady"
    assert conn.execute("select count(*) from unlogged_messages").fetchone()[0] == 0

    page = await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, ROOT))
    assert page.status_code == 200
    assert MESSAGE_ID.search(page.text).group(1) == turns[0][0]
    assert "Hello there" in page.text
    assert "Be brief" in page.text
    assert "Reply to: Hello there" in page.text
    assert "token4" in page.text
    assert "sse-connect" not in page.text  # nothing is streaming any more

    logs = json.loads(llm_cli(user_dir, "logs", "--cid", cid, "--json"))
    assert [entry["prompt"] for entry in logs] == ["Hello there"]
    assert logs[0]["system"] == "Be brief"
    assert "token4" in logs[0]["response"]


@pytest.mark.asyncio
async def test_follow_up_keeps_context_llm_echo(ds):
    cookies = cookies_for(ds, ROOT)
    cid = await started(ds, cookies, model_id="echo", prompt="first")
    response = await ds.client.post(
        f"/-/llm/{cid}/prompt",
        data={"prompt": "second"},
        headers={"HX-Request": "true"},
        cookies=cookies,
    )
    assert response.status_code == 200
    # htmx gets the partial of the new message, streaming
    assert response.text.lstrip().startswith("<article id=\"m-")
    assert "sse-connect=" in response.text
    assert "second" in response.text
    await wait_for_generations(ds)
    # llm-echo replies with JSON of what it was given: the earlier prompt too
    messages = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies)).json()["messages"]
    assert [m["prompt"] for m in messages] == ["first", "second"]
    reported = json.loads(messages[1]["response"])
    assert reported["prompt"] == "second"
    assert reported["previous"] == [{"prompt": "first"}]


@pytest.mark.asyncio
async def test_a_follow_ups_answer_carries_the_words_already_said(ds):
    # The model starts while the prompt's record is written: what it has
    # said by the time the answer is drawn comes with it, one request
    # sooner than the stream (bench/upstream.py, U2).
    cookies = cookies_for(ds, ROOT)
    cid = await started(ds, cookies, model_id="steady", prompt="one")
    response = await ds.client.post(
        f"/-/llm/{cid}/prompt",
        data={"prompt": "two", "option_text": "First words.", "option_hold": "0.5"},
        headers={"HX-Request": "true"},
        cookies=cookies,
    )
    assert response.status_code == 200
    assert "sse-connect=" in response.text  # still being written: the stream goes on
    assert '<div class="stream-tail stream-text">First words.</div>' in response.text
    await wait_for_generations(ds)


@pytest.mark.asyncio
async def test_follow_up_without_htmx_redirects_to_the_message(ds):
    cookies = cookies_for(ds, ROOT)
    cid = await started(ds, cookies, model_id="steady", prompt="one")
    response = await ds.client.post(
        f"/-/llm/{cid}/prompt", data={"prompt": "two"}, cookies=cookies
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/-/llm/{cid}#m-")
    await wait_for_generations(ds)
    page = await ds.client.get(f"/-/llm/{cid}", cookies=cookies)
    assert "Earlier prompts: one" in page.text


@pytest.mark.asyncio
async def test_sync_only_model_runs_in_a_thread(ds):
    cookies = cookies_for(ds, ROOT)
    cid = await started(
        ds, cookies, model_id="markov", prompt="the cat sat on the mat",
        option_length="5", option_delay="0",
    )
    page = await ds.client.get(f"/-/llm/{cid}", cookies=cookies)
    assert "status-done" in page.text
    assert "markov" in page.text


def test_markdown_reply_is_rendered_and_sanitized(server, user_dir):
    reply = (
        "# Heading\n\n- one\n- two\n\n1. first\n2. second\n\n"
        "```python\nprint('<b>')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "A [link](https://example.com) and <script>alert(1)</script> "
        "and <b onclick=\"x()\">bold?</b>"
    )
    with server.client() as client:
        cid, stream_url, _ = start(client, prompt="md", option_text=reply, option_delay="")
        assert read_until_final(client, stream_url)[-1].name == "done"
        html = client.get(f"/-/llm/{cid}").text
    assert "<h1>Heading</h1>" in html
    assert "<li>one</li>" in html and "<ol>" in html
    assert '<code class="language-python">print(\'&lt;b&gt;\')' in html
    assert "<table>" in html and "<td>1</td>" in html
    assert '<a href="https://example.com" rel="nofollow noopener noreferrer">link</a>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "onclick" not in html.split('id="messages"')[1].replace("&lt;b onclick", "")


@pytest.mark.asyncio
async def test_cli_conversations_list_and_open(ds, user_dir):
    # Made with the real llm CLI: an async-capable model and a sync-only one
    llm_cli(user_dir, "-m", "echo", "cli echo prompt")
    llm_cli(user_dir, "-c", "cli echo follow-up")
    llm_cli(user_dir, "-m", "markov", "a b c d e f", "-o", "length", "3", "-o", "delay", "0")
    conn = sqlite3.connect(user_dir / "logs.db")
    threads = dict(conn.execute("select name, id from threads").fetchall())
    index = await ds.client.get("/-/llm", cookies=cookies_for(ds, ROOT))
    assert "cli echo prompt" in index.text
    assert "a b c d e f" in index.text
    echo_page = await ds.client.get(
        f"/-/llm/{threads['cli echo prompt']}", cookies=cookies_for(ds, ROOT)
    )
    assert echo_page.status_code == 200
    assert "cli echo prompt" in echo_page.text
    assert "cli echo follow-up" in echo_page.text
    assert echo_page.text.count('class="message status-done"') == 2
    markov_page = await ds.client.get(
        f"/-/llm/{threads['a b c d e f']}", cookies=cookies_for(ds, ROOT)
    )
    assert markov_page.status_code == 200
    assert "markov" in markov_page.text
    # and continuing it in the browser carries the CLI's history
    response = await ds.client.post(
        f"/-/llm/{threads['cli echo prompt']}/prompt",
        data={"prompt": "from the browser"},
        cookies=cookies_for(ds, ROOT),
    )
    assert response.status_code == 303
    await wait_for_generations(ds)
    logs = json.loads(llm_cli(user_dir, "logs", "--cid", threads["cli echo prompt"], "--json"))
    assert [e["prompt"] for e in logs] == ["cli echo prompt", "cli echo follow-up", "from the browser"]


@pytest.mark.asyncio
async def test_pre_032_conversations_list_and_open(ds, user_dir):
    conn = sqlite3.connect(user_dir / "logs.db")
    insert_legacy(conn)
    index = await ds.client.get("/-/llm", cookies=cookies_for(ds, ROOT))
    assert "legacy question" in index.text
    assert "gpt-4o-mini" in index.text
    page = await ds.client.get("/-/llm/01h0000000000000000000000c", cookies=cookies_for(ds, ROOT))
    assert page.status_code == 200
    html = page.text
    assert html.index("legacy question") < html.index("legacy follow-up")
    assert "<strong>answer</strong>" in html
    assert "legacy system" in html
    assert html.count('class="message status-done"') == 2


@pytest.mark.asyncio
async def test_unknown_conversation_is_404(ds):
    for path in ("/-/llm/01h00000000000000000000zzz", "/-/llm/not-an-id"):
        response = await ds.client.get(path, cookies=cookies_for(ds, ROOT))
        assert response.status_code == 404, path


@pytest.mark.asyncio
async def test_anonymous_is_refused(ds):
    response = await ds.client.get("/-/llm")
    assert response.status_code == 403
    assert "llm-chat" in response.text
    response = await ds.client.post("/-/llm/start", data={"model_id": "steady", "prompt": "x"})
    assert response.status_code == 403


def test_datasette_llm_command_runs_the_llm_cli(user_dir):
    result = subprocess.run(
        [sys.executable, "-m", "datasette", "llm", "models", "list"],
        env={**os.environ, "LLM_USER_PATH": str(user_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "echo" in result.stdout


@pytest.mark.asyncio
async def test_datasettes_own_assets_are_found_once(ds, monkeypatch):
    # Datasette's base template asks static() for four files on every page,
    # and each answer resolves paths on disk: the plugin's pages remember
    # the answers (as long as Datasette caches at all).
    cookies = cookies_for(ds, ROOT)
    first = await ds.client.get("/-/llm", cookies=cookies)
    assert re.search(r'href="/-/static/app\.css\?_hash=[0-9a-f]+"', first.text)
    import datasette.app

    calls = []
    resolve = datasette.app._resolve_static_asset_path
    monkeypatch.setattr(
        datasette.app, "_resolve_static_asset_path", lambda *a: calls.append(a) or resolve(*a)
    )
    await ds.client.get("/", cookies=cookies)  # a page of Datasette's own: it resolves
    assert calls
    calls.clear()
    again = await ds.client.get("/-/llm", cookies=cookies)
    assert again.text.count("?_hash=") == first.text.count("?_hash=")
    assert calls == []
