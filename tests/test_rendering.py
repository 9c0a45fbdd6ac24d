"""Markdown to safe HTML: block by block, at a cost that grows with the
length; rendered once however many ask; a cache bounded in bytes."""

import asyncio
import time

import pytest
from datasette_llm_htmx import rendering

DOCUMENTS = {
    "paragraphs": "A paragraph with **bold**, `code` and http://example.com/x.\n\n" * 300,
    "table": "| a | b |\n|:--|--:|\n" + "| cell <b>x</b> | **bold** [l](javascript:x) |\n" * 400,
    "bullets": "".join(f"- item {i} **b** <i>x</i>\n" for i in range(500)),
    "numbers": "".join(f"{i + 5}. item {i}\n" for i in range(500)),
    "loose list": "".join(f"- item {i}\n\n  more\n\n" for i in range(100)),
    "nested": "".join(f"- item {i}\n  - sub {i}\n" for i in range(300)),
    "mixed": "# H\n\ntext <script>x</script>\n\n```py\ncode\n```\n\n> quote\n\n---\n\n" * 50,
    "references": "[a][1] and [b][2]\n\n[1]: https://a.example\n[2]: javascript:alert(1)\n",
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_block_by_block_is_what_the_whole_would_be(name):
    text = DOCUMENTS[name]
    whole = rendering._cleaner.clean(rendering._markdown.render(text))
    assert rendering._render(text).replace("\n", "") == whole.replace("\n", "")


def test_short_blocks_are_cleaned_a_few_at_a_time(monkeypatch):
    # bleach's setup per call is most of a short paragraph's cost
    calls = []
    cleaner = rendering._cleaner

    class Counting:
        def clean(self, html):
            calls.append(html)
            return cleaner.clean(html)

    monkeypatch.setattr(rendering, "_cleaner", Counting())
    text = "A short paragraph.\n\n" * (rendering.BLOCKS_AT_ONCE * 3) + "- an item\n"
    html = rendering._render(text)
    assert len(calls) == 4  # three groups of paragraphs, then the list
    assert html.count("<p>") == rendering.BLOCKS_AT_ONCE * 3 and "<li>an item</li>" in html


def test_the_cost_grows_with_the_length_not_its_square():
    def seconds(paragraphs):
        text = "Some words with **bold** and `code` in them.\n\n" * paragraphs
        began = time.perf_counter()
        rendering._render(text)
        return time.perf_counter() - began

    small, large = seconds(1000), seconds(8000)
    # eight times the text, under twelve times the time (whole-document
    # cleaning took about forty times as long)
    assert large < small * 12, (small, large)


@pytest.mark.asyncio
async def test_many_requests_for_one_reply_render_it_once(monkeypatch):
    calls = []
    real = rendering._render

    def counting(text):
        calls.append(text)
        time.sleep(0.05)
        return real(text)

    monkeypatch.setattr(rendering, "_render", counting)
    text = "A reply rendered once, **however many ask**. " + str(time.time())
    await asyncio.gather(*(rendering.render_ahead([text]) for _ in range(10)))
    assert calls == [text]
    assert "<strong>however many ask</strong>" in rendering.markdown_to_html(text)


def test_the_cache_is_bounded_in_bytes():
    cache = rendering.ByteBoundCache(limit_bytes=10_000)
    for i in range(100):
        cache.put(str(i).encode(), "x" * 1_000)
    assert cache.size <= 10_000
    assert cache.get(b"99") is not None and cache.get(b"0") is None
