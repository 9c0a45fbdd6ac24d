"""logs.db is attached to Datasette, and Datasette serves whatever is
attached to anyone: every surface of it must need llm-view-all."""

import sqlite3

import pytest
from helpers import cid_from, cookies_for, wait_for_generations

PERMISSIONS = {
    "llm-chat": {"id": ["alice", "root"]},
    "llm-view-all": {"id": ["viewer", "root"]},
}

# Every way Datasette reads a database: its page, a table, a row, JSON, CSV,
# arbitrary SQL, a download.
SURFACES = [
    "/{db}",
    "/{db}.json",
    "/{db}/parts",
    "/{db}/parts.json",
    "/{db}/parts.csv",
    "/{db}/initiated.json",
    "/{db}/parts/1",
    "/{db}/-/query.json?sql=select+prompt,+actor_id+from+initiated",
    "/{db}/-/query.csv?sql=select+prompt+from+initiated",
    "/{db}/-/query?sql=select+1",
]


async def seed(ds, actor={"id": "alice"}):
    response = await ds.client.post(
        "/-/llm/start",
        data={"model_id": "steady", "prompt": "a private prompt"},
        cookies=cookies_for(ds, actor),
    )
    cid_from(response)
    await wait_for_generations(ds)


async def status_of(ds, actor, path):
    cookies = cookies_for(ds, actor) if actor else {}
    return (await ds.client.get(path, cookies=cookies)).status_code


async def listed(ds, actor, db_name):
    """Does the homepage or the jump menu mention the database?"""
    cookies = cookies_for(ds, actor) if actor else {}
    home = (await ds.client.get("/", cookies=cookies)).text
    jump = (await ds.client.get("/-/jump.json?q=initiated", cookies=cookies)).text
    return f'href="/{db_name}"' in home or "initiated" in jump


@pytest.mark.asyncio
async def test_the_llm_database_needs_llm_view_all(make_datasette):
    ds = make_datasette({"default_model": "steady"}, config={"permissions": PERMISSIONS})
    await ds.invoke_startup()
    await seed(ds)
    for name, actor, allowed in (
        ("anonymous", None, False),
        ("llm-chat only", {"id": "alice"}, False),
        ("someone else", {"id": "mallory"}, False),
        ("llm-view-all", {"id": "viewer"}, True),
        ("root", {"id": "root"}, True),
    ):
        for surface in SURFACES:
            status = await status_of(ds, actor, surface.format(db="llm"))
            assert (status == 200) == allowed, (name, surface, status)
            if not allowed:
                assert status == 403, (name, surface, status)
        assert await listed(ds, actor, "llm") == allowed, name


@pytest.mark.asyncio
async def test_the_default_config_keeps_it_private_too(make_datasette):
    ds = make_datasette({"default_model": "steady"})
    await ds.invoke_startup()
    await seed(ds, {"id": "root"})
    for surface in SURFACES:
        assert await status_of(ds, None, surface.format(db="llm")) == 403, surface
    assert not await listed(ds, None, "llm")


@pytest.mark.asyncio
async def test_a_database_block_in_the_config_opens_it_on_purpose(make_datasette):
    ds = make_datasette(
        {"default_model": "steady"},
        config={"permissions": PERMISSIONS, "databases": {"llm": {"allow": {"id": "alice"}}}},
    )
    await ds.invoke_startup()
    await seed(ds)
    assert await status_of(ds, {"id": "alice"}, "/llm/parts.json") == 200
    assert await status_of(ds, {"id": "mallory"}, "/llm/parts.json") == 403
    assert await status_of(ds, None, "/llm/parts.json") == 403
    opened = make_datasette(
        {"default_model": "steady"},
        config={"databases": {"llm": {"allow": True, "allow_sql": True}}},
    )
    await opened.invoke_startup()
    assert await status_of(opened, None, "/llm/-/query.json?sql=select+1") == 200


@pytest.mark.asyncio
async def test_a_logs_db_the_user_attached_is_private_under_its_own_name(
    make_datasette, tmp_path
):
    path = tmp_path / "my-logs.db"
    sqlite3.connect(path).close()  # `datasette my-logs.db` needs the file
    ds = make_datasette(
        {"database_path": str(path), "default_model": "steady"},
        config={"permissions": PERMISSIONS},
        files=[path],
    )
    await ds.invoke_startup()
    # the plugin uses the attached file, and does not attach it twice
    assert "llm" not in ds.databases
    assert "my-logs" in ds.databases
    await seed(ds)
    for surface in SURFACES:
        status = await status_of(ds, None, surface.format(db="my-logs"))
        assert status == 403, (surface, status)
        status = await status_of(ds, {"id": "viewer"}, surface.format(db="my-logs"))
        assert status == 200, (surface, status)


@pytest.mark.asyncio
async def test_a_logs_db_the_plugin_creates_is_readable_by_its_owner_only(make_datasette, user_dir, tmp_path):
    import os
    import stat

    ds = make_datasette()
    await ds.invoke_startup()
    assert stat.S_IMODE(os.stat(user_dir / "logs.db").st_mode) == 0o600
    # one that exists keeps the mode its owner gave it
    existing = tmp_path / "mine.db"
    sqlite3.connect(existing).close()
    os.chmod(existing, 0o644)
    other = make_datasette({"database_path": str(existing)})
    await other.invoke_startup()
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o644
