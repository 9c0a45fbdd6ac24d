"""Every part of an llm conversation shows: reasoning, tool calls and their
results, attachments and fragments, from the llm CLI (both schemas) and
from the browser; exports carry them; attachments are served safely."""

import base64
import hashlib
import html
import json
import re
import sqlite3

import pytest
from sse_client import read_until_final
from helpers import (
    ROOT,
    cid_from,
    cookies_for,
    llm_cli,
    start,
    streamed_text,
    wait_for_generations,
)

# A 1x1 PNG, and a GIF
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def thread_of(user_dir, prompt_like):
    conn = sqlite3.connect(user_dir / "logs.db")
    return conn.execute(
        "select thread_id from turns join turn_search on turn_search.turn_id = turns.id"
        " where turn_search.prompt like ? order by turns.id desc", [prompt_like]
    ).fetchone()[0]


async def page_of(ds, cid, actor=ROOT):
    response = await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, actor))
    assert response.status_code == 200
    return response.text


@pytest.mark.asyncio
async def test_reasoning_from_the_cli(ds, user_dir):
    llm_cli(user_dir, "-m", "echo", "-o", "thinking", "1", "think about it")
    cid = thread_of(user_dir, "think about it")
    page = await page_of(ds, cid)
    reasoning = re.search(r'<details class="reasoning">(.*?)</details>', page, re.S).group(1)
    assert "First I consider the prompt, then I decide what to say." in reasoning
    reply = re.search(r'<div class="reply-body markdown"[^>]*>(.*?)</div>', page, re.S).group(1)
    assert "First I consider" not in reply  # never mixed into the reply
    data = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies_for(ds, ROOT))).json()
    assert data["messages"][0]["reasoning"] == "First I consider the prompt, then I decide what to say."


@pytest.mark.asyncio
async def test_tool_calls_and_results_from_the_cli(ds, user_dir):
    calls = {"tool_calls": [
        {"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "boom", "arguments": {"x": "<b>bad</b>"}},
    ]}
    llm_cli(
        user_dir, "-m", "echo",
        "--functions", "def add(a: int, b: int):\n    return a + b\n\n"
                       "def boom(x: str):\n    raise RuntimeError('boom ' + x)\n",
        json.dumps(calls),
    )
    cid = thread_of(user_dir, '{"tool_calls"%')
    page = await page_of(ds, cid)
    articles = page.split('<article id="m-')[1:]
    assert len(articles) == 2
    first, second = articles
    # the call, with its arguments as code
    assert "Called <code>add</code>" in first and "Called <code>boom</code>" in first
    assert '&#34;a&#34;: 1' in first or '&quot;a&quot;: 1' in first
    assert "&lt;b&gt;bad&lt;/b&gt;" in first and "<b>bad</b>" not in first
    # the next turn carries only results: drawn as that, not as an empty prompt
    assert '<span class="who" id="m-' in second and ">Tool results</span>" in second
    assert 'class="prompt-text"' not in second
    assert "Result of <code>add</code>" in second
    assert '<pre class="tool-output">3</pre>' in second
    assert "Error from <code>boom</code>" in second
    assert "RuntimeError: boom &lt;b&gt;bad&lt;/b&gt;" in second
    markdown = (await ds.client.get(f"/-/llm/{cid}.md", cookies=cookies_for(ds, ROOT))).text
    assert "### Tool calls" in markdown and "add" in markdown
    assert "### Tool results" in markdown and "RuntimeError: boom <b>bad</b>" in markdown
    data = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies_for(ds, ROOT))).json()
    assert [c["name"] for c in data["messages"][0]["tool_calls"]] == ["add", "boom"]
    assert data["messages"][0]["tool_calls"][0]["arguments"] == {"a": 1, "b": 2}
    results = data["messages"][1]["tool_results"]
    assert results[0]["output"] == "3" and results[1]["error"] == "RuntimeError: boom <b>bad</b>"


@pytest.mark.asyncio
async def test_an_attachment_from_the_cli(ds, user_dir, tmp_path):
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    llm_cli(user_dir, "-m", "echo", "-a", str(image), "describe this")
    cid = thread_of(user_dir, "describe this")
    page = await page_of(ds, cid)
    attachment_id = hashlib.sha256(PNG).hexdigest()
    url = f"/-/llm/{cid}/attachment/{attachment_id}"
    assert f'<a class="attachment attachment-image" href="{url}"' in page
    # llm kept the path, not the bytes: no size is known
    assert f'<img src="{url}" alt="Attached image dot.png (image/png)"' in page
    # served from the path llm recorded, checked against its hash
    response = await ds.client.get(url, cookies=cookies_for(ds, ROOT))
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    # a file changed since is not served as if it were the attachment
    image.write_bytes(GIF)
    assert (await ds.client.get(url, cookies=cookies_for(ds, ROOT))).status_code == 404


@pytest.mark.asyncio
async def test_a_fragment_from_the_cli(ds, user_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("These are my notes.\nLine two of notes.\n")
    llm_cli(user_dir, "-m", "echo", "-f", str(notes), "question about notes")
    cid = thread_of(user_dir, "%question about notes")
    page = await page_of(ds, cid)
    fragment = re.search(r'<details class="fragment">(.*?)</details>', page, re.S).group(1)
    assert str(notes) in fragment and "These are my notes." in fragment
    assert '<div class="prompt-text">question about notes</div>' in page
    # the title comes from what was typed, not from the fragment
    assert "<h1>question about notes</h1>" in page
    data = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies_for(ds, ROOT))).json()
    message = data["messages"][0]
    assert message["prompt"] == "question about notes"
    assert message["fragments"] == [{"source": str(notes), "content": notes.read_text()}]


def insert_legacy_parts(conn):
    """A pre-0.32 response with reasoning, an attachment, a fragment, a tool
    call, and a second response with its result."""
    conn.execute("insert into conversations (id, name, model) values ('01h00000000000000000000p0c', 'old parts', 'echo')")
    rows = [
        ("01h00000000000000000000pr1", "legacy typed", "reply one", "legacy thinking"),
        ("01h00000000000000000000pr2", "", "reply two", None),
    ]
    for rid, prompt, reply, reasoning in rows:
        conn.execute(
            "insert into responses (id, model, prompt, response, conversation_id, datetime_utc, reasoning)"
            " values (?, 'echo', ?, ?, '01h00000000000000000000p0c', '2025-01-01T00:00:00', ?)",
            [rid, prompt, reply, reasoning],
        )
    conn.execute(
        "insert into attachments (id, type, content) values (?, 'image/gif', ?)",
        [hashlib.sha256(GIF).hexdigest(), GIF],
    )
    conn.execute(
        "insert into prompt_attachments (response_id, attachment_id, \"order\") values (?, ?, 0)",
        ["01h00000000000000000000pr1", hashlib.sha256(GIF).hexdigest()],
    )
    conn.execute(
        "insert into fragments (id, hash, content, source, datetime_utc)"
        " values (99, 'h', 'old fragment text', 'old.txt', '2025-01-01')"
    )
    conn.execute(
        "insert into prompt_fragments (response_id, fragment_id, \"order\") values (?, 99, 0)",
        ["01h00000000000000000000pr1"],
    )
    conn.execute(
        "insert into tool_calls (response_id, name, arguments, tool_call_id) values (?, 'lookup', ?, 't1')",
        ["01h00000000000000000000pr1", json.dumps({"q": "x"})],
    )
    conn.execute(
        "insert into tool_results (response_id, name, output, tool_call_id) values (?, 'lookup', 'found it', 't1')",
        ["01h00000000000000000000pr2"],
    )
    conn.commit()


@pytest.mark.asyncio
async def test_every_part_from_the_pre_032_tables(ds):
    conn = sqlite3.connect(ds.get_database("llm").path)
    insert_legacy_parts(conn)
    page = await page_of(ds, "01h00000000000000000000p0c")
    assert "legacy thinking" in re.search(r'<details class="reasoning">(.*?)</details>', page, re.S).group(1)
    assert "old fragment text" in page and "old.txt" in page
    assert '<div class="prompt-text">legacy typed</div>' in page
    assert f'/attachment/{hashlib.sha256(GIF).hexdigest()}' in page
    assert "Called <code>lookup</code>" in page
    assert ">Tool results</span>" in page and "found it" in page
    response = await ds.client.get(
        f"/-/llm/01h00000000000000000000p0c/attachment/{hashlib.sha256(GIF).hexdigest()}",
        cookies=cookies_for(ds, ROOT),
    )
    assert response.status_code == 200 and response.content == GIF


@pytest.mark.asyncio
async def test_an_image_sent_from_the_browser_reaches_the_model_and_is_logged(ds, user_dir):
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": "echo", "prompt": "what is this?"},
        files={"attachment": ("dot.png", PNG, "image/png")},
        cookies=cookies_for(ds, ROOT),
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    page = await page_of(ds, cid)
    attachment_id = hashlib.sha256(PNG).hexdigest()
    assert f'<img src="/-/llm/{cid}/attachment/{attachment_id}" alt="Attached image dot.png' in page
    # llm-echo reports the attachment it was given
    data = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies_for(ds, ROOT))).json()
    echoed = json.loads(data["messages"][0]["response"])
    assert [a["type"] for a in echoed["attachments"]] == ["image/png"]
    assert data["messages"][0]["attachments"][0]["name"] == "dot.png"
    # logged by llm, with its bytes: `llm logs` shows it, the CLI continues with it
    conn = sqlite3.connect(user_dir / "logs.db")
    assert conn.execute("select content from attachments where id = ?", [attachment_id]).fetchone()[0] == PNG
    assert "### Attachments" in llm_cli(user_dir, "logs", "--cid", cid)
    out = llm_cli(user_dir, "-m", "echo", "--cid", cid, "and now?")
    assert json.loads(out)["prompt"] == "and now?"
    served = await ds.client.get(f"/-/llm/{cid}/attachment/{attachment_id}", cookies=cookies_for(ds, ROOT))
    assert served.content == PNG


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "model_id,upload,status,message",
    [
        ("steady", ("dot.png", PNG, "image/png"), 400, "The model 'steady' cannot read attached files."),
        ("echo", ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/png"),
         400, "cannot read 'x.svg' (image/svg+xml): it reads image/gif, image/jpeg, image/png."),
        ("echo", ("x.png", b"<html><script>alert(1)</script></html>", "image/png"),
         400, "cannot read 'x.png' (text/html)"),
        ("echo", ("big.png", PNG + b"\0" * (1536 * 1024), "image/png"), 413,
         "'big.png' is larger than 1.0 MB, the most this site accepts."),
    ],
)
async def test_attachments_that_are_refused_keep_the_prompt(make_datasette, model_id, upload, status, message):
    ds = make_datasette({"default_model": "steady", "max_attachment_mb": 1})
    await ds.invoke_startup()
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": model_id, "prompt": "keep me"},
        files={"attachment": upload},
        cookies=cookies_for(ds, ROOT),
    )
    # back to the form's page (a reload does not post again), with the status
    assert response.status_code == 303
    response = await ds.client.get(response.headers["location"], cookies=cookies_for(ds, ROOT))
    assert response.status_code == status
    assert message in html.unescape(response.text)
    assert ">keep me</textarea>" in response.text


@pytest.mark.asyncio
async def test_attachments_need_the_conversation(make_datasette, user_dir):
    ds = make_datasette(
        {"default_model": "echo"}, config={"permissions": {"llm-chat": {"id": ["alice", "bob"]}}}
    )
    await ds.invoke_startup()
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": "echo", "prompt": "mine"},
        files={"attachment": ("dot.png", PNG, "image/png")},
        cookies=cookies_for(ds, {"id": "alice"}),
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    url = f"/-/llm/{cid}/attachment/{hashlib.sha256(PNG).hexdigest()}"
    assert (await ds.client.get(url, cookies=cookies_for(ds, {"id": "alice"}))).status_code == 200
    assert (await ds.client.get(url, cookies=cookies_for(ds, {"id": "bob"}))).status_code == 404
    assert (await ds.client.get(url)).status_code == 403
    # an attachment of another conversation is not served through this one
    other = cid_from(await ds.client.post(
        "/-/llm/start", data={"model_id": "echo", "prompt": "hers"},
        cookies=cookies_for(ds, {"id": "alice"}),
    ))
    await wait_for_generations(ds)
    assert (await ds.client.get(
        f"/-/llm/{other}/attachment/{hashlib.sha256(PNG).hexdigest()}",
        cookies=cookies_for(ds, {"id": "alice"}),
    )).status_code == 404


@pytest.mark.asyncio
async def test_an_svg_or_html_attachment_is_only_ever_a_download(ds, user_dir):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"/>'
    page_html = b"<html><script>alert(1)</script></html>"
    llm_cli(user_dir, "-m", "echo", "first")
    cid = thread_of(user_dir, "first")
    conn = sqlite3.connect(user_dir / "logs.db")
    # as a plugin that reads these types would log them
    for content, kind in ((svg, "image/svg+xml"), (page_html, "text/html")):
        attachment_id = hashlib.sha256(content).hexdigest()
        conn.execute("insert into attachments (id, type, content) values (?, ?, ?)", [attachment_id, kind, content])
        user_hash = conn.execute(
            "select parent_message_hash from turns where thread_id = ?", [cid]
        ).fetchone()[0]
        position = conn.execute("select max(position) + 1 from parts where message_hash = ?", [user_hash]).fetchone()[0]
        conn.execute(
            "insert into parts (message_hash, position, type, payload) values (?, ?, 'attachment', ?)",
            [user_hash, position, json.dumps({"attachment": {"id": attachment_id}})],
        )
    conn.commit()
    page = await page_of(ds, cid)
    assert not re.search(r'<img(?![^>]*class="avatar")', page)
    for content in (svg, page_html):
        attachment_id = hashlib.sha256(content).hexdigest()
        assert f'href="/-/llm/{cid}/attachment/{attachment_id}" download' in page
        response = await ds.client.get(f"/-/llm/{cid}/attachment/{attachment_id}", cookies=cookies_for(ds, ROOT))
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["x-content-type-options"] == "nosniff"


def test_reasoning_streams_before_the_reply(server):
    with server.client() as client:
        cid, url, _ = start(
            client, prompt="think first", option_reasoning="Let me think about this slowly",
            option_chunks="3", option_delay="0.05",
        )
        events = read_until_final(client, url)
    names = [e.name for e in events if e.name != "comment"]
    assert "reasoning" in names
    # the reply's text never holds the reasoning
    assert "Let me think" not in streamed_text(events)
    done = events[-1].data
    assert re.search(r'<details class="reasoning">\s*<summary>Thought for (&lt;1|\d+) s</summary>', done)
    assert "Let me think about this slowly" in done
    assert "token2" in streamed_text(events)  # shown as it streamed, and kept
    assert 'hx-preserve="true"' in done and "token2" not in done


@pytest.mark.asyncio
async def test_exports_carry_every_part(ds, user_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("fragment body")
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    llm_cli(user_dir, "-m", "echo", "-o", "thinking", "1", "-f", str(notes), "-a", str(image), "all parts")
    cid = thread_of(user_dir, "%all parts")
    markdown = (await ds.client.get(f"/-/llm/{cid}.md", cookies=cookies_for(ds, ROOT))).text
    for expected in ("### Fragments", "fragment body", str(notes), "### Attachments", "image/png",
                     "## Reasoning", "First I consider the prompt", "## Response"):
        assert expected in markdown, expected
    data = (await ds.client.get(f"/-/llm/{cid}.json", cookies=cookies_for(ds, ROOT))).json()
    message = data["messages"][0]
    assert message["prompt"] == "all parts"
    assert message["fragments"][0]["content"] == "fragment body"
    assert message["attachments"][0] == {
        "id": hashlib.sha256(PNG).hexdigest(), "type": "image/png", "size": None,
        "name": "dot.png", "url": None,
    }
    assert message["reasoning"].startswith("First I consider")
