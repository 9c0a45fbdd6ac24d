"""Keyboard only, JavaScript off, screen readers, narrow screens: in Chromium."""

import re

import pytest

pytestmark = [
    pytest.mark.browser,
    # as in test_browser.py: a second try for a timeout not explained yet
    pytest.mark.flaky(reruns=1),
]

CONVERSATION_URL = re.compile(r"/-/llm/[0-9a-z]{26}$")

DESCRIBE_FOCUS = """() => {
    const e = document.activeElement;
    const style = getComputedStyle(e);
    return {
        tag: e.tagName.toLowerCase(), id: e.id, text: (e.innerText || "").trim().slice(0, 40),
        cls: e.className || "", outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
    };
}"""


def tab_until(page, matches, limit=60):
    """Press Tab until the focused element matches; return the path taken.
    Every element reached must show a visible focus style."""
    path = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focus = page.evaluate(DESCRIBE_FOCUS)
        if focus["tag"] == "body":  # focus left the page (browser chrome)
            continue
        path.append(focus)
        assert focus["outline"] != "none" and focus["width"] >= 2, f"focus not visible: {focus}"
        if matches(focus):
            return path
    raise AssertionError(f"never reached: {[(f['tag'], f['id'], f['text']) for f in path]}")


def by_id(id_):
    return lambda f: f["id"] == id_


def by_text(tag, text):
    return lambda f: f["tag"] == tag and f["text"].startswith(text)


def test_keyboard_only_flow(page, server, wait_for):
    page.goto(server.url + "/-/llm")
    assert page.evaluate("document.activeElement.id") == "prompt"  # ready to type
    assert page.is_visible("text=sends")  # the Ctrl+Enter hint
    page.evaluate("document.activeElement.blur()")
    # Tab order: model select, options, system prompt, prompt, Send
    path = tab_until(page, by_id("model_id"))
    # arrow keys move through a focused select's options
    page.keyboard.press("Home")
    for _ in range(200):
        if page.input_value("#model_id") == "steady":
            break
        page.keyboard.press("ArrowDown")
    assert page.input_value("#model_id") == "steady"
    # htmx swaps in the options of the chosen model
    wait_for(page, "document.querySelector('#model-options summary').textContent === 'Options for steady'")
    tab_until(page, lambda f: f["tag"] == "summary" and "Options" in f["text"])
    page.keyboard.press("Enter")  # opens the options
    tab_until(page, by_id("option_chunks"))
    page.keyboard.type("200")
    tab_until(page, by_id("option_delay"))
    page.keyboard.type("0.05")
    tab_until(page, lambda f: f["tag"] == "summary" and "System prompt" in f["text"])
    page.keyboard.press("Enter")
    tab_until(page, by_id("system"))
    page.keyboard.type("Be brief")
    tab_until(page, by_id("prompt"))
    page.keyboard.insert_text("A long prompt. " * 80)  # over 1,000 characters
    page.keyboard.press("Enter")  # a new line, not a send
    assert page.input_value("#prompt").endswith("\n")
    path = tab_until(page, by_text("button", "Send"))
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(CONVERSATION_URL)
    assert page.evaluate("document.activeElement.id") == "prompt"

    # Stop is reachable while the reply streams, and works from the keyboard
    page.locator(".stream-text").wait_for()
    page.evaluate("document.activeElement.blur()")
    path = tab_until(page, by_text("button", "Stop"))
    names = [(f["tag"], f["text"]) for f in path]
    assert ("a", "Rename") in names and ("a", "View all (1,209 characters)") in names
    assert ("button", "Print") in names
    page.keyboard.press("Enter")
    page.locator("article.status-stopped").wait_for()
    # Retry is reachable too
    page.evaluate("document.activeElement.blur()")
    tab_until(page, by_text("button", "Retry"))

    # View all: the whole prompt is swapped in, focus stays on it
    page.evaluate("document.activeElement.blur()")
    tab_until(page, by_text("a", "View all"))
    page.keyboard.press("Enter")
    wait_for(page, "document.activeElement.classList.contains('prompt-block')")
    assert page.locator(".view-all").count() == 0

    # Rename with the keyboard: Enter on Rename, type, Enter saves
    page.evaluate("document.activeElement.blur()")
    tab_until(page, by_text("a", "Rename"))
    page.keyboard.press("Enter")
    wait_for(page, "document.activeElement.id === 'title-input'")
    page.keyboard.press("Control+a")
    page.keyboard.type("Typed by keyboard")
    page.keyboard.press("Enter")
    wait_for(page, "(document.querySelector('#conversation-title h1') || {}).textContent === 'Typed by keyboard'")
    assert page.evaluate("document.activeElement.className") == "rename-link"

    # Cmd+Enter sends too; focus comes back to the textarea
    page.focus("#prompt")
    page.keyboard.type("Sent with Cmd+Enter")
    page.keyboard.press("Meta+Enter")
    wait_for(page, "document.querySelectorAll('article').length === 2")
    assert page.input_value("#prompt") == ""
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert page.errors == []


def test_javascript_off(root_context, server):
    page = root_context(server, java_script_enabled=False).new_page()
    page.goto(server.url + "/-/llm")
    assert not page.is_visible("text=sends")  # Ctrl+Enter needs JavaScript
    page.select_option("#model_id", "steady")
    page.click(".system-details summary")
    page.fill("#system", "No scripts here")
    page.click(".model-options summary")
    page.fill("#prompt", "Long prompt without JavaScript. " * 40)
    page.fill("#option_chunks", "15")
    page.fill("#option_delay", "0.1")
    page.click("button:text('Send')")
    page.wait_for_url(CONVERSATION_URL)
    conversation_url = page.url
    assert page.locator("noscript").count() >= 1
    # the page refreshes itself (<noscript> meta refresh) until the reply is done
    page.locator("article.status-done").wait_for(timeout=20000)
    assert "token14" in page.locator("article .reply-body").inner_text()
    # a follow-up, as a plain form post
    page.fill("#prompt", "A follow-up without JavaScript")
    page.click("#prompt-form button:text('Send')")
    page.wait_for_url(re.compile(r"/-/llm/[0-9a-z]{26}(#m-[0-9a-z]{26})?$"))
    page.locator("article.status-done").nth(1).wait_for(timeout=20000)
    # View all opens the whole prompt as a page
    page.click("a.view-all")
    page.wait_for_url(re.compile(r"/prompt/[0-9a-z]{26}$"))
    assert page.locator(".prompt-text").inner_text().count("Long prompt without JavaScript.") == 40
    page.go_back()
    # Rename: a page with the form; a suggestion is a submit button
    page.click("a.rename-link")
    page.wait_for_url(re.compile(r"/title$"))
    suggestion = page.locator("button.suggestion").first
    chosen = suggestion.inner_text()
    suggestion.click()
    page.wait_for_url(conversation_url)
    assert page.locator("#conversation-title h1").inner_text() == chosen


def test_axe_finds_no_serious_violations(page, server, start_in_browser, run_axe):
    page.goto(server.url + "/-/llm")
    assert run_axe(page) == []
    start_in_browser(
        page, server, "Markdown please", system="Be helpful",
        text="# Heading\n\n- a\n- b\n\n```\ncode\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        delay=0.02, hold=2,
    )
    # a streaming reply
    page.locator(".stream-text").wait_for()
    assert page.locator("article[aria-busy=true]").count() == 1
    assert page.locator("[role=log]").count() == 1
    assert run_axe(page) == []
    page.locator("article.status-done").wait_for(timeout=15000)
    assert page.locator("article[aria-busy]").count() == 0
    assert page.locator("#chat-status").inner_text() == "Reply complete"
    assert run_axe(page) == []
    page.click(".rename-link")
    page.locator("#title-input").wait_for()
    assert run_axe(page) == []


def test_live_region_announces_start_and_end_only(page, server, start_in_browser, wait_for):
    start_in_browser(page, server, "First", chunks=2)
    page.locator("article.status-done").wait_for()
    page.evaluate(
        """() => {
            window.announcements = [];
            new MutationObserver(() => window.announcements.push(
                document.getElementById("chat-status").textContent
            )).observe(document.getElementById("chat-status"),
                       {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.fill("#prompt", "Second")
    page.press("#prompt", "Control+Enter")
    page.locator("article.status-done").nth(1).wait_for()
    wait_for(page, "window.announcements.includes('Reply complete')")
    announcements = page.evaluate("window.announcements")
    assert announcements == ["Generating…", "Reply complete"]


def test_reload_mid_reply_shows_the_text_once(page, server, start_in_browser, wait_for):
    start_in_browser(page, server, "Reload me", chunks=60, delay=0.05)
    wait_for(page, "document.querySelector('.stream-text').textContent.includes('token10')")
    page.reload()
    wait_for(page, "document.querySelector('.stream-text') && document.querySelector('.stream-text').textContent.includes('token20')")
    text = page.locator(".stream-text").text_content()
    assert text.count("token0 ") == 1 and text.count("token10 ") == 1
    page.locator("article.status-done").wait_for(timeout=15000)
    final = page.locator("article .reply-body").inner_text()
    assert final.count("token10 ") == 1 and "token59" in final


@pytest.mark.parametrize("path", ["index", "conversation"])
def test_narrow_screen(root_context, server, path, start_in_browser, screenshot):
    page = root_context(server, viewport={"width": 375, "height": 740}, is_mobile=True).new_page()
    if path == "index":
        page.goto(server.url + "/-/llm")
    else:
        start_in_browser(
            page, server, "A question on a phone",
            text="Some **markdown**:\n\n- one\n- two\n\n```\na_rather_long_line_of_code = compute(value_one, value_two, value_three)\n```\n\n| column | another column | third |\n|---|---|---|\n| 1 | 2 | 3 |\n",
        )
        page.locator("article.status-done").wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{overflow}px of horizontal scrolling"
    screenshot(page, f"narrow-{path}")
