"""Parts of a conversation in Chromium: reasoning streams live and folds
away, images go up with JavaScript on (file input, paste) and off, and a
page with every part is accessible and prints whole."""

import base64
import json
import re
import subprocess

import pytest
from helpers import llm_cli

pytestmark = [pytest.mark.browser, pytest.mark.flaky(reruns=1)]

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_reasoning_streams_live_then_folds_away(page, server, start_in_browser, wait_for, screenshot):
    thoughts = " ".join(f"thought{i}" for i in range(30))
    start_in_browser(page, server, "Think, then answer", reasoning=thoughts, chunks=30, delay=0.05)
    live = page.locator("details.reasoning[open] .reasoning-text")
    live.wait_for()
    seen = []
    for _ in range(5):
        seen.append(len(live.text_content()))
        page.wait_for_timeout(120)
    assert len(set(seen)) >= 3, seen  # it grows while the model thinks
    screenshot(page, "reasoning-streaming")
    # the reply starts: the reasoning folds into "Thought for N s"
    wait_for(page, "!!document.querySelector('.stream-text') && document.querySelector('.stream-text').textContent.includes('token')")
    folded = page.locator("details.reasoning:not([open]) summary")
    assert re.fullmatch(r"Thought for (<1|\d+) s", folded.inner_text())
    assert "thought" not in page.locator(".stream-text").text_content()
    page.locator("article.status-done").wait_for()
    assert re.fullmatch(r"Thought for (<1|\d+) s", page.locator("details.reasoning summary").inner_text())
    page.click("details.reasoning summary")
    assert "thought29" in page.locator("details.reasoning .reasoning-text").inner_text()
    assert page.errors == []


def test_an_image_goes_up_with_javascript(page, server, tmp_path, wait_for):
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    page.goto(server.url + "/-/llm")
    page.select_option("#model_id", "echo")
    wait_for(page, "!!document.querySelector('#attachment[accept]')")
    assert page.get_attribute("#attachment", "accept") == "image/gif,image/jpeg,image/png"
    page.set_input_files("#attachment", str(image))
    page.fill("#prompt", "What is in this image?")
    page.press("#prompt", "Control+Enter")
    page.wait_for_url(re.compile(r"/-/llm/[0-9a-z]{26}$"))
    page.locator("article.status-done").wait_for()
    thumbnail = page.locator("article .attachment-image img")
    wait_for(page, "document.querySelector('article .attachment-image img').naturalWidth === 1")
    assert "dot.png" in thumbnail.get_attribute("alt")
    assert '"image/png"' in page.locator("article .reply-body").inner_text()
    # a follow-up, sent by htmx, with a file pasted onto the prompt
    page.focus("#prompt")
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], "pasted.png", {type: "image/png"});
            const data = new DataTransfer();
            data.items.add(file);
            document.getElementById("prompt").dispatchEvent(
                new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
        }""",
        list(PNG),
    )
    assert page.evaluate("document.getElementById('attachment').files.length") == 1
    page.fill("#prompt", "And this pasted one?")
    page.press("#prompt", "Control+Enter")
    page.locator("article.status-done").nth(1).wait_for()
    second = page.locator("article").nth(1)
    assert second.locator(".attachment-image img").count() == 1
    assert "pasted.png" in second.locator(".attachment-image img").get_attribute("alt")
    assert page.evaluate("document.getElementById('attachment').files.length") == 0
    assert page.input_value("#prompt") == ""
    assert page.errors == []


def test_an_image_goes_up_without_javascript(root_context, server, tmp_path):
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    page = root_context(server, java_script_enabled=False).new_page()
    page.goto(server.url + "/-/llm")
    page.select_option("#model_id", "echo")  # no swap without JavaScript
    assert page.locator("#attachment").is_visible()
    page.set_input_files("#attachment", str(image))
    page.fill("#prompt", "No scripts, one image")
    page.click("#chat-form button[type=submit]")
    page.wait_for_url(re.compile(r"/-/llm/[0-9a-z]{26}$"))
    for _ in range(40):
        if page.locator("article.status-done").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    assert page.locator("article .attachment-image img").count() == 1
    reply = json.loads(page.locator("article .reply-body").inner_text())
    assert [a["type"] for a in reply["attachments"]] == ["image/png"]


@pytest.fixture
def every_part(server, tmp_path):
    """A conversation made with the llm CLI holding every part there is."""
    notes = tmp_path / "notes.txt"
    notes.write_text("Notes from a file,\nas a fragment.\n")
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    llm_cli(server.user_dir, "-m", "echo", "-o", "thinking", "1", "-f", str(notes),
            "-a", str(image), "A prompt with every part")
    calls = {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}
    llm_cli(server.user_dir, "-c", "--functions", "def add(a: int, b: int):\n    return a + b\n",
            json.dumps(calls))
    with server.client() as client:
        page = client.get("/-/llm").text
    return re.search(r'href="(/-/llm/[0-9a-z]{26})"', page).group(1)


def test_every_part_is_accessible_and_prints_whole(page, server, every_part, run_axe, screenshot, artifacts):
    page.goto(server.url + every_part)
    assert page.locator("details.reasoning").count() == 1
    assert page.locator("details.fragment").count() == 1
    assert page.locator(".attachment-image img").count() == 1
    assert page.locator("details.tool-call").count() == 1
    assert page.locator(".turn-tools details.tool-result").count() == 1
    screenshot(page, "every-part")
    assert run_axe(page) == []
    pdf = artifacts / "every-part.pdf"
    page.pdf(path=str(pdf), format="A4")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for expected in (
        "First I consider the prompt",  # reasoning, printed open
        "Notes from a file",  # the fragment
        "Called add", '"a": 1',  # the tool call and its arguments
        "Result of add",  # its result
        "A prompt with every part",
    ):
        assert expected in text, expected
