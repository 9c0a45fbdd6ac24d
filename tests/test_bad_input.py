"""Every bad input gets a clear message and a 4xx, never a 500, and what the
user typed comes back in the form."""

import html
import sqlite3

import pytest
import pytest_asyncio
from helpers import HTMX, MESSAGE_ID, ROOT, cid_from, cookies_for, wait_for_generations


@pytest_asyncio.fixture
async def limited(make_datasette):
    ds = make_datasette(
        {"default_model": "steady", "models": ["steady", "echo", "echo-needs-key", "markov"],
         "max_prompt_chars": 1000}
    )
    await ds.invoke_startup()
    return ds


def textarea(page, name):
    start = page.index(f'name="{name}"')
    opened = page.index(">", start) + 1
    return html.unescape(page[opened : page.index("</textarea>", opened)])


async def post_start(ds, htmx=False, **data):
    return await ds.client.post(
        "/-/llm/start",
        data={"model_id": "steady", "prompt": "my precious text", "system": "my system", **data},
        cookies=cookies_for(ds, ROOT),
        headers=HTMX if htmx else {},
    )


async def come_back(ds, response):
    """Without JavaScript a problem is a redirect back to the form's page
    (a reload does not post again), which shows it with its status."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert "?draft=" in location and "/start" not in location and not location.endswith("/prompt")
    return await ds.client.get(location, cookies=cookies_for(ds, ROOT))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fields,status,message",
    [
        ({"prompt": ""}, 400, "Type a prompt before sending."),
        ({"prompt": "   \n\t "}, 400, "Type a prompt before sending."),
        ({"model_id": "gpt-4o-mini"}, 400, "The model 'gpt-4o-mini' is not available here."),
        ({"model_id": ""}, 400, "Choose a model."),
        ({"prompt": "x" * 1001}, 413, "The prompt is 1,001 characters long: the limit is 1,000."),
        ({"system": "y" * 1001}, 413, "The system prompt is 1,001 characters long"),
        ({"option_chunks": "many"}, 400, "Check the options: chunks must be a whole number."),
        ({"option_delay": "-1"}, 400, "Check the options: delay must be at least 0."),
        ({"option_nonsense": "1"}, 400, "Check the options: nonsense is not an option of this model."),
        (
            {"model_id": "echo-needs-key"},
            400,
            "The model 'echo-needs-key' needs an API key. Set one with "
            "'llm keys set echo-needs-key' or set the environment variable "
            "LLM_ECHO_NEEDS_KEY_KEY, then send again.",
        ),
    ],
)
async def test_start_refuses_bad_input_and_keeps_the_text(limited, fields, status, message):
    response = await come_back(limited, await post_start(limited, **fields))
    assert response.status_code == status
    page = response.text
    assert message in html.unescape(page)
    # the form comes back with everything that was typed
    expected_prompt = fields.get("prompt", "my precious text")
    expected_system = fields.get("system", "my system")
    assert textarea(page, "prompt") == expected_prompt
    assert textarea(page, "system") == expected_system
    # and nothing was started
    conn = sqlite3.connect(limited.get_database("llm").path)
    assert conn.execute("select count(*) from initiated").fetchone()[0] == 0

    # sent by htmx, the error is a partial for beside the form
    response = await post_start(limited, htmx=True, **fields)
    assert response.status_code == status
    assert response.headers["HX-Retarget"] == "#form-error"
    assert response.text.strip().startswith('<p class="llm-error">')
    assert message in html.unescape(response.text)


@pytest.mark.asyncio
async def test_unknown_model(ds):
    response = await come_back(ds, await post_start(ds, model_id="no-such-model"))
    assert response.status_code == 400
    assert "Unknown model: 'no-such-model'. Is the llm plugin that provides it installed?" in html.unescape(response.text)
    assert textarea(response.text, "prompt") == "my precious text"


@pytest.mark.asyncio
async def test_allowlist_limits_the_select(limited):
    page = (await limited.client.get("/-/llm", cookies=cookies_for(limited, ROOT))).text
    assert '<option value="steady" selected>' in page
    assert 'value="gpt-4o-mini"' not in page
    assert "echo-needs-key (needs a key)" in page


@pytest.mark.asyncio
async def test_key_from_the_environment_is_accepted(limited, monkeypatch):
    monkeypatch.setenv("LLM_ECHO_NEEDS_KEY_KEY", "not-a-real-key")
    response = await post_start(limited, model_id="echo-needs-key")
    assert response.status_code == 303
    await wait_for_generations(limited)


@pytest.mark.asyncio
async def test_follow_up_errors(limited):
    cookies = cookies_for(limited, ROOT)
    cid = cid_from(await post_start(limited))
    await wait_for_generations(limited)
    for data, status, message in [
        ({"prompt": " "}, 400, "Type a prompt before sending."),
        ({"prompt": "z" * 2000}, 413, "The prompt is 2,000 characters long"),
        ({"prompt": "ok", "option_chunks": "-5"}, 400, "chunks must be at least 0"),
    ]:
        response = await come_back(
            limited, await limited.client.post(f"/-/llm/{cid}/prompt", data=data, cookies=cookies)
        )
        assert response.status_code == status
        assert message in html.unescape(response.text)
        assert textarea(response.text, "prompt") == data["prompt"]
        response = await limited.client.post(
            f"/-/llm/{cid}/prompt", data=data, cookies=cookies, headers=HTMX
        )
        assert response.status_code == status
        assert response.headers["HX-Retarget"] == "#form-error"


@pytest.mark.asyncio
async def test_follow_up_while_a_reply_streams_is_409(limited):
    cookies = cookies_for(limited, ROOT)
    cid = cid_from(await post_start(limited, option_chunks="50", option_delay="0.05"))
    response = await limited.client.post(
        f"/-/llm/{cid}/prompt", data={"prompt": "too soon"}, cookies=cookies, headers=HTMX
    )
    assert response.status_code == 409
    assert "still being written" in response.text
    await wait_for_generations(limited)


@pytest.mark.asyncio
async def test_follow_up_to_a_conversation_whose_model_is_gone(limited):
    conn = sqlite3.connect(limited.get_database("llm").path)
    conn.execute(
        "insert into conversations (id, name, model) values (?, ?, ?)",
        ["01h0000000000000000000gone", "old", "uninstalled-model"],
    )
    conn.execute(
        "insert into responses (id, conversation_id, model, prompt, response, datetime_utc)"
        " values ('01h0000000000000000000res1', '01h0000000000000000000gone',"
        " 'uninstalled-model', 'hi', 'hello', '2024-01-01T00:00:00')"
    )
    conn.commit()
    response = await come_back(limited, await limited.client.post(
        "/-/llm/01h0000000000000000000gone/prompt",
        data={"prompt": "are you there?"},
        cookies=cookies_for(limited, ROOT),
    ))
    assert response.status_code == 400
    # (the allowlist of this Datasette does not name it)
    assert (
        "The model 'uninstalled-model' is not available here."
        " This conversation cannot be continued until it is."
    ) in html.unescape(response.text)
    assert textarea(response.text, "prompt") == "are you there?"


@pytest.mark.asyncio
async def test_unknown_and_malformed_ids_are_404(limited):
    cookies = cookies_for(limited, ROOT)
    cid = cid_from(await post_start(limited))
    await wait_for_generations(limited)
    for method, path in [
        ("get", "/-/llm/01h0000000000000000000none"),
        ("get", "/-/llm/NOT-AN-ID"),
        ("post", "/-/llm/01h0000000000000000000none/prompt"),
        ("post", f"/-/llm/{cid}/stop/01h0000000000000000000none"),
        ("post", f"/-/llm/{cid}/stop/bad-id"),
        ("post", f"/-/llm/{cid}/retry/01h0000000000000000000none"),
        ("get", f"/-/llm/{cid}/stream/01h0000000000000000000none"),
    ]:
        response = await getattr(limited.client, method)(path, cookies=cookies)
        assert response.status_code == 404, path
        assert "not found" in response.text.lower()


@pytest.mark.asyncio
async def test_wrong_methods_are_405(limited):
    cookies = cookies_for(limited, ROOT)
    cid = cid_from(await post_start(limited))
    await wait_for_generations(limited)
    mid = MESSAGE_ID.search((await limited.client.get(f"/-/llm/{cid}", cookies=cookies)).text).group(1)
    for method, path, allowed in [
        ("get", "/-/llm/start", "POST"),
        ("post", "/-/llm", "GET"),
        ("post", f"/-/llm/{cid}", "GET"),
        ("get", f"/-/llm/{cid}/prompt", "POST"),
        ("get", f"/-/llm/{cid}/stop/{mid}", "POST"),
        ("get", f"/-/llm/{cid}/retry/{mid}", "POST"),
        ("post", f"/-/llm/{cid}/stream/{mid}", "GET"),
        ("delete", f"/-/llm/{cid}", "GET"),
    ]:
        response = await limited.client.request(method.upper(), path, cookies=cookies)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allowed


@pytest.mark.asyncio
async def test_retry_of_a_finished_reply_is_409(limited):
    cookies = cookies_for(limited, ROOT)
    cid = cid_from(await post_start(limited))
    await wait_for_generations(limited)
    page = (await limited.client.get(f"/-/llm/{cid}", cookies=cookies)).text
    mid = MESSAGE_ID.search(page).group(1)
    response = await come_back(limited, await limited.client.post(f"/-/llm/{cid}/retry/{mid}", cookies=cookies))
    assert response.status_code == 409
    assert "Only a stopped, failed or interrupted reply can be retried." in response.text
