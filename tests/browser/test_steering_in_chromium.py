"""Steering in a real Chromium: versions of a reply with and without
JavaScript, copy buttons, delete with its confirmation, the view following
a streaming reply, and the pages at desktop and phone widths."""

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.flaky(reruns=1)]

REPLY = "Here is some code:\n\n```python\nprint('hi')\n```\n\nAnd a closing line."


def _converse(page, server, start_in_browser, wait_for):
    """A conversation of two turns; the second reply regenerated once."""
    start_in_browser(page, server, "Show me code", text=REPLY)
    page.locator("article.status-done").wait_for()
    page.fill("#prompt", "Thanks, and again?")
    page.press("#prompt", "Control+Enter")
    wait_for(page, "document.querySelectorAll('article.status-done').length === 2")
    before = page.url
    page.locator("article").nth(1).locator(".regenerate-form button").click()
    page.wait_for_url(lambda url: url.split("#")[0] != before.split("#")[0])  # the fork's own URL
    wait_for(page, "document.querySelectorAll('article.status-done').length === 2")


def test_versions_of_a_reply_with_javascript(page, server, start_in_browser, wait_for):
    _converse(page, server, start_in_browser, wait_for)
    # the new version's page opens at its message, focus in the follow-up
    assert "#m-" in page.url
    assert page.evaluate("document.activeElement.id") == "prompt"
    second = page.locator("article").nth(1)
    assert second.locator(".alternatives .position").inner_text() == "2 / 2"
    fork_url = page.url.split("#")[0]
    second.locator(".alternatives a[rel=prev]").click()
    page.wait_for_url(lambda url: url.split("#")[0] != fork_url)
    assert page.locator("article").nth(1).locator(".alternatives .position").inner_text() == "1 / 2"
    # the URL names the version: a reload shows the same one
    page.reload()
    assert page.locator("article").nth(1).locator(".alternatives .position").inner_text() == "1 / 2"
    assert page.errors == []


def test_versions_of_a_reply_without_javascript(root_context, page, server, start_in_browser, wait_for):
    _converse(page, server, start_in_browser, wait_for)
    url = page.url.split("#")[0]
    plain = root_context(server, java_script_enabled=False).new_page()
    plain.goto(url)
    second = plain.locator("article").nth(1)
    assert second.locator(".alternatives .position").inner_text() == "2 / 2"
    second.locator(".alternatives a[rel=prev]").click()
    plain.wait_for_load_state()
    assert plain.locator("article").nth(1).locator(".alternatives .position").inner_text() == "1 / 2"
    # regenerate is a form that posts without JavaScript too
    plain.locator("article").nth(1).locator(".regenerate-form button").click()
    plain.wait_for_load_state()
    for _ in range(40):  # the page refreshes itself until the reply is done
        if plain.locator("article.status-done").count() == 2:
            break
        plain.wait_for_timeout(250)
    assert plain.locator("article").nth(1).locator(".alternatives .position").inner_text() == "3 / 3"
    # no copy buttons without JavaScript
    assert plain.locator(".copy-button").count() == 0


def test_copy_buttons_copy_the_reply_and_its_code(root_context, server, start_in_browser, wait_for):
    context = root_context(server, viewport={"width": 1000, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    start_in_browser(page, server, "Show me code", text=REPLY)
    page.locator("article.status-done").wait_for()
    turn = page.locator(".turn-model")
    assert turn.locator(".copy-button").count() == 2  # the reply, its one code block
    turn.locator(".code-copy .copy-button").click()
    wait_for(page, "document.querySelector('.code-copy .copy-button').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
    turn.locator(".turn-footer .copy-button").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("Here is some code:") and "print('hi')" in copied
    assert "Copy code" not in copied and copied.endswith("And a closing line.")
    # keyboard: the button takes focus and Enter presses it
    turn.locator(".turn-footer .copy-button").focus()
    page.keyboard.press("Enter")
    wait_for(page, "document.querySelector('.turn-footer .copy-button').textContent === 'Copied'")


def test_delete_asks_first_then_removes(page, server, start_in_browser):
    start_in_browser(page, server, "Forget me")
    page.locator("article.status-done").wait_for()
    url = page.url.split("#")[0]
    page.click(".delete-link")
    confirm = page.locator("#delete-slot .delete-form")
    confirm.wait_for()
    assert page.evaluate("document.activeElement.textContent") == "Delete"  # focus on the choice
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/-/llm\?deleted=1$"))
    assert "The conversation was deleted." in page.locator(".llm-notice").inner_text()
    assert "Forget me" not in page.locator("#conversation-list").inner_text()
    assert page.goto(url).status == 404


def test_a_streaming_reply_keeps_the_view_at_its_end_unless_scrolled_up(
    root_context, server, start_in_browser, wait_for
):
    page = root_context(server, viewport={"width": 1000, "height": 800}).new_page()
    long_words = "\n".join(f"line {i}" for i in range(60))
    start_in_browser(page, server, "Long", text=long_words)
    page.locator("article.status-done").wait_for()
    # a follow-up that streams 120 lines, one every 40 ms
    page.fill("#prompt", "Longer")
    page.evaluate(
        """() => {
            for (const [name, value] of [["option_text", Array.from({length: 120}, (_, i) => "row " + i).join("\\n")],
                                         ["option_delay", "0.04"]]) {
                const input = document.createElement("input");
                input.type = "hidden"; input.name = name; input.value = value;
                document.getElementById("prompt-form").appendChild(input);
            }
        }"""
    )
    page.press("#prompt", "Control+Enter")
    wait_for(page, "(document.querySelector('.stream-text') || {textContent: ''}).textContent.includes('row 40')")
    in_view = "document.querySelector('%s').getBoundingClientRect().bottom <= window.innerHeight"
    assert page.evaluate(in_view % ".stream-text"), "the view follows the reply"
    # the focused textarea is in view under it
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert page.evaluate(in_view % "#prompt")
    # scrolled up to read: the view stays where the reader put it
    page.mouse.wheel(0, -1500)
    page.wait_for_timeout(200)
    where = page.evaluate("window.scrollY")
    page.wait_for_timeout(600)
    assert abs(page.evaluate("window.scrollY") - where) < 5
    wait_for(page, "document.querySelectorAll('article.status-done').length === 2", timeout=30)


@pytest.mark.parametrize("width,height,name", [(1280, 900, "steering"), (375, 800, "narrow-steering")])
def test_steering_screenshots(root_context, server, start_in_browser, wait_for, screenshot, width, height, name):
    page = root_context(server, viewport={"width": width, "height": height}).new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    _converse(page, server, start_in_browser, wait_for)
    page.click("details.settings summary")
    # nothing is wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot(page, name)
    assert page.errors == []
