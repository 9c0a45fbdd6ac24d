"""The read-only SQL tool: off by default; each call runs as the asking
actor through Datasette's query API, read-only, under its time limit, its
rows capped; a model (llm-echo, which calls the tools it is told to) uses
it in a conversation, the calls show on the page and llm logs them."""

import json
import re
import sqlite3

import pytest
import pytest_asyncio
from helpers import ROOT, cookies_for, llm_cli, wait_for_generations

from datasette_llm_htmx import sql_tool

ALICE = {"id": "alice"}
CONFIG = {
    "permissions": {"llm-chat": {"id": ["alice", "root"]}},
    "databases": {"secrets": {"allow_sql": {"id": "root"}}},
    "settings": {"sql_time_limit_ms": 200},
}
RECURSIVE = (
    "with recursive n(i) as (select 1 union all select i + 1 from n) "
    "select count(*) from n"
)


@pytest.fixture
def files(tmp_path):
    paths = []
    for name in ("pets", "secrets", "closed"):
        path = tmp_path / f"{name}.db"
        conn = sqlite3.connect(path)
        conn.execute("create table pets (id integer primary key, name text)")
        conn.executemany("insert into pets (name) values (?)", [(f"{name}{i}",) for i in range(300)])
        conn.commit()
        conn.close()
        paths.append(path)
    return paths


@pytest_asyncio.fixture
async def ds(make_datasette, files):
    ds = make_datasette(
        {"default_model": "echo", "title_model": False, "sql_tool_databases": ["pets", "secrets"]},
        CONFIG,
        files=files,
    )
    await ds.invoke_startup()
    return ds


def tool(ds, actor, name):
    return next(t for t in sql_tool.tools_for(ds, actor) if t.name == name).implementation


@pytest.mark.asyncio
async def test_off_by_default(make_datasette, files):
    ds = make_datasette({}, CONFIG, files=files)
    await ds.invoke_startup()
    assert sql_tool.tools_for(ds, ALICE) == []


@pytest.mark.asyncio
async def test_a_query_as_the_actor(ds):
    query = tool(ds, ALICE, "query")
    rows = json.loads(await query("pets", "select name from pets order by id limit 2"))
    assert rows == [{"name": "pets0"}, {"name": "pets1"}]
    # a database the actor may not query, one not open to the tool
    with pytest.raises(sql_tool.Refused, match="may not run SQL"):
        await query("secrets", "select * from pets")
    assert "secrets0" in await tool(ds, ROOT, "query")("secrets", "select name from pets limit 1")
    with pytest.raises(sql_tool.Refused, match="not open to this tool"):
        await query("closed", "select * from pets")
    # writes are refused, and nothing is written
    for write in ("delete from pets", "drop table pets", "insert into pets (name) values ('x')"):
        with pytest.raises(sql_tool.Refused):
            await query("pets", write)
    assert (await ds.get_database("pets").execute("select count(*) from pets")).first()[0] == 300
    # Datasette's time limit cuts a slow query off
    with pytest.raises(sql_tool.Refused, match="too long"):
        await query("pets", RECURSIVE)
    # the rows are capped
    capped = await query("pets", "select * from pets")
    assert len(json.loads(capped.split("\n")[0])) == sql_tool.MOST_ROWS
    assert "more were left out" in capped


@pytest.mark.asyncio
async def test_describe(ds):
    describe = tool(ds, ALICE, "describe")
    assert "CREATE TABLE pets" in await describe("pets", "pets")
    with pytest.raises(sql_tool.Refused, match="no table"):
        await describe("pets", "nope")


@pytest.mark.asyncio
async def test_a_model_calls_the_tool_in_a_conversation(ds, user_dir):
    call = {"tool_calls": [{"name": "query", "arguments": {"database": "pets", "sql": "select name from pets where id = 7"}}]}
    response = await ds.client.post(
        "/-/llm/start", cookies=cookies_for(ds, ALICE), data={"model_id": "echo", "prompt": json.dumps(call)}
    )
    assert response.status_code == 303
    cid = response.headers["location"].rsplit("/", 1)[1]
    await wait_for_generations(ds)
    page = (await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, ALICE))).text
    assert "Called <code>query</code>" in page
    assert "pets6" in page  # the result, and the model's answer from it
    logs = json.loads(llm_cli(user_dir, "logs", "--cid", cid, "--json"))
    assert logs[0]["tool_calls"][0]["name"] == "query"
    assert "pets6" in json.dumps(logs[-1]["tool_results"])
    # a refused call reaches the model as an error, and the page says so
    call["tool_calls"][0]["arguments"]["database"] = "secrets"
    await ds.client.post(
        f"/-/llm/{cid}/prompt", cookies=cookies_for(ds, ALICE), data={"prompt": json.dumps(call)}
    )
    await wait_for_generations(ds)
    page = (await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, ALICE))).text
    assert "may not run SQL" in page and "secrets0" not in page


def test_the_calls_and_results_stream_into_the_reply(make_server, files):
    """Over a real socket: the reply's final event draws the call, its
    result and the model's answer in one message, as the page will."""
    from helpers import start
    from sse_client import read_until_final

    server = make_server(extra_args=[str(files[0]), "-s", "plugins.datasette-llm-htmx.sql_tool_databases", '["pets"]'])
    call = {"tool_calls": [{"name": "query", "arguments": {"database": "pets", "sql": "select name from pets where id = 3"}}]}
    with server.client() as client:
        cid, _, page = start(client, model_id="echo", prompt=json.dumps(call), option_delay="")
        # the reply's own stream (a page drawn after the chain was logged
        # also shows llm's second step, the tool results, as a turn)
        mid = re.search(r'<article id="m-([0-9a-z]{26})"', page.text).group(1)
        events = read_until_final(client, f"/-/llm/{cid}/stream/{mid}")
    assert events[-1].name == "done"
    # (a long final event comes in slices)
    whole = "".join(e.data for e in events)
    assert "Called <code>query</code>" in whole
    assert "Result of <code>query</code>" in whole
    # echo's answer, after the result, streamed in the same reply
    assert whole.index("Result of <code>query</code>") < whole.rindex("tool_results")
    assert "pets2" in whole
