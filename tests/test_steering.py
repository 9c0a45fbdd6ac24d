"""Steering a conversation: regenerate and edit make forks as llm stores
them, alternatives link to each other, settings change mid-conversation,
conversations are deleted, and a conversation that outgrows its model's
context goes on in a new one."""

import json
import re
import sqlite3

import pytest
from helpers import HTMX, MESSAGE_ID, ROOT, cid_from, cookies_for, llm_cli, wait_for_generations

LOCATION = re.compile(r"/-/llm/([0-9a-z]{26})#m-([0-9a-z]{26})$")


async def post(ds, path, actor=ROOT, **kwargs):
    return await ds.client.post(path, cookies=cookies_for(ds, actor), **kwargs)


async def get(ds, path, actor=ROOT, **kwargs):
    return await ds.client.get(path, cookies=cookies_for(ds, actor), **kwargs)


async def conversation_of_two(ds, **data):
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "steady", "prompt": "first", **data}))
    await wait_for_generations(ds)
    await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "second"})
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    return cid, MESSAGE_ID.findall(page)


def db(ds):
    return sqlite3.connect(ds.get_database("llm").path)


@pytest.mark.asyncio
async def test_regenerate_makes_a_fork_as_llm_stores_it(ds, user_dir):
    cid, (first, second) = await conversation_of_two(ds, option_text="steady answer")
    response = await post(ds, f"/-/llm/{cid}/regenerate/{second}")
    assert response.status_code == 303
    fork, new = LOCATION.search(response.headers["location"]).groups()
    await wait_for_generations(ds)
    assert fork != cid
    # llm's own fork: a thread pointing into the other
    conn = db(ds)
    assert conn.execute("select forked_from from threads where id = ?", [fork]).fetchone()[0] == cid
    # the fork shows the history before the turn, then the new reply
    page = (await get(ds, f"/-/llm/{fork}")).text
    assert MESSAGE_ID.findall(page) == [first, new]
    assert '<span class="position">2 / 2</span>' in page
    assert f'href="/-/llm/{cid}#m-{second}" rel="prev"' in page
    # and the conversation it came from is as it was, linking to the fork
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert MESSAGE_ID.findall(page) == [first, second]
    assert '<span class="position">1 / 2</span>' in page
    assert f'href="/-/llm/{fork}#m-{new}" rel="next"' in page
    # the list holds the conversation once
    index = (await get(ds, "/-/llm")).text
    assert cid in index and fork not in index
    # the llm CLI sees the fork and continues it with its history
    logs = json.loads(llm_cli(user_dir, "logs", "--cid", fork, "--json"))
    assert [entry["prompt"] for entry in logs] == ["second"]
    out = llm_cli(user_dir, "chat", "--cid", fork, input="from the cli\nquit\n")
    assert "Earlier prompts: first | second" in out
    # a follow-up in the browser goes on in the fork
    await post(ds, f"/-/llm/{fork}/prompt", data={"prompt": "third"})
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{fork}")).text
    assert "Earlier prompts: first | second | from the cli" in page
    assert MESSAGE_ID.findall((await get(ds, f"/-/llm/{cid}")).text) == [first, second]


@pytest.mark.asyncio
async def test_edit_and_resend_forks_before_the_prompt(ds, user_dir):
    cid, (first, second) = await conversation_of_two(ds, system="Be brief")
    form = await get(ds, f"/-/llm/{cid}/edit/{first}", headers=HTMX)
    assert '<textarea id="edit-' in form.text and ">first</textarea>" in form.text
    page = await get(ds, f"/-/llm/{cid}/edit/{first}")
    assert "<!DOCTYPE html>" in page.text
    response = await post(ds, f"/-/llm/{cid}/edit/{first}", data={"prompt": "first, edited"})
    fork, new = LOCATION.search(response.headers["location"]).groups()
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{fork}")).text
    assert MESSAGE_ID.findall(page) == [new]
    assert "Reply to: first, edited" in page
    assert "System: Be brief" in page  # the fork starts at the system prompt
    assert '<span class="position">2 / 2</span>' in page
    # llm's own fork, from before the edited prompt: the CLI sees it and goes on
    assert json.loads(llm_cli(user_dir, "logs", "--cid", fork, "--json"))[0]["prompt"] == "first, edited"
    out = llm_cli(user_dir, "chat", "--cid", fork, input="after the edit\nquit\n")
    assert "Earlier prompts: first, edited" in out
    # an empty edit is refused, and the form comes back
    response = await post(ds, f"/-/llm/{cid}/edit/{first}", data={"prompt": "  "})
    assert response.status_code == 400 and "Type a prompt before sending." in response.text


@pytest.mark.asyncio
async def test_alternatives_of_alternatives(ds):
    cid, (first, second) = await conversation_of_two(ds)
    forks = []
    for _ in range(2):
        response = await post(ds, f"/-/llm/{cid}/regenerate/{second}")
        forks.append(LOCATION.search(response.headers["location"]).groups())
        await wait_for_generations(ds)
    for index, (thread, turn) in enumerate([(cid, second), *forks]):
        page = (await get(ds, f"/-/llm/{thread}")).text
        assert f'<span class="position">{index + 1} / 3</span>' in page, thread


@pytest.mark.asyncio
async def test_regenerate_needs_a_finished_reply_and_the_owner(make_datasette):
    ds = make_datasette({"default_model": "steady"}, config={"permissions": {"llm-chat": {"id": ["alice", "bob"]}}})
    await ds.invoke_startup()
    cid = cid_from(await post(ds, "/-/llm/start", actor={"id": "alice"}, data={"model_id": "steady", "prompt": "hi"}))
    await wait_for_generations(ds)
    mid = MESSAGE_ID.search((await get(ds, f"/-/llm/{cid}", actor={"id": "alice"})).text).group(1)
    assert (await post(ds, f"/-/llm/{cid}/regenerate/{mid}", actor={"id": "bob"})).status_code == 404
    assert (await post(ds, f"/-/llm/{cid}/edit/{mid}", actor={"id": "bob"}, data={"prompt": "x"})).status_code == 404
    assert (await post(ds, f"/-/llm/{cid}/regenerate/{mid}")).status_code == 403


@pytest.mark.asyncio
async def test_delete_a_conversation(make_datasette, user_dir):
    ds = make_datasette(
        {"default_model": "steady"},
        config={"permissions": {"llm-chat": {"id": ["alice", "bob", "viewer"]}, "llm-view-all": {"id": ["viewer"]}}},
    )
    await ds.invoke_startup()
    alice = {"id": "alice"}
    # two conversations that share their first messages (same prompt, same reply)
    keep = cid_from(await post(ds, "/-/llm/start", actor=alice, data={"model_id": "steady", "prompt": "shared start", "option_text": "same"}))
    doomed = cid_from(await post(ds, "/-/llm/start", actor=alice, data={"model_id": "steady", "prompt": "shared start", "option_text": "same"}))
    await wait_for_generations(ds)
    await post(ds, f"/-/llm/{doomed}/prompt", actor=alice, data={"prompt": "quokka only here"})
    await wait_for_generations(ds)
    mid = MESSAGE_ID.findall((await get(ds, f"/-/llm/{doomed}", actor=alice)).text)[-1]
    fork = LOCATION.search((await post(ds, f"/-/llm/{doomed}/regenerate/{mid}", actor=alice)).headers["location"]).group(1)
    await wait_for_generations(ds)
    conn = db(ds)
    messages_before = conn.execute("select count(*) from messages").fetchone()[0]
    # another actor cannot see it, so cannot delete it
    assert (await get(ds, f"/-/llm/{doomed}/delete", actor={"id": "bob"})).status_code == 404
    assert (await post(ds, f"/-/llm/{doomed}/delete", actor={"id": "bob"})).status_code == 404
    # the owner is asked first, then it goes
    confirm = await get(ds, f"/-/llm/{doomed}/delete", actor=alice)
    assert confirm.status_code == 200 and 'action="/-/llm/%s/delete"' % doomed in confirm.text
    response = await post(ds, f"/-/llm/{doomed}/delete", actor=alice)
    assert response.status_code == 303
    for thread in (doomed, fork):
        assert (await get(ds, f"/-/llm/{thread}", actor=alice)).status_code == 404
        assert (await get(ds, f"/-/llm/{thread}.md", actor=alice)).status_code == 404
        assert conn.execute("select count(*) from turns where thread_id = ?", [thread]).fetchone()[0] == 0
    index = (await get(ds, "/-/llm", actor=alice)).text
    assert doomed not in index and keep in index
    assert doomed not in (await get(ds, "/-/llm", actor=alice, params={"q": "quokka"})).text
    # what the other conversation shares stays, and it still reads whole
    page = (await get(ds, f"/-/llm/{keep}", actor=alice)).text
    assert "shared start" in page and "same" in page
    assert conn.execute("select count(*) from messages").fetchone()[0] < messages_before
    from llm.logs import LogStore
    import sqlite_utils

    assert LogStore(sqlite_utils.Database(ds.get_database("llm").path)).verify() == []
    # llm-view-all may delete anyone's conversation, the llm CLI's too
    llm_cli(user_dir, "-m", "echo", "from the cli")
    cli = conn.execute("select id from threads where name = 'from the cli'").fetchone()[0]
    assert (await post(ds, f"/-/llm/{cli}/delete", actor={"id": "viewer"})).status_code == 303
    assert conn.execute("select count(*) from threads where id = ?", [cli]).fetchone()[0] == 0
    assert "from the cli" not in llm_cli(user_dir, "logs", "-n", "0")


@pytest.mark.asyncio
async def test_model_options_and_system_change_mid_conversation(ds):
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "echo", "prompt": "one", "system": "First system"}))
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    # the settings are in a closed disclosure, filled in with what is in force
    assert '<details class="settings">' in page
    assert '<option value="echo" selected>' in page.split('id="prompt-form"')[1]
    assert ">First system</textarea>" in page
    # the same system prompt sent back is no change
    await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "two", "system": "First system", "system_was": "First system", "model_id": "echo", "option_example_bool": "true"})
    await wait_for_generations(ds)
    # a new system prompt, and options carried
    await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "three", "system": "Second system", "system_was": "First system", "model_id": "echo"})
    await wait_for_generations(ds)
    data = (await get(ds, f"/-/llm/{cid}.json")).json()
    replies = [json.loads(m["response"]) for m in data["messages"]]
    assert replies[0]["system"] == "First system"
    assert replies[1]["options"]["example_bool"] is True
    assert replies[2]["system"] == "Second system"
    # the system prompt shows where it is set and where it changes: twice
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert page.count('class="system-prompt"') == 2
    markdown = (await get(ds, f"/-/llm/{cid}.md")).text
    assert markdown.count("## System") == 2
    # another model from here on
    await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "four", "model_id": "steady", "system_was": "Second system"})
    await wait_for_generations(ds)
    data = (await get(ds, f"/-/llm/{cid}.json")).json()
    assert data["messages"][-1]["model"] == "steady"
    assert "Earlier prompts: one | two | three" in data["messages"][-1]["response"]


@pytest.mark.asyncio
async def test_the_system_prompt_shows_once(ds):
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "steady", "prompt": "a", "system": "Only once"}))
    await wait_for_generations(ds)
    for prompt in ("b", "c"):
        await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": prompt})
        await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert page.count('class="system-prompt"') == 1
    assert (await get(ds, f"/-/llm/{cid}.md")).text.count("## System") == 1


@pytest.mark.asyncio
async def test_a_single_turn_model_gets_no_follow_up_form(ds):
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "lonely", "prompt": "just this"}))
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert "Alone with: just this" in page
    assert 'id="prompt-form"' not in page
    assert "answers one prompt at a time" in page


@pytest.mark.asyncio
async def test_a_conversation_that_outgrows_the_context_window_goes_on(ds):
    cid = cid_from(await post(ds, "/-/llm/start", data={"model_id": "windowed", "prompt": "A first question, long enough"}))
    await wait_for_generations(ds)
    await post(ds, f"/-/llm/{cid}/prompt", data={"prompt": "A second question that no longer fits in the window"})
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{cid}")).text
    assert "status-failed" in page
    assert "no longer fits in the model&#39;s context window" in page or "no longer fits in the model's context window" in page
    failed = MESSAGE_ID.findall(page)[-1]
    assert f'action="/-/llm/{cid}/carry/{failed}"' in page
    response = await post(ds, f"/-/llm/{cid}/carry/{failed}")
    new = re.search(r"/-/llm/([0-9a-z]{26})$", response.headers["location"]).group(1)
    await wait_for_generations(ds)
    page = (await get(ds, f"/-/llm/{new}")).text
    assert "status-done" in page
    assert "A second question that no longer fits" in page
    # the last exchange came along, as a fragment of the first prompt
    assert '<details class="fragment">' in page and "A first question, long enough" in page


@pytest.mark.asyncio
async def test_models_that_need_a_key_come_last(make_datasette):
    ds = make_datasette({"default_model": "steady"})
    await ds.invoke_startup()
    page = (await get(ds, "/-/llm")).text
    select = page[page.index('<select id="model_id"'):page.index("</select>")]
    assert select.index('value="steady"') < select.index('<optgroup label="Need an API key">')
    assert select.index('<optgroup label="Need an API key">') < select.index('value="echo-needs-key"')
    hidden = make_datasette({"default_model": "steady", "hide_models_without_keys": True})
    await hidden.invoke_startup()
    assert 'value="echo-needs-key"' not in (await hidden.client.get("/-/llm", cookies=cookies_for(hidden, ROOT))).text


def test_titles_are_judged():
    from datasette_llm_htmx.titles import fallback, judge

    assert judge("Otters and their habits", "tell me about otters", None) == "Otters and their habits"
    assert judge('"Baking bread."', "bread?", None) == "Baking bread"
    assert judge("Title: Baking bread", "bread?", None) == "Baking bread"
    assert judge("python", "a python question", None) is None  # one word: a tiny model's guess
    assert judge("Sure! Here is a title for you", "x", None) is None  # chatter
    assert judge("line one\nline two\nline three", "x", None) is None  # not one line
    assert judge("1. NOT", "Name three SQL keywords.", None) is None  # a list begun
    assert judge("- Select rows", "SQL?", None) is None
    assert judge("You are a helpful assistant", "x", "You are a helpful assistant. Be brief.") is None
    assert judge("the the cat sat on the the mat mat dog ran", "x", None) is None  # word salad, too long
    assert fallback("How do I make a sourdough starter from scratch at home?") == "How do I make a sourdough starter from scratch…"
    assert fallback("Short one") == "Short one"
