"""Who may chat and who may read, as a matrix of actors and endpoints."""

import json
import re

import llm
import pytest
import pytest_asyncio
import sqlite_utils
from helpers import MESSAGE_ID, cid_from, cookies_for, wait_for_generations

PERMISSIONS = {
    "llm-chat": {"id": ["alice", "bob", "root"]},
    "llm-view-all": {"id": ["viewer", "root"]},
}
ACTORS = {
    "anonymous": None,
    "alice": {"id": "alice"},
    "bob": {"id": "bob"},
    "viewer": {"id": "viewer"},
    "root": {"id": "root"},
}


@pytest_asyncio.fixture
async def world(make_datasette):
    ds = make_datasette(
        {"default_model": "steady", "allow": {"id": "carol"}},
        config={"permissions": PERMISSIONS},
    )
    await ds.invoke_startup()
    conversations = {}
    for owner in ("alice", "bob"):
        response = await ds.client.post(
            "/-/llm/start",
            data={"model_id": "steady", "prompt": f"{owner}'s secret prompt"},
            cookies=cookies_for(ds, {"id": owner}),
        )
        conversations[owner] = cid_from(response)
    await wait_for_generations(ds)
    # and one made with llm's own API, as the llm CLI does
    response = llm.get_model("steady").prompt("cli secret prompt")
    response.text()
    db = sqlite_utils.Database(ds.get_database("llm").path)
    response.log_to_db(db)
    # a prompt without a conversation: logging it starts a thread
    conversations["cli"] = db.execute(
        "select thread_id from turns where id = ?", [response.id]
    ).fetchone()[0]
    messages = {}
    for name, cid in conversations.items():
        page = await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, {"id": "root"}))
        messages[name] = MESSAGE_ID.search(page.text).group(1)
    return ds, conversations, messages


async def request(ds, actor, method, path, **kwargs):
    cookies = cookies_for(ds, actor) if actor else {}
    return await ds.client.request(method, path, cookies=cookies, **kwargs)


# expected status for (actor, conversation owner) on each endpoint
READ = {
    ("anonymous", "alice"): 403, ("anonymous", "cli"): 403,
    ("alice", "alice"): 200, ("alice", "bob"): 404, ("alice", "cli"): 404,
    ("bob", "alice"): 404, ("bob", "bob"): 200,
    ("viewer", "alice"): 200, ("viewer", "cli"): 200,
    ("root", "alice"): 200, ("root", "bob"): 200, ("root", "cli"): 200,
}
WRITE = {
    ("anonymous", "alice"): 403, ("anonymous", "cli"): 403,
    ("alice", "alice"): 303, ("alice", "bob"): 404, ("alice", "cli"): 404,
    ("bob", "alice"): 404, ("bob", "bob"): 303,
    ("viewer", "alice"): 403, ("viewer", "cli"): 403,
    ("root", "alice"): 403, ("root", "cli"): 303,
}


@pytest.mark.asyncio
async def test_permission_matrix(world):
    ds, conversations, messages = world
    for (actor_name, owner), expected in READ.items():
        actor = ACTORS[actor_name]
        cid, mid = conversations[owner], messages[owner]
        for path in (
            f"/-/llm/{cid}",
            f"/-/llm/{cid}/stream/{mid}",
            f"/-/llm/{cid}/prompt/{mid}",
            f"/-/llm/{cid}.md",
            f"/-/llm/{cid}.json",
        ):
            response = await request(ds, actor, "GET", path)
            assert response.status_code == expected, (actor_name, owner, path)
    for (actor_name, owner), expected in WRITE.items():
        actor = ACTORS[actor_name]
        cid, mid = conversations[owner], messages[owner]
        for path, data in (
            (f"/-/llm/{cid}/stop/{mid}", {}),
            (f"/-/llm/{cid}/prompt", {"prompt": "follow-up", "option_delay": ""}),
            (f"/-/llm/{cid}/title", {"title": f"renamed by {actor_name}"}),
        ):
            response = await request(ds, actor, "POST", path, data=data)
            assert response.status_code == expected, (actor_name, owner, path)
            await wait_for_generations(ds)
        # the rename form is for writers only
        response = await request(ds, actor, "GET", f"/-/llm/{cid}/title")
        assert response.status_code == (200 if expected == 303 else expected), (actor_name, owner)


@pytest.mark.asyncio
async def test_list_shows_only_what_each_actor_may_read(world):
    ds, conversations, _ = world
    expectations = {
        "alice": {"alice"},
        "bob": {"bob"},
        "viewer": {"alice", "bob", "cli"},
        "root": {"alice", "bob", "cli"},
    }
    for actor_name, visible in expectations.items():
        response = await request(ds, ACTORS[actor_name], "GET", "/-/llm")
        assert response.status_code == 200
        for owner, cid in conversations.items():
            assert (cid in response.text) == (owner in visible), (actor_name, owner)


@pytest.mark.asyncio
async def test_anonymous_gets_a_403_that_says_how_to_get_access(world):
    ds, _, _ = world
    response = await request(ds, None, "GET", "/-/llm")
    assert response.status_code == 403
    assert "llm-chat" in response.text
    assert "permissions:" in response.text
    assert "secret" not in response.text


@pytest.mark.asyncio
async def test_a_permissions_block_decides_llm_chat_alone(world):
    """Datasette's rule: the config block denies whom it does not name, so
    the plugin's allow setting cannot add to it."""
    ds, _, _ = world
    assert (await request(ds, {"id": "carol"}, "GET", "/-/llm")).status_code == 403


@pytest.mark.asyncio
async def test_allow_setting_grants_chat(make_datasette):
    ds = make_datasette({"default_model": "steady", "allow": {"id": "carol"}})
    await ds.invoke_startup()
    alice_cid = cid_from(
        await request(ds, {"id": "root"}, "POST", "/-/llm/start",
                      data={"model_id": "steady", "prompt": "root's"})
    )
    conversations = {"alice": alice_cid}
    carol = {"id": "carol"}
    assert (await request(ds, carol, "GET", "/-/llm")).status_code == 200
    response = await request(
        ds, carol, "POST", "/-/llm/start", data={"model_id": "steady", "prompt": "carol here"}
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    assert (await request(ds, carol, "GET", f"/-/llm/{cid}")).status_code == 200
    assert (await request(ds, carol, "GET", f"/-/llm/{conversations['alice']}")).status_code == 404
    # the menu link shows for actors who may chat, and only for them
    assert 'href="/-/llm"' in (await request(ds, carol, "GET", "/")).text
    assert 'href="/-/llm"' not in (await request(ds, {"id": "mallory"}, "GET", "/")).text
    assert (await request(ds, {"id": "mallory"}, "GET", "/-/llm")).status_code == 403


@pytest.mark.asyncio
async def test_the_allow_settings_sql_is_the_same_at_every_request(make_datasette):
    # PermissionSQL.allow() names its parameter anew at each call, so
    # Datasette would compile new regular expressions and prepare new SQL
    # for every check; the plugin's SQL stays the same, and still grants.
    from datasette_llm_htmx.permissions import CHAT, allow_setting_sql

    ds = make_datasette({"default_model": "steady", "allow": {"id": "carol"}})
    await ds.invoke_startup()
    first, second = (allow_setting_sql(ds, {"id": "carol"}, CHAT) for _ in range(2))
    assert (first.sql, first.params) == (second.sql, second.params)
    assert await ds.allowed(action=CHAT, actor={"id": "carol"})
    assert allow_setting_sql(ds, {"id": "mallory"}, CHAT) is None


@pytest.mark.asyncio
async def test_a_follow_up_by_another_actor_is_refused_before_anything_read_counts(world):
    # A follow-up reads what it needs to continue in the same moment as the
    # conversation; an error in that read (a damaged row) shows only to the
    # owner: another actor gets the same 404 as for any other conversation.
    ds, conversations, _ = world
    alice = {"id": "alice"}
    cid = conversations["alice"]
    response = await request(
        ds, alice, "POST", f"/-/llm/{cid}/prompt",
        data={"prompt": "held", "option_hold": "3"}, headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    db = sqlite_utils.Database(ds.get_database("llm").path)
    db.execute("update unlogged_messages set options_json = '{bad' where conversation_id = ?", [cid])
    db.conn.commit()
    for actor in ({"id": "bob"}, None):
        response = await request(ds, actor, "POST", f"/-/llm/{cid}/prompt", data={"prompt": "x"})
        assert response.status_code in (403, 404), (actor, response.status_code)
        assert "bad" not in response.text and "held" not in response.text
    await wait_for_generations(ds, timeout=10)


@pytest.mark.asyncio
async def test_cross_site_post_is_refused(world):
    ds, conversations, _ = world
    alice = ACTORS["alice"]
    for path, data in (
        ("/-/llm/start", {"model_id": "steady", "prompt": "csrf"}),
        (f"/-/llm/{conversations['alice']}/prompt", {"prompt": "csrf"}),
    ):
        response = await request(
            ds, alice, "POST", path, data=data, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert response.status_code == 403, path
        response = await request(
            ds, alice, "POST", path, data=data, headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 403, path
    await wait_for_generations(ds)
    # the stream starts nothing and refuses cross-site requests
    mid_page = await request(ds, alice, "GET", f"/-/llm/{conversations['alice']}")
    mid = MESSAGE_ID.search(mid_page.text).group(1)
    response = await request(
        ds, alice, "GET", f"/-/llm/{conversations['alice']}/stream/{mid}",
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403


@pytest.mark.asyncio
async def test_pages_send_a_strict_content_security_policy(world):
    ds, conversations, _ = world
    response = await request(ds, ACTORS["alice"], "GET", f"/-/llm/{conversations['alice']}")
    policy = response.headers["content-security-policy"]
    script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
    assert "'self'" in script_src
    assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src
    assert script_src.count("'sha256-") == 2
    htmx_config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'", response.text)
    assert json.loads(htmx_config.group(1))["allowEval"] is False
    assert "hx-on" not in response.text
