"""Titles, renaming, "view all", search, pagination, exports, options, usage."""

import html
import json
import re
import sqlite3

import pytest
import pytest_asyncio
import helpers
from helpers import (
    HTMX,
    MESSAGE_ID,
    ROOT,
    STREAM_URL,
    cid_from,
    cookies_for,
    insert_legacy,
    llm_cli,
    wait_for_generations,
)
from sse_client import read_until_final


async def start(ds, actor=ROOT, **data):
    """Start a conversation in process and wait for its reply and title."""
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": "steady", "prompt": "Hello", **data},
        cookies=cookies_for(ds, actor),
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    return cid


async def get(ds, path, actor=ROOT, **kwargs):
    return await ds.client.get(path, cookies=cookies_for(ds, actor), **kwargs)


def thread_name(ds, cid):
    conn = sqlite3.connect(ds.get_database("llm").path)
    return conn.execute("select name from threads where id = ?", [cid]).fetchone()[0]


# Titles


@pytest.mark.asyncio
async def test_first_reply_names_the_conversation(ds, user_dir):
    cid = await start(ds, prompt="Tell me about otters")
    # steady answers a title request with "Re: <the first words>"
    assert thread_name(ds, cid) == "Re: Tell me about otters"
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert "<h1>Re: Tell me about otters</h1>" in page
    logs = json.loads(llm_cli(user_dir, "logs", "--cid", cid, "--json"))
    assert logs[0]["conversation_name"] == "Re: Tell me about otters"
    # a follow-up does not rename it
    await ds.client.post(f"/-/llm/{cid}/prompt", data={"prompt": "More"}, cookies=cookies_for(ds, ROOT))
    await wait_for_generations(ds)
    assert thread_name(ds, cid) == "Re: Tell me about otters"


@pytest.mark.asyncio
async def test_title_model_false_keeps_llms_name(make_datasette):
    ds = make_datasette({"default_model": "steady", "title_model": False})
    await ds.invoke_startup()
    cid = await start(ds, prompt="A prompt that is rather longer than thirty-two characters")
    assert thread_name(ds, cid) == "A prompt that is rather longer …"


@pytest.mark.asyncio
async def test_title_model_setting_names_with_that_model(make_datasette):
    ds = make_datasette({"default_model": "steady", "title_model": "steady-sync"})
    await ds.invoke_startup()
    cid = await start(ds, model_id="markov", prompt="a b c d", option_length="3", option_delay="0")
    assert thread_name(ds, cid) == "Re: a b c d"


def test_the_title_follows_the_done_event(server):
    with server.client() as client:
        cid, stream_url, _ = helpers.start(client, prompt="Name me", option_chunks="4")
        events = read_until_final(client, stream_url)
        done = events[-1].data
        # the first reply's done event asks for the title, out of band
        update = f'hx-get="/-/llm/{cid}/title?show=title&amp;wait=1" hx-trigger="load"'
        assert '<div id="title-update" hx-swap-oob="true" ' + update in done
        title = client.get(f"/-/llm/{cid}/title?show=title&wait=1", headers=HTMX)
        assert "<h1>Re: Name me</h1>" in title.text
        # a follow-up's done event does not
        response = client.post(f"/-/llm/{cid}/prompt", data={"prompt": "more"}, headers=HTMX)
        follow = read_until_final(client, STREAM_URL.search(response.text).group(1))
        assert "title-update" not in follow[-1].data


@pytest.mark.asyncio
async def test_rename_with_a_suggestion(ds, user_dir):
    cid = await start(ds, prompt="How do I bake bread?\nWith details", option_text="# Baking bread\n\nFirst, mix flour. Then wait.")
    form = await get(ds, f"/-/llm/{cid}/title", headers=HTMX)
    assert form.status_code == 200
    assert '<form id="conversation-title"' in form.text
    # the field holds the title the model gave, ready to edit
    assert 'value="Re: How do I bake bread?"' in form.text
    suggestions = re.findall(r'name="title" value="([^"]*)" class="suggestion"', form.text)
    assert "How do I bake bread?" in [html.unescape(s) for s in suggestions]
    assert "Baking bread" in [html.unescape(s) for s in suggestions]
    response = await ds.client.post(
        f"/-/llm/{cid}/title", data={"title": "Baking bread"}, headers=HTMX,
        cookies=cookies_for(ds, ROOT),
    )
    assert response.status_code == 200
    assert "<h1>Baking bread</h1>" in response.text
    assert thread_name(ds, cid) == "Baking bread"
    logs = json.loads(llm_cli(user_dir, "logs", "--cid", cid, "--json"))
    assert logs[0]["conversation_name"] == "Baking bread"


@pytest.mark.asyncio
async def test_rename_without_javascript(ds):
    cid = await start(ds)
    page = await get(ds, f"/-/llm/{cid}/title")
    assert page.status_code == 200
    assert "<!DOCTYPE html>" in page.text and 'id="title-input"' in page.text
    response = await ds.client.post(
        f"/-/llm/{cid}/title", data={"title": "  A   new\nname  "}, cookies=cookies_for(ds, ROOT)
    )
    assert response.status_code == 303
    assert thread_name(ds, cid) == "A new name"
    for bad, message in (("   ", "Type a title"), ("x" * 201, "at most 200 characters")):
        response = await ds.client.post(
            f"/-/llm/{cid}/title", data={"title": bad}, cookies=cookies_for(ds, ROOT)
        )
        assert response.status_code == 400
        assert message in response.text
        assert 'id="title-input"' in response.text
    assert thread_name(ds, cid) == "A new name"


@pytest.mark.asyncio
async def test_rename_a_legacy_conversation(ds):
    conn = sqlite3.connect(ds.get_database("llm").path)
    insert_legacy(conn)
    response = await ds.client.post(
        "/-/llm/01h0000000000000000000000c/title", data={"title": "Renamed legacy"},
        cookies=cookies_for(ds, ROOT),
    )
    assert response.status_code == 303
    assert conn.execute("select name from conversations").fetchone()[0] == "Renamed legacy"
    page = (await get(ds, "/-/llm/01h0000000000000000000000c")).text
    assert "<h1>Renamed legacy</h1>" in page


# View all


@pytest_asyncio.fixture
async def short_cut(make_datasette):
    ds = make_datasette({"default_model": "steady", "truncate_prompt_chars": 20})
    await ds.invoke_startup()
    return ds


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "prompt,system,cut",
    [
        ("p" * 20, "short system", False),  # at the limit: whole
        ("p" * 21, "short system", True),  # one past: cut
        ("p" * 500, None, False),  # long, but no system prompt: whole
        ("short", "s" * 21, True),  # a long system prompt is cut too
    ],
)
async def test_truncation_boundary(short_cut, prompt, system, cut):
    data = {"prompt": prompt}
    if system:
        data["system"] = system
    cid = await start(short_cut, **data)
    page = (await get(short_cut, f"/-/llm/{cid}")).text
    mid = MESSAGE_ID.search(page).group(1)
    assert ("View all" in page) == cut
    if cut:
        assert f'href="/-/llm/{cid}/prompt/{mid}"' in page
        if len(prompt) > 20:
            assert f'<div class="prompt-text">{prompt[:20]}…</div>' in page
        if len(system) > 20:
            assert f'<div class="text">{system[:20]}…</div>' in page
    else:
        assert f'<div class="prompt-text">{prompt}</div>' in page


@pytest.mark.asyncio
async def test_view_all_fragment_and_page(short_cut):
    prompt = "The whole of this long prompt, " * 5
    cid = await start(short_cut, prompt=prompt, system="System words that run long")
    page = (await get(short_cut, f"/-/llm/{cid}")).text
    mid = MESSAGE_ID.search(page).group(1)
    fragment = await get(short_cut, f"/-/llm/{cid}/prompt/{mid}", headers=HTMX)
    assert fragment.status_code == 200
    assert fragment.text.startswith(f'<div id="m-{mid}-prompt"')
    assert prompt in html.unescape(fragment.text)
    assert "System words that run long" in fragment.text
    assert "View all" not in fragment.text
    full_page = await get(short_cut, f"/-/llm/{cid}/prompt/{mid}")
    assert "<!DOCTYPE html>" in full_page.text
    assert prompt in html.unescape(full_page.text)
    assert f'href="/-/llm/{cid}#m-{mid}"' in full_page.text


# Search and pagination


@pytest.mark.asyncio
async def test_search_by_prompt_and_reply_across_both_schemas(ds):
    conn = sqlite3.connect(ds.get_database("llm").path)
    insert_legacy(conn)
    by_prompt = await start(ds, prompt="zebras are striped")
    by_reply = await start(ds, prompt="other", option_text="giraffes are tall")
    for q, expected in (
        ("zebras", {by_prompt}),
        ("giraffes", {by_reply}),
        ("legacy", {"01h0000000000000000000000c"}),  # a pre-0.32 prompt
        ("answer", {"01h0000000000000000000000c"}),  # a pre-0.32 reply
        ('"unbalanced', set()),
        ("AND OR NOT *", set()),
    ):
        response = await get(ds, "/-/llm", params={"q": q})
        assert response.status_code == 200, q
        found = set(re.findall(r'href="/-/llm/([0-9a-z]{26})"', response.text))
        assert found == expected, q
    # htmx live search gets the list alone
    response = await get(
        ds, "/-/llm", params={"q": "zebras"},
        headers={**HTMX, "HX-Target": "conversation-list"},
    )
    assert response.text.startswith('<div id="conversation-list"')
    assert by_prompt in response.text


@pytest.mark.asyncio
async def test_search_respects_ownership(make_datasette):
    ds = make_datasette(
        {"default_model": "steady"},
        config={"permissions": {"llm-chat": {"id": ["alice", "bob"]}}},
    )
    await ds.invoke_startup()
    alice = await start(ds, actor={"id": "alice"}, prompt="alice mentions kumquats")
    bob = await start(ds, actor={"id": "bob"}, prompt="bob mentions kumquats")
    found = (await get(ds, "/-/llm", actor={"id": "alice"}, params={"q": "kumquats"})).text
    assert alice in found and bob not in found


async def conversations_on_every_page(ds, url, next_link):
    """The conversation ids listed on ``url`` and every page after it."""
    seen = []
    while url:
        page = (await get(ds, url)).text
        seen += re.findall(r'<td><a href="/-/llm/([0-9a-z]{26})"', page)
        match = re.search(f'href="({next_link})"', page)
        url = html.unescape(match.group(1)) if match else None
    return seen


@pytest.mark.asyncio
async def test_keyset_pagination(ds, monkeypatch):
    from datasette_llm_htmx.views import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 3)
    cids = [await start(ds, prompt=f"number {i}") for i in range(7)]
    seen = await conversations_on_every_page(ds, "/-/llm", r"/-/llm\?before=[0-9a-z]{26}")
    assert seen == list(reversed(cids))
    # with a search, too
    page = (await get(ds, "/-/llm", params={"q": "number"})).text
    assert "q=number&amp;before=" in page


@pytest.mark.asyncio
async def test_search_pages_list_each_conversation_once_by_newest_match(ds, monkeypatch):
    from datasette_llm_htmx.views import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    cids = [await start(ds, prompt=f"quince {i}") for i in range(5)]
    # the oldest conversation matches again, newest of all; another one
    # gets a follow-up that does not match
    for cid, prompt in ((cids[0], "more quince"), (cids[3], "something else")):
        await ds.client.post(
            f"/-/llm/{cid}/prompt",
            data={"prompt": prompt, "option_text": "ok"},  # not the default reply, which quotes earlier prompts
            cookies=cookies_for(ds, ROOT),
        )
        await wait_for_generations(ds)
    seen = await conversations_on_every_page(
        ds, "/-/llm?q=quince", r"/-/llm\?q=quince&amp;before=[0-9a-z]{26}"
    )
    assert seen == [cids[0], cids[4], cids[3], cids[2], cids[1]]


# Exports


@pytest.mark.asyncio
async def test_exports_round_trip_the_text(ds):
    reply = "# Title\n\n<b>bold?</b> & `code`\n\n- a\n- b"
    cid = await start(ds, prompt="Export <me> & \"quote\"", system="Sys & <tag>", option_text=reply)
    markdown = await get(ds, f"/-/llm/{cid}.md")
    assert markdown.status_code == 200
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    assert markdown.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in markdown.headers["content-security-policy"]
    text = markdown.text
    # each text in a fence of its own (test_framing shows why)
    assert "## Prompt\n\n```\nExport <me> & \"quote\"\n```\n" in text
    assert "## System\n\n```\nSys & <tag>\n```\n" in text
    assert f"## Response\n\n```markdown\n{reply}\n```\n" in text
    assert f"conversation: {cid} id: " in text
    data = (await get(ds, f"/-/llm/{cid}.json")).json()
    assert data["id"] == cid
    message = data["messages"][0]
    assert message["prompt"] == 'Export <me> & "quote"'
    assert message["system"] == "Sys & <tag>"
    assert message["response"] == reply
    assert message["status"] == "done"
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert f'href="/-/llm/{cid}.md"' in page and f'href="/-/llm/{cid}.json"' in page


@pytest.mark.asyncio
async def test_exports_follow_permissions(make_datasette):
    ds = make_datasette({"default_model": "steady"}, config={"permissions": {"llm-chat": {"id": ["alice", "bob"]}}})
    await ds.invoke_startup()
    cid = await start(ds, actor={"id": "alice"})
    for suffix in (".md", ".json"):
        assert (await get(ds, f"/-/llm/{cid}{suffix}", actor={"id": "alice"})).status_code == 200
        assert (await get(ds, f"/-/llm/{cid}{suffix}", actor={"id": "bob"})).status_code == 404
        assert (await ds.client.get(f"/-/llm/{cid}{suffix}")).status_code == 403


# Options and usage


@pytest.mark.asyncio
async def test_options_are_offered_validated_and_passed_to_the_model(ds):
    page = (await get(ds, "/-/llm")).text
    assert 'id="model-options"' in page
    assert 'name="option_chunks"' in page and 'type="number" step="1"' in page
    assert "How many tokens to send" in page
    fragment = await get(ds, "/-/llm/options", params={"model_id": "markov"}, headers=HTMX)
    assert 'name="option_length"' in fragment.text and 'name="option_delay"' in fragment.text
    assert 'name="option_chunks"' not in fragment.text
    echo = (await get(ds, "/-/llm/options", params={"model_id": "echo"}, headers=HTMX)).text
    assert '<select id="option_example_bool"' in echo
    cid = await start(ds, option_chunks="3")
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert "token2" in page and "token3" not in page
    assert "chunks=3" in page
    conn = sqlite3.connect(ds.get_database("llm").path)
    assert json.loads(conn.execute("select options_json from turns").fetchone()[0]) == {"chunks": 3}
    # a boolean option, through llm-echo
    cid = await start(ds, model_id="echo", option_example_bool="true")
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert "example_bool=True" in page


@pytest.mark.asyncio
async def test_usage_is_shown(ds):
    cid = await start(ds, prompt="three word prompt", option_chunks="4")
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert re.search(r'<span class="usage">3 in · 5 out · \d+\.\d s</span>', page), page
