"""The XSS corpus (tests/xss_payloads.py) in Chromium: no dialog, no error,
no request elsewhere, whatever a reader does with the page."""

from urllib.parse import quote

import pytest

pytestmark = pytest.mark.browser


def test_no_dialog_and_no_csp_violation_in_chromium(root_context, xss_corpus):
    server, conversations = xss_corpus
    context = root_context(server)
    page = context.new_page()
    dialogs, errors, requests, other_plugin = [], [], [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url + "/-/llm")
    for cid in conversations:
        page.goto(f"{server.url}/-/llm/{cid}")
        page.wait_for_load_state("load")
        # another plugin's inline script (extra_body_script) runs here
        other_plugin.append(page.evaluate("document.documentElement.dataset.otherPlugin"))
        # hover and focus everything, as a curious reader would
        for element in page.locator("#messages a, #messages details, #messages input").all()[:20]:
            element.hover()
        page.keyboard.press("Tab")
    context.close()
    assert dialogs == []
    assert errors == []
    assert other_plugin == ["ran"] * len(conversations)
    assert all(url.startswith(server.url) for url in requests), [
        u for u in requests if not u.startswith(server.url)
    ]


def test_a_same_origin_text_response_cannot_run_as_a_script(root_context, xss_corpus):
    """`script-src 'self'` allows any same-origin URL: Datasette's CSV of an
    attacker-chosen column name is JavaScript if the browser sniffs it."""
    server, conversations = xss_corpus
    gadget = "/_memory/-/query.csv?sql=" + quote('select 1 as "window.gadgetRan=1//"')
    with server.client() as client:
        response = client.get(gadget)
        assert response.text.startswith("window.gadgetRan=1//")
        assert response.headers["x-content-type-options"] == "nosniff"
    page = root_context(server).new_page()
    page.goto(f"{server.url}/-/llm/{conversations[0]}")
    # as if an injection had put a script element on the page
    page.evaluate(
        """(src) => new Promise((resolve) => {
            const script = document.createElement("script");
            script.src = src;
            script.onload = script.onerror = () => resolve();
            document.body.appendChild(script);
        })""",
        gadget,
    )
    assert page.evaluate("window.gadgetRan") is None
