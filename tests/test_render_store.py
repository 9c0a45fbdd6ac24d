"""Rendered replies kept on disk beside logs.db: the first view after a
restart renders no markdown, the file is its owner's alone, and deleting a
conversation deletes its rendered replies too."""

import os
import sqlite3
import stat

import pytest
from helpers import ROOT, cid_from, cookies_for, wait_for_generations

from datasette_llm_htmx import rendering

REPLY = "# A heading\n\nSome **bold** text and a list:\n\n- one\n- two\n\n```\ncode\n```\n"


async def conversation(ds, prompt):
    response = await ds.client.post(
        "/-/llm/start", cookies=cookies_for(ds, ROOT),
        data={"model_id": "steady", "prompt": prompt, "option_text": REPLY + prompt},
    )
    cid = cid_from(response)
    await wait_for_generations(ds)
    return cid


@pytest.mark.asyncio
async def test_the_first_view_after_a_restart_renders_nothing(make_datasette, user_dir, monkeypatch):
    ds = make_datasette({"default_model": "steady", "title_model": False})
    await ds.invoke_startup()
    cid = await conversation(ds, "first")
    first = (await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, ROOT))).text
    await rendering.in_render_thread(lambda: None)  # the write behind the page (one thread)
    path = user_dir / "logs-llm-htmx-render.db"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rows = sqlite3.connect(path).execute("select conversation_id from rendered").fetchall()
    assert rows == [(cid,)]
    # a restart: a new server, nothing rendered in memory
    rendering._cache._items.clear()
    rendering._cache.size = 0
    renders = []
    real = rendering._render
    monkeypatch.setattr(rendering, "_render", lambda text, env=None: renders.append(text) or real(text, env))
    ds2 = make_datasette({"default_model": "steady", "title_model": False})
    await ds2.invoke_startup()
    again = (await ds2.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds2, ROOT))).text
    assert renders == []
    assert again.split('<div id="messages"')[1].split("</article>")[0] == first.split('<div id="messages"')[1].split("</article>")[0]


@pytest.mark.asyncio
async def test_deleting_a_conversation_deletes_its_rendered_replies(make_datasette, user_dir):
    ds = make_datasette({"default_model": "steady", "title_model": False})
    await ds.invoke_startup()
    doomed, kept = await conversation(ds, "doomed"), await conversation(ds, "kept")
    for cid in (doomed, kept):
        await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, ROOT))
    await rendering.in_render_thread(lambda: None)
    path = user_dir / "logs-llm-htmx-render.db"
    await ds.client.post(f"/-/llm/{doomed}/delete", cookies=cookies_for(ds, ROOT))
    rows = sqlite3.connect(path).execute("select conversation_id, html from rendered").fetchall()
    assert [r[0] for r in rows] == [kept]
    assert not any("doomed" in r[1] for r in rows)


@pytest.mark.asyncio
async def test_off_with_a_setting(make_datasette, user_dir):
    ds = make_datasette({"default_model": "steady", "title_model": False, "render_cache_file": False})
    await ds.invoke_startup()
    cid = await conversation(ds, "nowhere")
    await ds.client.get(f"/-/llm/{cid}", cookies=cookies_for(ds, ROOT))
    assert not (user_dir / "logs-llm-htmx-render.db").exists()


def test_the_file_stays_within_its_bound_in_bytes(tmp_path):
    """Counted as it grows; past the bound, the oldest writes go. A file
    left by an older renderer starts afresh."""
    from datasette_llm_htmx.store.rendered import RenderStore

    path = tmp_path / "render.db"
    old = sqlite3.connect(path)
    old.execute("create table rendered (key blob primary key, renderer text not null,"
                " html text not null, conversation_id text)")
    old.execute("insert into rendered values (x'00', 'old', 'stale', 'c')")
    old.commit()
    old.close()
    store = RenderStore(path, most_bytes=100_000)
    for i in range(100):
        store.put_many({bytes([i, 1]): "x" * 5_000}, f"c{i}")
        assert store.size <= 100_000
    assert store.size == sqlite3.connect(path).execute(
        "select sum(length(html)) from rendered").fetchone()[0]
    assert store.get_many([bytes([99, 1])]) == {bytes([99, 1]): "x" * 5_000}
    assert store.get_many([bytes([0, 1]), b"\x00"]) == {}
    assert not store.broken
