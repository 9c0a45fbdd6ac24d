"""With datasette-llm installed, the chat is its citizen: the purpose
``chat``, the models it allows an actor, keys from datasette-secrets, and
every prompt (start, follow-up, retry, title) through its hooks, budgets
of datasette-llm-limits included. Skipped where datasette-llm is not
installed: CI runs this module a second time with it (.ci/run)."""

import asyncio
from contextlib import asynccontextmanager

import pytest
from datasette import hookimpl
from datasette.plugins import pm
from helpers import HTMX, ROOT, cid_from, cookies_for, wait_for_generations

datasette_llm = pytest.importorskip("datasette_llm")

ALICE = {"id": "alice"}
CHAT_FOR_ALICE = {"permissions": {"llm-chat": {"id": ["alice", "root"]}}}


class FlatPricing:
    """Prices for every model, offline: datasette-llm-limits' default
    provider fetches a price list from the internet."""

    async def calculate_cost_from_response(self, model_id, usage, response):
        from datasette_llm_accountant import Nanocents

        return Nanocents(Nanocents.from_usd(0.01))  # a cent a reply

    async def supported_models(self):
        return None


class HookPlugins:
    def __init__(self):
        self.prompts = []

    @hookimpl
    def register_llm_accountant_pricing(self, datasette):
        return FlatPricing()

    @hookimpl
    def llm_prompt_context(self, datasette, model_id, prompt, purpose, actor):
        @asynccontextmanager
        async def context(result):
            self.prompts.append((model_id, prompt, purpose, (actor or {}).get("id")))
            if prompt and "forbidden" in prompt:
                raise PermissionError("Prompts about forbidden things are refused on this site.")
            yield

        return context

    # last, so that its list wins over the accountant's pass-through filter
    @hookimpl(trylast=True)
    def llm_filter_models(self, datasette, models, actor, purpose):
        if (actor or {}).get("id") == "alice" and purpose == "chat":
            return [m for m in models if m.model_id != "steady"]
        return None


@pytest.fixture
def plugins():
    test_plugins = HookPlugins()
    pm.register(test_plugins, name="test-datasette-llm-hooks")
    yield test_plugins
    pm.unregister(name="test-datasette-llm-hooks")


@pytest.fixture
def make_ds(make_datasette, plugins):
    async def make(llm_config=None, plugin_config=None, **config):
        config.setdefault("plugins", {})["datasette-llm"] = llm_config or {}
        ds = make_datasette(plugin_config if plugin_config is not None else {"title_model": False}, {**CHAT_FOR_ALICE, **config})
        await ds.invoke_startup()
        return ds

    return make


async def post(ds, path, actor=ALICE, **kwargs):
    return await ds.client.post(path, cookies=cookies_for(ds, actor), **kwargs)


async def get(ds, path, actor=ALICE, **kwargs):
    return await ds.client.get(path, cookies=cookies_for(ds, actor), **kwargs)


def offered(page: str) -> list[str]:
    import re

    select = page.split('id="model_id"')[1].split("</select>")[0]
    return re.findall(r'<option value="([^"]+)"', select)


@pytest.mark.asyncio
async def test_the_chat_purpose_is_registered(make_ds):
    ds = await make_ds()
    assert "chat" in [purpose.name for purpose in datasette_llm.get_purposes(ds)]


@pytest.mark.asyncio
async def test_models_and_default_come_from_datasette_llm(make_ds):
    ds = await make_ds(
        {"purposes": {"chat": {"model": "echo", "blocked_models": ["lonely"]}}},
        plugin_config={"default_model": "steady", "models": ["steady"], "title_model": False},
    )
    page = (await get(ds, "/-/llm", actor=ROOT)).text
    models = offered(page)
    # datasette-llm's default first; the plugin's own settings do not apply
    assert models[0] == "echo" and "steady" in models
    assert '<option value="echo" selected>' in page
    # sync-only local models stay, unless datasette-llm's lists block them
    assert "markov" in models and "lonely" not in models
    # a key nobody set: datasette-llm leaves the model out
    assert "echo-needs-key" not in models
    # a filter hook: alice may not use steady, in the list or by a forged POST
    assert "steady" not in offered((await get(ds, "/-/llm")).text)
    response = await post(ds, "/-/llm/start", data={"model_id": "steady", "prompt": "hi"}, headers=HTMX)
    assert response.status_code == 400 and "not available to you" in response.text


@pytest.mark.asyncio
async def test_a_key_set_only_through_datasette_secrets(make_ds, monkeypatch):
    monkeypatch.setenv("DATASETTE_SECRETS_ECHO-NEEDS-KEY_API_KEY", "from-datasette-secrets")
    ds = await make_ds()
    assert "echo-needs-key" in offered((await get(ds, "/-/llm")).text)
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "echo-needs-key", "prompt": "hi"}))
    await wait_for_generations(ds)
    data = (await get(ds, f"/-/llm/{cid}.json")).json()
    assert data["messages"][0]["status"] == "done", data


@pytest.mark.asyncio
async def test_every_prompt_goes_through_the_hooks(make_ds, plugins):
    ds = await make_ds(plugin_config={})  # the conversation's model names it
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "first"}))
    await wait_for_generations(ds)
    await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "second"})
    await wait_for_generations(ds)
    data = (await get(ds, f"/-/llm/{cid}.json")).json()
    # the follow-up carried the history through the wrapper
    assert '"first"' in data["messages"][1]["response"]
    # a retry goes through them too
    failed = cid_from(await post(ds, "/-/llm/start", data={"model_id": "odd", "prompt": "error:boom"}))
    await wait_for_generations(ds)
    mid = (await get(ds, f"/-/llm/{failed}.json")).json()["messages"][0]["id"]
    await post(ds, f"/-/llm/{failed}/retry/{mid}")
    await wait_for_generations(ds)
    seen = [(model, (prompt or "").split("\n")[0], purpose, actor) for model, prompt, purpose, actor in plugins.prompts]
    assert ("echo", "first", "chat", "alice") in seen
    assert ("echo", "second", "chat", "alice") in seen
    assert seen.count(("odd", "error:boom", "chat", "alice")) == 2
    # the title of the first conversation was asked through them, as alice
    assert any(model == "echo" and prompt == "first" for model, prompt, _, _ in seen[1:])
    assert len([s for s in seen if s[0] == "echo"]) >= 3


@pytest.mark.asyncio
async def test_a_refusing_hook_answers_4xx_and_keeps_the_prompt(make_ds):
    ds = await make_ds()
    response = await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "something forbidden"}, headers=HTMX)
    assert response.status_code == 403
    assert "Prompts about forbidden things are refused on this site." in response.text
    # without JavaScript: back to the form, with what was typed
    response = await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "something forbidden"})
    assert response.status_code == 303
    page = await get(ds, response.headers["location"])
    assert page.status_code == 403
    assert ">something forbidden</textarea>" in page.text and "refused on this site" in page.text
    # nothing was recorded or logged
    assert "something forbidden" not in (await get(ds, "/-/llm?q=forbidden")).text.split("</form>")[-1]


@pytest.mark.asyncio
async def test_a_budget_of_datasette_llm_limits(make_ds):
    pytest.importorskip("datasette_llm_limits")
    ds = await make_ds(
        plugins={
            "datasette-llm-accountant": {"auto_reservation_usd": 0.015},
            "datasette-llm-limits": {
                "limits": {
                    "daily": {"scope": "actor", "window": "calendar-day", "amount_usd": 0.02, "purpose": "chat"}
                }
            },
        },
    )
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "one"}))
    await wait_for_generations(ds)
    response = await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "two, over budget"}, headers=HTMX)
    assert response.status_code == 429, response.text
    assert "Limit &#34;daily&#34; exceeded: $0.01 used of $0.02" in response.text
    # another actor has a budget of their own
    other = await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "mine"}, actor=ROOT)
    assert other.status_code == 303
    await wait_for_generations(ds)
    # the conversation holds one reply: the refused prompt was never run
    assert len((await get(ds, f"/-/llm/{cid}.json")).json()["messages"]) == 1


@pytest.mark.asyncio
async def test_a_stopped_reply_gives_its_reservation_back(make_ds):
    pytest.importorskip("datasette_llm_limits")
    ds = await make_ds(
        plugins={
            "datasette-llm-limits": {
                "limits": {"daily": {"scope": "actor", "window": "calendar-day", "amount_usd": 1}}
            },
        },
    )
    response = await post(
        ds, "/-/llm/start", actor=ROOT,
        data={"model_id": "steady", "prompt": "slow", "option_chunks": "500", "option_delay": "0.02"},
    )
    cid = cid_from(response)
    await asyncio.sleep(0.3)
    mid = (await get(ds, f"/-/llm/{cid}.json", actor=ROOT)).json()["messages"][0]["id"]
    await post(ds, f"/-/llm/{cid}/stop/{mid}", actor=ROOT)
    await wait_for_generations(ds)
    rows = (await ds.get_internal_database().execute("select settled_at from llm_limits_tx")).rows
    assert rows and all(row[0] is not None for row in rows)


@pytest.mark.asyncio
async def test_the_sql_tool_through_datasette_llm(make_ds, plugins, tmp_path):
    import json
    import sqlite3

    path = tmp_path / "pets.db"
    conn = sqlite3.connect(path)
    conn.execute("create table pets (id integer primary key, name text)")
    conn.execute("insert into pets (name) values ('rex')")
    conn.commit()
    conn.close()
    ds = await make_ds(plugin_config={"title_model": False, "sql_tool_databases": ["pets"]})
    ds.add_database(__import__("datasette").database.Database(ds, path=str(path)), name="pets")
    call = {"tool_calls": [{"name": "query", "arguments": {"database": "pets", "sql": "select name from pets"}}]}
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": json.dumps(call)}))
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert "Called <code>query</code>" in page and "rex" in page
    # the whole chain ran inside datasette-llm's hooks, as alice
    assert [(m, a) for m, _, _, a in plugins.prompts] == [("echo", "alice")]


@pytest.mark.asyncio
async def test_each_reply_shows_its_cost(make_ds):
    pytest.importorskip("datasette_llm_accountant")
    ds = await make_ds()
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "what does it cost?"}))
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert " · $0.01</span>" in page  # a cent a reply, by the test's pricing
