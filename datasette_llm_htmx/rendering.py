"""Replies become HTML here, and only here: markdown-it-py with raw HTML off,
then bleach with an allowlist. Prompts are never markdown: templates escape
them as text."""

import asyncio
import datetime
from functools import lru_cache, partial

import bleach
from bleach.css_sanitizer import CSSSanitizer
from bleach.linkifier import LinkifyFilter
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markupsafe import Markup

ALLOWED_TAGS = frozenset(
    """a abbr b blockquote br code del div em h1 h2 h3 h4 h5 h6 hr i kbd li
    ol p pre s span strong sub sup table tbody td tfoot th thead tr ul""".split()
)
ALLOWED_ATTRIBUTES = {
    "a": ["href", "title"],
    "code": ["class"],  # language-xxx from fenced code blocks
    "ol": ["start"],
    "th": ["style"],
    "td": ["style"],
}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
# markdown-it writes table alignment as style="text-align:..."
ALLOWED_CSS = ["text-align"]

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
    ["table", "strikethrough"]
)



def _image_as_link(renderer, tokens, idx, options, env):
    # An image in a reply would be fetched by the browser the moment it
    # shows: a way for a prompt injection to send text to any server. Show a
    # link the reader can choose to follow instead.
    token = tokens[idx]
    alt = renderer.renderInline(token.children or [], options, env)
    href = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a href="{href}">{alt or href}</a>'


_markdown.add_render_rule("image", _image_as_link)


def _set_rel(attrs, new=False):
    attrs[(None, "rel")] = "nofollow noopener noreferrer"
    return attrs


# One pass: clean against the allowlist, then give every link (those markdown
# made and bare URLs in text) its rel.
_cleaner = bleach.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    protocols=ALLOWED_PROTOCOLS,
    css_sanitizer=CSSSanitizer(allowed_css_properties=ALLOWED_CSS),
    strip=True,
    strip_comments=True,
    filters=[
        partial(
            LinkifyFilter,
            callbacks=[_set_rel],
            skip_tags=["pre", "code"],
            parse_email=False,
        )
    ],
)


def markdown_to_html(text: str) -> Markup:
    """Sanitized HTML for a reply's markdown."""
    return Markup(_render(text))


@lru_cache(maxsize=2048)
def _render(text: str) -> str:
    # Finished replies never change, so the same text renders once per
    # process: a conversation page reloaded does no markdown work.
    return _cleaner.clean(_markdown.render(text))


# Below this much markdown, rendering in place costs less than a thread hop.
RENDER_IN_THREAD_CHARS = 20_000


async def render_ahead(texts: list[str]) -> None:
    """Render these replies into the cache in a worker thread. bleach is pure
    Python (about 300 KB/s): the first view of a long conversation would
    otherwise hold the event loop, and every stream it serves, for a second."""
    if sum(map(len, texts)) >= RENDER_IN_THREAD_CHARS:
        await asyncio.to_thread(lambda: [_render(text) for text in texts])


def format_time(timestamp: str | None) -> str:
    """'2026-11-24 05:58 UTC' from any of the timestamp shapes llm has logged."""
    if not timestamp:
        return ""
    try:
        when = datetime.datetime.fromisoformat(str(timestamp).replace(" ", "T", 1))
    except ValueError:
        return str(timestamp)
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")
