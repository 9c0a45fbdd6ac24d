"""A logs.db made by 0.1.0 (tests/fixtures/logs-0.1.0.db) is brought up to
date at startup, and everything in it still works."""

import pathlib
import shutil
import sqlite3

import pytest
from helpers import ROOT, cid_from, cookies_for, wait_for_generations

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "logs-0.1.0.db"
TWO_TURNS = "01m87a41mf1kv4szcw7vy8vgah"  # done, done
STOPPED = "01m87a41n2dep30vtpp7b0mhyy"  # one reply, stopped by its user
CRASHED = "01k00000000000000000000dcv"  # running, on a host long gone


@pytest.fixture
def old_logs(user_dir):
    shutil.copy(FIXTURE, user_dir / "logs.db")
    return user_dir / "logs.db"


@pytest.mark.asyncio
async def test_an_old_logs_db_is_upgraded_and_works(old_logs, make_datasette):
    conn = sqlite3.connect(old_logs)
    assert conn.execute(
        "select count(*) from sqlite_master where name = 'llm_htmx_migrations'"
    ).fetchone()[0] == 0
    conn.close()

    ds = make_datasette({"default_model": "steady"})
    await ds.invoke_startup()
    conn = sqlite3.connect(old_logs)
    applied = [row[0] for row in conn.execute("select name from llm_htmx_migrations order by name")]
    assert applied == ["m001_initial", "m002_workers", "m003_parts", "m004_branches", "m005_costs"]
    assert conn.execute("select count(*) from llm_htmx_workers").fetchone()[0] == 0
    cookies = cookies_for(ds, ROOT)

    page = (await ds.client.get(f"/-/llm/{TWO_TURNS}", cookies=cookies)).text
    assert page.count('class="message status-done"') == 2
    assert "First question about herons" in page and "And egrets?" in page

    page = (await ds.client.get(f"/-/llm/{STOPPED}", cookies=cookies)).text
    assert "status-stopped" in page and "Reply to: Stopped halfway" in page

    page = (await ds.client.get(f"/-/llm/{CRASHED}", cookies=cookies)).text
    assert "status-interrupted" in page and "Half a repl" in page

    index = (await ds.client.get("/-/llm", cookies=cookies)).text
    for cid in (TWO_TURNS, STOPPED, CRASHED):
        assert cid in index

    # it goes on: a follow-up keeps the old context, a retry runs again
    response = await ds.client.post(
        f"/-/llm/{TWO_TURNS}/prompt", data={"prompt": "And storks?"}, cookies=cookies
    )
    assert response.status_code == 303
    crashed_mid = "01k0000000000000000000dead"
    response = await ds.client.post(f"/-/llm/{CRASHED}/retry/{crashed_mid}", cookies=cookies)
    assert response.status_code == 303
    await wait_for_generations(ds)
    page = (await ds.client.get(f"/-/llm/{TWO_TURNS}", cookies=cookies)).text
    assert "Earlier prompts: First question about herons | And egrets?" in page
    assert "System: Be brief" in page
    # the new worker table is in use
    assert conn.execute("select count(*) from llm_htmx_workers").fetchone()[0] == 1

    # and a second startup changes nothing
    again = make_datasette({"default_model": "steady"})
    await again.invoke_startup()
    assert [row[0] for row in conn.execute("select name from llm_htmx_migrations")] == applied
    cid_from(
        await again.client.post(
            "/-/llm/start", data={"model_id": "steady", "prompt": "new"},
            cookies=cookies_for(again, ROOT),
        )
    )
    await wait_for_generations(again)
