"""An XSS corpus through every place text is drawn: reply, prompt, system
prompt and title; checked by parsing the HTML (and in Chromium, by
browser/test_xss_in_chromium.py)."""

import re
from html.parser import HTMLParser

from helpers import MESSAGE_ID
from xss_payloads import PAYLOADS

KNOWN_INLINE_SCRIPT_STARTS = (
    "window.datasetteVersion = ",
    "\ndocument.body.addEventListener('click'",
    # the other plugin of the corpus's server (tests/other_plugins)
    "document.documentElement.dataset.otherPlugin = 'ran';",
)
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


def test_sanitizer_blocks_every_payload_in_html(xss_corpus):
    server, conversations = xss_corpus
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
