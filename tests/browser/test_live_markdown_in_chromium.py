"""Markdown shown block by block while a reply streams, in Chromium: the
finished blocks formatted before "done", an open fence as code, and "done"
changing nothing of the reply on screen (the very same elements stay)."""

import pytest

pytestmark = [pytest.mark.browser]

CODE = "".join(f"line_{i} = {i}\n" for i in range(12))
REPLY = (
    "Intro with a **bold** word.\n\n- one\n- two\n- three\n\n"
    "```python\n" + CODE + "```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n" + " ".join(f"word{i}" for i in range(30)) + "\n\n"
)
BUSY = "article[aria-busy] .reply-body.markdown"
# The reply's text as it reads, without the copy buttons JavaScript adds
READ = """(selector) => {
    const body = document.querySelector(selector);
    const holders = body.querySelectorAll('.code-copy');
    holders.forEach(h => h.hidden = true);
    const text = body.innerText;
    holders.forEach(h => h.hidden = false);
    return text;
}"""


def test_blocks_show_formatted_while_streaming_and_done_changes_nothing(
    page, server, start_in_browser, wait_for, screenshot
):
    start_in_browser(page, server, "Show me markdown", text=REPLY, delay=0.04, hold=2.5)
    # a formatted list and a bold word, before the reply is done
    wait_for(page, f"document.querySelectorAll('{BUSY} li').length === 3")
    assert page.locator(f"{BUSY} strong").inner_text() == "bold"
    assert page.locator("article.status-done").count() == 0
    # the fence being written shows as code, and grows
    wait_for(page, f"!!document.querySelector('{BUSY} pre.stream-tail code.stream-text')")
    wait_for(page, f"document.querySelector('{BUSY} pre.stream-tail code').textContent.includes('line_3')")
    assert page.locator(f"{BUSY} pre.stream-tail").evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    screenshot(page, "live-markdown")
    # everything written, the model holding on: the last paragraph is a block too
    wait_for(page, f"(document.querySelector('{BUSY} > p:last-of-type') || {{}}).textContent === 'word0 ' + 'word1 word2 word3 word4 word5 word6 word7 word8 word9 word10 word11 word12 word13 word14 word15 word16 word17 word18 word19 word20 word21 word22 word23 word24 word25 word26 word27 word28 word29'")
    assert page.locator("article.status-done").count() == 0
    before = page.evaluate(READ, BUSY)
    count = page.evaluate(
        """(selector) => {
            const body = document.querySelector(selector);
            body.dataset.seen = "live";
            const blocks = [...body.children].filter(c => !c.classList.contains('stream-tail'));
            blocks.forEach((block, i) => { block.liveIndex = i; });
            return blocks.length;
        }""",
        BUSY,
    )
    assert count == 5  # p, ul, pre, table, p
    page.locator("article.status-done").wait_for(timeout=15000)
    done = "article.status-done .reply-body.markdown"
    # the very same elements: htmx kept the body, nothing was drawn again
    same = page.evaluate(
        """(selector) => {
            const body = document.querySelector(selector);
            const blocks = [...body.children].filter(c => !c.classList.contains('code-copy'));
            return body.dataset.seen === "live" && blocks.every((b, i) => b.liveIndex === i)
                && blocks.length;
        }""",
        done,
    )
    assert same == count
    assert page.evaluate(READ, done) == before
    assert page.locator(f"{done} .stream-tail").count() == 0
    assert page.locator("[sse-connect]").count() == 0
    live_html = page.locator(done).inner_html()
    assert page.errors == []
    # and the page drawn by the server is the same HTML
    page.reload()
    assert page.locator(done).inner_html() == live_html
    assert page.evaluate(READ, done) == before


def test_a_page_reloaded_mid_reply_shows_the_blocks_at_once(
    page, server, start_in_browser, wait_for
):
    start_in_browser(page, server, "Show me markdown", text=REPLY, delay=0.04)
    wait_for(page, f"document.querySelectorAll('{BUSY} li').length === 3")
    page.reload(wait_until="domcontentloaded")
    # drawn by the page itself, before its stream has said anything
    assert page.locator(f"{BUSY} li").count() == 3
    page.locator("article.status-done").wait_for(timeout=20000)
    body = page.locator("article.status-done .reply-body.markdown")
    assert body.locator("li").count() == 3
    assert body.locator("table td").count() == 2
    assert "line_11 = 11" in body.locator("pre code").inner_text()
    assert page.errors == []
