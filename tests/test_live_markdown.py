"""Markdown shown block by block while a reply is written
(datasette_llm_htmx/live_markdown.py): the blocks shown live, put together,
are the finished reply's HTML, each rendered once, at a linear cost."""

import random
import re

import pytest

from datasette_llm_htmx import live_markdown, rendering
from datasette_llm_htmx.live_markdown import LiveMarkdown
from datasette_llm_htmx.rendering import _render
from xss_payloads import PAYLOADS


def drive(text, sizes, watch=None):
    """Feed ``text`` in pieces of the given sizes (cycled), parsing when the
    LiveMarkdown asks, as following.py does; then finish it. ``watch(live)``
    is called after each piece."""
    live = LiveMarkdown()
    at, turn = 0, 0
    while at < len(text):
        size = sizes[turn % len(sizes)]
        live.feed(text[at : at + size])
        at, turn = at + size, turn + 1
        if live.due():
            function, args = live.planner()
            live.apply(function(*args))
        if watch:
            watch(live)
    function, args = live.planner(final=True)
    live.apply(function(*args))
    return live


def words(text):
    """Pieces as the steady test model streams them: a word at a time."""
    return [len(w) for w in re.findall(r"\s*\S+\s*|\s+", text)] or [1]


CHUNKINGS = [[1], [3], [7], [2, 11, 1, 5], [64]]

TRICKY = {
    "loose list": "Items:\n\n- one\n\n- two\n\n  still two\n\n- three\n\nAfter the list.\n",
    "ordered list going on after a blank line": "1. first\n\n2. second\n\n3. third\n\nDone\n",
    "nested lists": "- a\n  - a1\n    - a1x\n  - a2\n- b\n\n  b para\n\n  - b1\n\nText\n",
    "list then a paragraph with no blank line": "- a\n- b\nlazy line\n\nnext\n",
    "fence with blank lines": "Code:\n\n```python\ndef f():\n\n    return 1\n\n\nx = f()\n```\n\nAfter.\n",
    "fence right under a paragraph": "Here:\n```js\nlet a = 1;\n\nlet b = 2;\n```\nand then text\n\nend",
    "longer fences around a short one": "````md\n```\ninside\n```\n````\n\nout\n",
    "tilde fence": "~~~\n```\nnot closing\n~~~\n\nx\n",
    "fence never closed": "Text\n\n```\nstill code\n\nmore code",
    "fence in a list": "1. Install:\n\n   ```bash\n   pip install x\n\n   echo done\n   ```\n\n2. Run it\n\nok\n",
    "indented code with blank lines": "Para\n\n    code one\n\n    code two\n\nnot code\n",
    "table": "| a | b |\n|---|:-:|\n| 1 | 2 |\n| 3 | 4 |\n\nAfter table\n",
    "table under a paragraph": "Intro\n| a | b |\n|---|---|\n| 1 | 2 |\n\nx\n",
    "table growing row by row, then text": "| h |\n|---|\n| 1 |\n| 2 |\ntext after\n\nend\n",
    "setext headings": "Title\n=====\n\nSub\n---\n\nPara\nmore\n===\n\n---\n\nend\n",
    "atx headings without blank lines": "# One\ntext\n## Two | pipe\n|---|---|\n### Three\n\nx\n",
    "thematic breaks": "a\n\n***\n\n- - -\n\n___\nb\n",
    "blockquotes": "> quote\n> more\n\n> another\nlazy\n\n>   > nested\n\nout\n",
    "html-ish text": "<div>\n\n*not html*\n\n</div>\n<script>alert(1)</script>\n\n<!-- c -->\n",
    "emphasis across a blank line": "*open\n\nclose*\n\n**bold** word\n",
    "hard breaks": "line  \nbreak\\\nagain\n\nend\n",
    "crlf and cr": "a\r\n\r\n- b\r\n- c\r\n\r\nd\re\r\rf\r\n",
    "nul and separators": "a\x00b\n\nc\u2028d\u2029\n\ne\x85f\n",
    "links and images": "[a](http://x.example/ 'T') ![i](http://x.example/i.png)\n\n<https://y.example>\n\nhttp://z.example\n",
    "references defined first": "[foo]: http://x.example/\n[bar]: <http://y.example/> 'T'\n\n"
    "See [foo] and [bar].\n\n[foo]: http://not-this.example/\n\n[Foo] again\n",
    "blank lines only": "\n\n   \n\t\n",
    "no newline at all": "just **one** line",
    "empty list items": "-\n\n-\n  x\n\n1.\n\ntext\n",
    "deep nesting": "> " * 30 + "deep\n\n" + "- " * 30 + "deeper\n\nend\n",
}


@pytest.mark.parametrize("name", TRICKY)
def test_live_blocks_are_the_finished_render(name):
    text = TRICKY[name]
    expected = _render(text)
    for sizes in CHUNKINGS + [words(text)]:
        live = drive(text, sizes)
        assert live.html() == expected, (name, sizes)
        assert live.complete


@pytest.mark.parametrize("index", range(len(PAYLOADS)))
def test_live_blocks_of_the_xss_corpus_are_the_finished_render(index):
    text = PAYLOADS[index]
    expected = _render(text)
    for sizes in ([1], [3], words(text)):
        shown = []
        live = drive(text, sizes, watch=lambda live: shown.append(live.html()))
        assert live.html() == expected
        for html in shown:  # and nothing shown on the way was unsanitized
            assert "<script" not in html.lower() and "javascript:" not in html.lower()


FRAGMENTS = [
    "Plain paragraph with **bold** and *em*.", "A second\nline paragraph", "- a\n- b", "- a\n\n- b",
    "1. one\n2. two", "1. one\n\n2. two", "2. two", "- nested\n  - inner\n    - deeper",
    "  continued item text", "    indented code", "```py\nx = 1\n\ny = 2\n```", "```\nunclosed",
    "~~~\ntilde\n~~~", "````\n```\ninner\n```\n````", "| a | b |\n|---|:-:|\n| 1 | 2 |", "| x |",
    "|---|---|", "Title\n=====", "Title\n-----", "---", "***", "- - -", "# Heading",
    "## Heading | with pipe", "> quote\n> more", "> quote\nlazy", ">", "> > > deep",
    "<div>\n\n*x*\n</div>", "<script>alert(1)</script>", "text  \nhard break", "back\\",
    "*open emphasis", "emph*", "\u2028x\u2029", "a\rb\r\nc", "\x00nul", "   ", "\t", "1) paren",
    "+ plus", "* star item", "    - not list", "```js", "```", "~~~", "<https://example.com>",
    "http://bare.example.com", "![img](http://x/y.png)", "`code` span", "Setext?\n===\n===",
    "a\n- b", "a\n1. b", "a\n2. b", "```\n- x\n```", "> ```\n> code\n> ```", "- ```\n  code\n  ```",
    "[ref]: http://example.com/ \"T\"", "[ref]", "[link][ref]",
]
SEPARATORS = ["\n", "\n\n", "\n\n\n", "", " \n", "\n \n", "\r\n", "\r\n\r\n", "\n\n  "]


def test_random_replies():
    """Random replies made of the pieces markdown gets wrong most easily,
    fed in random pieces: what was shown live is the finished render
    whenever no link definition came after a link that uses it."""
    rng = random.Random(16)
    checked = split = 0
    for _ in range(3000):
        text = "".join(
            rng.choice(FRAGMENTS) + rng.choice(SEPARATORS) for _ in range(rng.randint(1, 12))
        )
        if rng.random() < 0.3:
            text = text.rstrip()
        live = drive(text, [rng.randint(1, 12) for _ in range(8)])
        split += len(live.blocks) > 1
        if live.exact:
            checked += 1
            assert live.html() == _render(text), repr(text)
    assert checked > 2000 and split > 1000  # the claim is tested, and not idly


def test_finished_blocks_show_while_the_rest_is_written():
    text = "Intro with **bold** word.\n\n- one\n- two\n\nMore text still"
    live = LiveMarkdown()
    for piece in re.findall(r"\s*\S+\s*", text):
        live.feed(piece)
        if live.due():
            function, args = live.planner()
            live.apply(function(*args))
    shown = live.html()
    assert "<strong>bold</strong>" in shown and "<li>one</li>" in shown
    assert live.text_from(live.shown_from) == "More text still"
    assert not live.code and not live.complete


def test_an_open_fence_shows_as_code():
    live = LiveMarkdown()
    for piece in ["Some code:\n", "\n```py", "thon\nx = 1\n", "\ny = 2\n"]:
        live.feed(piece)
        if live.due():
            function, args = live.planner()
            live.apply(function(*args))
    assert live.html() == "<p>Some code:</p>"
    assert live.code and live.text_from(live.shown_from) == "x = 1\n\ny = 2\n"
    live.feed("```\nafter")
    function, args = live.planner()
    live.apply(function(*args))
    assert not live.code
    assert live.html().endswith('<pre><code class="language-python">x = 1\n\ny = 2\n</code></pre>')
    assert live.text_from(live.shown_from) == "after"


def test_a_later_definition_resolves_links_when_the_reply_ends():
    """The documented exception: a link whose definition comes later is
    shown as text until the end; the LiveMarkdown says it is not exact, so
    the finished message is rendered whole (views/stream.py)."""
    text = "See [the docs].\n\nMore.\n\n[the docs]: https://example.com/\n"
    live = drive(text, [4])
    assert not live.exact
    assert live.html() != _render(text)
    assert '<a href="https://example.com/"' in _render(text)


def test_each_character_is_rendered_once(monkeypatch):
    rendered = []
    real = rendering.render_blocks
    monkeypatch.setattr(rendering, "render_blocks", lambda text, env: rendered.append(text) or real(text, env))
    text = "\n\n".join(value for key, value in TRICKY.items() if key != "fence never closed")
    drive(text, [5])
    assert "".join(rendered) == text  # every part rendered once, in order
    assert len(rendered) > 20


@pytest.mark.parametrize(
    "name, text",
    [
        ("a long loose list", "".join(f"- item {i}\n\n" for i in range(4000)) + "after\n"),
        ("a long fence with blank lines", "```\n" + "x = 1\n\n" * 8000 + "```\nafter\n"),
        ("a long paragraph of short lines", "word\n" * 20000 + "\nafter\n"),
        ("many short blocks", "para\n\n" * 10000),
    ],
)
def test_parsing_costs_a_bounded_multiple_of_the_length(name, text):
    parsed = []
    real = live_markdown.plan

    def counting(tail, env, final):
        parsed.append(len(tail))
        return real(tail, env, final)

    live = LiveMarkdown()
    for at in range(0, len(text), 7):
        live.feed(text[at : at + 7])
        if live.due():
            function, args = live.planner()
            live.apply(counting(*args))
    function, args = live.planner(final=True)
    live.apply(function(*args))
    budget = live_markdown.PARSE_BUDGET * len(text) + live_markdown.PARSE_ALLOWANCE
    assert sum(parsed) <= budget + len(text), name
    assert live.html() == _render(text)


def test_a_cr_lf_split_between_pieces_is_one_line_end():
    text = "para\r\n\r\n- a\r\n- b\r\n\r\nend\r\n"
    for cut in range(1, len(text)):
        live = drive(text, [cut])
        assert live.html() == _render(text)
