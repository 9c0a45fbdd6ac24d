"""In a real Chromium, through Playwright, against a real server."""

import re
import subprocess

import pytest

pytestmark = [
    pytest.mark.browser,
    # One run in many of the full suite timed out once, unexplained so far:
    # a second try keeps CI honest about real failures while that is found.
    pytest.mark.flaky(reruns=1),
]


def test_send_streams_then_renders_markdown(page, server, add_option, wait_for, screenshot):
    page.goto(server.url + "/-/llm")
    page.select_option("#model_id", "steady")
    reply = "Here is a list:\n\n- alpha\n- beta\n\n```\ncode here\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    full = reply + "\n" + " ".join(f"word{i}" for i in range(40))
    add_option(page, "option_text", full)
    add_option(page, "option_delay", "0.03")
    add_option(page, "option_hold", "1.5")
    page.fill("#prompt", "Show me markdown")
    page.press("#prompt", "Control+Enter")
    page.wait_for_url(re.compile(r"/-/llm/[0-9a-z]{26}$"))
    stream_text = page.locator(".stream-text")
    stream_text.wait_for()
    # the blocks written so far show formatted while the reply is written
    wait_for(page, "document.querySelectorAll('article[aria-busy] .reply-body table td').length === 2")
    busy = page.locator("article[aria-busy] .reply-body.markdown")
    assert busy.locator("li").count() == 2
    assert busy.locator("pre code").inner_text().strip() == "code here"
    lengths = []
    for _ in range(6):
        lengths.append(len(stream_text.inner_text()))
        page.wait_for_timeout(150)
    # the paragraph being written grows while we watch: several distinct lengths
    assert len(set(lengths)) >= 3, lengths
    assert lengths == sorted(lengths)
    screenshot(page, "streaming")
    # all tokens are in, the reply is not done yet: not a character lost
    wait_for(page, "document.querySelector('.stream-text').textContent.endsWith('word39')")
    assert stream_text.text_content() == " ".join(f"word{i}" for i in range(40))
    page.locator("article.status-done").wait_for(timeout=15000)
    body = page.locator("article .reply-body.markdown")
    assert body.locator("li").count() == 2
    assert body.locator("pre code").inner_text().strip() == "code here"
    assert body.locator("table td").first.inner_text() == "1"
    assert page.locator("[sse-connect]").count() == 0
    assert page.errors == []
    screenshot(page, "conversation")


def test_follow_up_clears_textarea_and_keeps_focus(page, server):
    page.goto(server.url + "/-/llm")
    page.select_option("#model_id", "steady")
    page.fill("#prompt", "First prompt")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/-/llm/[0-9a-z]{26}$"))
    page.locator("article.status-done").wait_for()
    # Enter makes a new line; Ctrl+Enter sends
    page.focus("#prompt")
    page.keyboard.type("Second")
    page.keyboard.press("Enter")
    page.keyboard.type("line")
    assert page.input_value("#prompt") == "Second\nline"
    page.keyboard.press("Control+Enter")
    page.locator("article.status-done").nth(1).wait_for()
    assert page.input_value("#prompt") == ""
    assert page.evaluate("document.activeElement.id") == "prompt"
    second = page.locator("article").nth(1)
    assert "Earlier prompts: First prompt" in second.inner_text()
    assert page.errors == []


def test_index_screenshot(page, server, screenshot):
    with server.client() as client:
        for prompt in ("What is a database index?", "Write a haiku about SQLite"):
            client.post("/-/llm/start", data={"model_id": "steady", "prompt": prompt})
        client.post("/-/llm/start", data={"model_id": "markov", "prompt": "the cat sat on the mat", "option_delay": "0"})
    page.goto(server.url + "/-/llm")
    assert page.locator("#model_id").is_visible()
    screenshot(page, "index")
    assert page.errors == []


def test_stop_button_keeps_partial_and_offers_retry(page, server, start_in_browser, wait_for):
    # 200 chunks at 20 ms: time to press Stop, and a retry that ends in 4 s
    start_in_browser(page, server, "Stop me", chunks=200, delay=0.02)
    wait_for(page, "document.querySelector('.stream-text').textContent.includes('token3')")
    page.click(".stop-form button")
    page.locator("article.status-stopped").wait_for()
    text = page.locator("article .reply-body").inner_text()
    assert "token3" in text and "token199" not in text
    assert page.locator(".retry-form button").is_visible()
    page.reload()
    assert page.locator("article.status-stopped").count() == 1
    page.click(".retry-form button")
    page.locator("article").nth(1).wait_for()
    wait_for(page, "document.querySelectorAll('article.status-done').length === 1", timeout=30)
    assert page.errors == []


def test_error_shows_beside_the_form_and_keeps_the_text(page, server, start_in_browser):
    start_in_browser(page, server, "First")
    page.locator("article.status-done").wait_for()
    page.fill("#prompt", "x" * 10)
    # an invalid option value, sent by htmx: the server refuses it with a 400
    page.evaluate(
        """() => {
            const input = document.createElement("input");
            input.type = "hidden"; input.name = "option_chunks"; input.value = "lots";
            document.getElementById("prompt-form").appendChild(input);
        }"""
    )
    page.press("#prompt", "Control+Enter")
    page.locator("#form-error .llm-error").wait_for()
    assert "chunks must be a whole number" in page.locator("#form-error").inner_text()
    assert page.input_value("#prompt") == "x" * 10
    assert page.locator("article").count() == 1
    assert page.evaluate("document.activeElement.id") == "prompt"


def test_print_to_pdf_is_a_clean_transcript(page, server, tmp_path, start_in_browser, artifacts):
    long_line = "x = '" + "a" * 150 + "'  # END_OF_LONG_LINE"
    reply = (
        "A reply with a [link](https://example.com/docs) and code:\n\n"
        f"```python\n{long_line}\n```\n"
    )
    start_in_browser(page, server, "First printed prompt", text=reply)
    page.locator("article.status-done").wait_for()
    # the options of the last reply carry over: this one gets the default reply
    assert page.input_value("#option_text").replace("\r\n", "\n") == reply
    page.evaluate("document.getElementById('option_text').value = ''")
    page.fill("#prompt", "Second printed prompt")
    page.press("#prompt", "Control+Enter")
    page.locator("article.status-done").nth(1).wait_for()
    pdf = tmp_path / "conversation.pdf"
    page.pdf(path=str(pdf), format="A4")
    (artifacts / "conversation.pdf").write_bytes(pdf.read_bytes())
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for expected in (
        "First printed prompt",
        "Second printed prompt",
        "Earlier prompts: First printed prompt",
        "steady",
        "UTC",
        "https://example.com/docs",  # link URLs written out
        "END_OF_LONG_LINE",  # long code lines wrap rather than being cut
    ):
        assert expected in text, expected
    for unwanted in ("Follow-up", "Send", "Rename", "Ctrl+Enter", "Print", "Powered by", "Stop"):
        assert unwanted not in text, unwanted


def test_new_title_appears_without_a_reload(page, server, start_in_browser):
    start_in_browser(page, server, "Name this chat", chunks=10, delay=0.1)
    assert page.locator("#conversation-title h1").inner_text() == "Name this chat"
    page.locator("article.status-done").wait_for()
    assert page.locator("#conversation-title h1").inner_text() == "Re: Name this chat"
    assert page.errors == []
