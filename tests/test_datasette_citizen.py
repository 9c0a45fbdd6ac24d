"""Native to Datasette: events, the jump menu, the homepage's and the data
pages' action menus, chat about a table with the actor's own permissions,
and the whole flow under a base_url."""

import hashlib
import json
import re
import sqlite3
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from datasette import hookimpl
from datasette.plugins import pm
from helpers import HTMX, ROOT, cookies_for, llm_cli, wait_for_generations

ALICE = {"id": "alice"}
BOB = {"id": "bob"}
CONFIG = {
    "permissions": {"llm-chat": {"id": ["alice", "bob", "root"]}},
    # alice may see the pets, not the secret; and may not run SQL here (with
    # SQL, Datasette lets her read every table of the database)
    "databases": {"pets": {"allow_sql": {"id": "root"}, "tables": {"secret": {"allow": {"id": "root"}}}}},
}


@pytest.fixture
def pets_db(tmp_path):
    path = tmp_path / "pets.db"
    conn = sqlite3.connect(path)
    conn.execute("create table pets (id integer primary key, name text, species text)")
    conn.executemany(
        "insert into pets (name, species) values (?, ?)",
        [(f"pet{i}", "cat" if i % 2 else "dog") for i in range(40)],
    )
    conn.execute("create table secret (id integer primary key, code text)")
    conn.execute("insert into secret (code) values ('the-launch-code')")
    conn.commit()
    conn.close()
    return path


@pytest_asyncio.fixture
async def ds(make_datasette, pets_db):
    ds = make_datasette(
        {"default_model": "echo", "title_model": False, "about_rows": 5}, CONFIG, files=[pets_db]
    )
    await ds.invoke_startup()
    return ds


async def get(ds, path, actor=ALICE, **kwargs):
    return await ds.client.get(path, cookies=cookies_for(ds, actor) if actor else {}, **kwargs)


async def post(ds, path, actor=ALICE, **kwargs):
    return await ds.client.post(path, cookies=cookies_for(ds, actor), **kwargs)


def about_links(html: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]*/-/llm/about[^"]*)"', html)]


class EventLog:
    def __init__(self):
        self.events = []

    @hookimpl
    def track_event(self, datasette, event):
        self.events.append((event.name, (event.actor or {}).get("id"), event.properties()))


@pytest.mark.asyncio
async def test_events_name_what_happened_never_what_was_typed(ds):
    log = EventLog()
    pm.register(log, name="test-event-log")
    try:
        response = await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "private words"})
        cid = response.headers["location"].rsplit("/", 1)[1]
        await wait_for_generations(ds)
        await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "more private words"})
        await wait_for_generations(ds)
        await post(ds, f"/-/llm/{cid}/title", data={"title": "Renamed"})
        await post(ds, f"/-/llm/{cid}/delete")
    finally:
        pm.unregister(name="test-event-log")
    names = [name for name, _, _ in log.events if name.startswith("llm-")]
    assert names == [
        "llm-conversation-start", "llm-prompt", "llm-prompt",
        "llm-conversation-rename", "llm-conversation-delete",
    ]
    mine = [e for e in log.events if e[0].startswith("llm-")]
    assert all(actor == "alice" for _, actor, _ in mine)
    assert all(props["conversation_id"] == cid for _, _, props in mine)
    assert "private" not in json.dumps(mine)


@pytest.mark.asyncio
async def test_the_jump_menu_finds_the_conversations_one_may_read(ds):
    await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "kumquat harvest"})
    await wait_for_generations(ds)

    async def jump(actor):
        response = await get(ds, "/-/jump?q=kumquat", actor=actor)
        return [m["url"] for m in response.json()["matches"] if m["type"] == "llm-conversation"]

    assert len(await jump(ALICE)) == 1 and (await jump(ALICE))[0].startswith("/-/llm/")
    assert await jump(ROOT) == await jump(ALICE)  # llm-view-all
    assert await jump(BOB) == []
    assert await jump(None) == []
    # the chat itself is in the menu for those who may chat
    chat = (await get(ds, "/-/jump?q=LLM+chat")).json()["matches"]
    assert any(m["url"] == "/-/llm" for m in chat)
    assert not any(m["url"] == "/-/llm" for m in (await get(ds, "/-/jump?q=LLM+chat", actor=None)).json()["matches"])


@pytest.mark.asyncio
async def test_chat_about_a_table_carries_what_the_actor_sees(ds, user_dir):
    page = (await get(ds, "/pets/pets?species=cat")).text
    [link] = about_links(page)
    about = await get(ds, link)
    assert about.status_code == 200
    assert "CREATE TABLE pets" in about.text
    assert "5 rows of 20 (the first 5; the rest are not included)" in about.text
    response = await post(ds, "/-/llm/start", data={
        "model_id": "echo", "prompt": "Which cats?", "about_kind": "table", "about_page": "/pets/pets?species=cat",
    })
    assert response.status_code == 303
    cid = response.headers["location"].rsplit("/", 1)[1]
    await wait_for_generations(ds)
    conversation = await get(ds, f"/-/llm/{cid}")
    assert '<span class="source">datasette:/pets/pets?species=cat</span>' in conversation.text
    # the model got the rows shown: cats only, five of them
    reply = json.loads((await get(ds, f"/-/llm/{cid}.json")).json()["messages"][0]["response"])
    sent = json.dumps(reply)
    assert "pet1" in sent and "pet9" in sent and "pet11" not in sent and "pet0" not in sent
    # llm's own fragment: `llm logs -f` finds the conversation by it
    content = re.search(r'<div class="fragment-text">(.*?)</div>', conversation.text, re.S).group(1)
    import html

    digest = hashlib.sha256(html.unescape(content).encode()).hexdigest()
    logs = json.loads(llm_cli(user_dir, "logs", "-f", digest, "--json"))
    assert [entry["conversation_id"] for entry in logs] == [cid]


@pytest.mark.asyncio
async def test_a_table_one_may_not_see_offers_nothing_and_gives_nothing(ds):
    assert (await get(ds, "/pets/secret")).status_code == 403
    assert about_links((await get(ds, "/pets/secret", actor=ROOT)).text)  # root may
    refused = await get(ds, "/-/llm/about?kind=table&page=/pets/secret")
    assert refused.status_code == 403 and "the-launch-code" not in refused.text
    response = await post(ds, "/-/llm/start", headers=HTMX, data={
        "model_id": "echo", "prompt": "leak it", "about_kind": "table", "about_page": "/pets/secret",
    })
    assert response.status_code == 403 and "do not have permission" in response.text
    # an SQL query over it, as an actor without execute-sql: refused the same way
    sneaky = "/pets/-/query?sql=select+*+from+secret"
    response = await post(ds, "/-/llm/start", headers=HTMX, data={
        "model_id": "echo", "prompt": "leak it", "about_kind": "query", "about_page": sneaky,
    })
    assert response.status_code == 403 and "the-launch-code" not in response.text
    # not a database page, not this site
    for page in ("/-/llm", "https://example.com/pets/pets", "//example.com/x/y"):
        response = await get(ds, f"/-/llm/about?kind=table&page={page}")
        assert response.status_code == 400, page
    # a page that resolves to one the actor may see, named after one they may not
    for kind, page in (("table", "/pets/secret/../pets"), ("row", "/pets/secret/../pets/1"),
                       ("table", "/pets/./secret/../pets")):
        response = await get(ds, "/-/llm/about?" + urlencode({"kind": kind, "page": page}))
        assert response.status_code == 400 and "secret" not in response.text.lower(), page
    # no action for actors who may not chat
    assert about_links((await get(ds, "/pets/pets", actor={"id": "carol"})).text) == []
    # the homepage offers the chat to those who may
    assert "Chat with a language model" in (await get(ds, "/")).text
    assert "Chat with a language model" not in (await get(ds, "/", actor={"id": "carol"})).text


@pytest.mark.asyncio
async def test_the_main_flow_under_a_base_url(make_datasette, pets_db):
    ds = make_datasette(
        {"default_model": "echo", "title_model": False},
        {**CONFIG, "settings": {"base_url": "/prefix/"}},
        files=[pets_db],
    )
    await ds.invoke_startup()
    index = await get(ds, "/-/llm")  # datasette.client adds the prefix
    assert index.status_code == 200
    urls = re.findall(r'(?:href|src|action|hx-get|hx-post|sse-connect)="(/[^"]*)"', index.text)
    assert urls and all(u.startswith("/prefix/") for u in urls), [u for u in urls if not u.startswith("/prefix/")]
    # static files with cache-busting URLs
    assert re.search(r'src="/prefix/-/static-plugins/datasette-llm-htmx/llm-htmx\.js\?_hash=[0-9a-f]+"', index.text)
    response = await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "under a prefix"})
    assert response.status_code == 303 and response.headers["location"].startswith("/prefix/-/llm/")
    cid = response.headers["location"].rsplit("/", 1)[1]
    await wait_for_generations(ds)
    page = await get(ds, f"/-/llm/{cid}")
    urls = re.findall(r'(?:href|src|action|hx-get|hx-post|sse-connect)="(/[^"]*)"', page.text)
    assert all(u.startswith("/prefix/") for u in urls), [u for u in urls if not u.startswith("/prefix/")]
    assert "under a prefix" in page.text
    # the table action and the jump menu too
    assert all(link.startswith("/prefix/-/llm/about") for link in about_links((await get(ds, "/pets/pets")).text))
    jump = (await get(ds, "/-/jump?q=prefix")).json()["matches"]
    assert [m["url"] for m in jump if m["type"] == "llm-conversation"] == [f"/prefix/-/llm/{cid}"]


@pytest.mark.asyncio
async def test_chat_about_a_database_carries_the_schema_one_may_see(ds):
    [link] = about_links((await get(ds, "/pets")).text)
    about = await get(ds, link)
    assert about.status_code == 200
    assert "CREATE TABLE pets" in about.text and "40 rows" in about.text
    assert "CREATE TABLE secret" not in about.text  # alice may not see it
    assert "CREATE TABLE secret" in (await get(ds, link, actor=ROOT)).text
