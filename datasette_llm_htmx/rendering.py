"""Replies become HTML here, and only here: markdown-it-py with raw HTML off,
then bleach with an allowlist. Prompts are never markdown: templates escape
them as text."""

import asyncio
import datetime
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import bleach
from bleach.css_sanitizer import CSSSanitizer
from bleach.linkifier import LinkifyFilter
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
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

class _Renderer(RendererHTML):
    """markdown-it's HTML without the line breaks it writes after block
    tags: whitespace between blocks shows nothing, and a reply streamed in
    blocks pays each one in SSE framing (a "data: " line). Line breaks in
    code and in paragraphs stay."""

    def renderToken(self, tokens, idx, options, env) -> str:
        return super().renderToken(tokens, idx, options, env).strip("\n")

    def fence(self, tokens, idx, options, env) -> str:
        return super().fence(tokens, idx, options, env).rstrip("\n")

    def code_block(self, tokens, idx, options, env) -> str:
        return super().code_block(tokens, idx, options, env).rstrip("\n")


def _parser(**kwargs) -> MarkdownIt:
    """CommonMark with tables and strikethrough, raw HTML off: the one
    configuration of every parser here."""
    return MarkdownIt("commonmark", {"html": False, "linkify": False}, **kwargs).enable(
        ["table", "strikethrough"]
    )


_markdown = _parser(renderer_cls=_Renderer)



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
    """Sanitized HTML for a reply's markdown (from the cache when a page
    rendered it ahead, off the event loop). The cache holds the Markup
    itself: wrapping a str in Markup copies it, once per page or stream."""
    key = _key(text)
    html = _cache.get(key)
    if html is None:
        html = _cache.put(key, Markup(_render(text)))
    return html


def _render(text: str, env: dict | None = None) -> str:
    """Markdown to sanitized HTML, one top-level block at a time.

    bleach (through html5lib's tree walker) looks up each element's place
    among its siblings by scanning them: cleaning a whole reply at once
    costs the square of its number of paragraphs (a 1.2 MB reply took 16 s).
    Cleaned block by block, and long tables and lists a group of rows or
    items at a time, the cost grows with the length, as it should.

    ``env`` carries link reference definitions from one call to the next
    (markdown-it adds those it finds): a reply rendered in pieces as it is
    written (live_markdown.py) resolves links as the whole would, to the
    definitions seen so far."""
    env = {} if env is None else env
    tokens = _markdown.parse(text, env)
    return "".join(_cleaned_blocks(tokens, env))


BLOCKS_AT_ONCE = 16  # top-level blocks cleaned in one call of bleach


def _cleaned_blocks(tokens, env):
    """The sanitized HTML of the top-level blocks, a few at a time: each
    call of bleach costs about 0.1 ms before any work (a parser, a tree
    walker, a serializer), most of the time of a short paragraph; cleaned
    in groups of BLOCKS_AT_ONCE, a reply of short paragraphs renders in
    two thirds of the time (90 KB: 44 -> 28 ms), and no call has enough
    siblings for bleach's scan of them to cost much. A long list or table is cleaned alone, grouped inside itself
    (_block_html)."""
    first = count = 0
    for start, end in _blocks(tokens):
        if tokens[start].type in GROUPED_INSIDE and end - start >= GROUP * 4:
            if count:
                yield _cleaner.clean(_to_html(tokens[first:start], env))
            yield _block_html(tokens[start:end], env)
            first, count = end, 0
            continue
        if not count:
            first = start
        count += 1
        if count == BLOCKS_AT_ONCE:
            yield _cleaner.clean(_to_html(tokens[first:end], env))
            count = 0
    if count:
        yield _cleaner.clean(_to_html(tokens[first:], env))


# blocks that, long enough, _block_html cleans in groups of their own
GROUPED_INSIDE = {"table_open", "bullet_list_open", "ordered_list_open"}


def render_blocks(text: str, env: dict) -> Markup:
    """Sanitized HTML for finished top-level blocks of a reply still being
    written; ``env`` as for _render. Call it off the event loop
    (in_render_thread)."""
    return Markup(_render(text, env))


# The same parser stopped after its block phase: where top-level blocks
# begin and end, without the inline work, for live_markdown.py to decide
# which blocks are finished.
_block_parser = _parser()
_block_parser.core.ruler.enableOnly(["normalize", "block"])


def block_tokens(text: str) -> list:
    """markdown-it's block tokens for ``text`` (inline content unparsed)."""
    return _block_parser.parse(text, {})


GROUP = 64  # table rows or list items cleaned together


def _blocks(tokens, level=0):
    """(start, end) of each block at ``level``: an opening token to its
    matching close, or a token that is a block by itself."""
    i = 0
    while i < len(tokens):
        if tokens[i].nesting == 1:
            depth, j = 0, i
            while True:
                depth += tokens[j].nesting
                if depth == 0:
                    break
                j += 1
            yield i, j + 1
            i = j + 1
        else:
            yield i, i + 1
            i += 1


def _to_html(tokens, env) -> str:
    return _markdown.renderer.render(tokens, _markdown.options, env)


def _block_html(tokens, env) -> str:
    kind = tokens[0].type
    if kind == "table_open":
        grouped = _table_html(tokens, env)
    elif kind in ("bullet_list_open", "ordered_list_open"):
        grouped = _list_html(tokens, env)
    else:
        grouped = None
    return grouped if grouped is not None else _cleaner.clean(_to_html(tokens, env))


def _clean_inside(opening: str, html: str, closing: str) -> str | None:
    """Clean ``html`` as the content of ``opening``...``closing``; None if
    bleach's answer is not shaped that way (then the block is cleaned whole)."""
    cleaned = _cleaner.clean(opening + html + closing)
    if cleaned.startswith(opening) and cleaned.endswith(closing):
        return cleaned[len(opening) : len(cleaned) - len(closing)]
    return None


def _groups(tokens, env):
    """The HTML of the blocks one level down, a GROUP at a time."""
    parts = [(start, end) for start, end in _blocks(tokens)]
    for at in range(0, len(parts), GROUP):
        chunk = parts[at : at + GROUP]
        yield _to_html(tokens[chunk[0][0] : chunk[-1][1]], env)


def _table_html(tokens, env) -> str | None:
    body_at = next((i for i, t in enumerate(tokens) if t.type == "tbody_open"), None)
    if body_at is None or len(tokens) - body_at < GROUP * 4:
        return None
    head = _clean_inside("", _to_html(tokens[: body_at], env), "</table>")
    pieces = [head, "<tbody>"]
    for html in _groups(tokens[body_at + 1 : -2], env):
        cleaned = _clean_inside("<table><tbody>", html, "</tbody></table>")
        if cleaned is None or head is None:
            return None
        pieces.append(cleaned)
    pieces.append("</tbody></table>")
    return "".join(pieces)


def _list_html(tokens, env) -> str | None:
    if len(tokens) < GROUP * 6:
        return None
    tag = "ol" if tokens[0].type == "ordered_list_open" else "ul"
    opening = _clean_inside("", _to_html(tokens[:1], env), f"</{tag}>")
    pieces = [opening]
    for html in _groups(tokens[1:-1], env):
        cleaned = _clean_inside(f"<{tag}>", html, f"</{tag}>")
        if cleaned is None or opening is None:
            return None
        pieces.append(cleaned)
    pieces.append(f"</{tag}>")
    return "".join(pieces)


def _key(text: str) -> bytes:
    key = text_key()
    key.update(encoded(text))
    return key.digest()


def text_key():
    """The hash whose digest keys a reply's HTML in the cache, fed with
    ``encoded`` pieces of its text: a text that arrives in pieces is keyed
    as it is fed, without being joined again."""
    return hashlib.blake2b(digest_size=16)


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def remember(key: bytes, html: Markup) -> None:
    """Keep the HTML of a reply rendered in pieces (live_markdown.py), under
    the key of its whole text: the finished message and later pages use it
    without rendering the reply again."""
    _cache.put(key, html)


class ByteBoundCache:
    """Rendered replies, least recently used first out, bounded by the bytes
    of HTML held (keys are digests, so long texts are not kept twice).
    Finished replies never change: a page reloaded does no markdown work."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.size = 0
        self._items: OrderedDict[bytes, Markup] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Markup | None:
        with self._lock:
            html = self._items.get(key)
            if html is not None:
                self._items.move_to_end(key)
            return html

    def put(self, key: bytes, html: Markup) -> Markup:
        with self._lock:
            if key not in self._items:
                self._items[key] = html
                self.size += len(html)
                while self.size > self.limit and len(self._items) > 1:
                    _, dropped = self._items.popitem(last=False)
                    self.size -= len(dropped)
        return html


_cache = ByteBoundCache(64 * 1024 * 1024)


def set_cache_limit(megabytes: float) -> None:
    _cache.limit = int(megabytes * 1024 * 1024)


# Markdown is rendered in a thread of its own, never on the event loop (a
# pathological reply of a few KB can take a second) and never in the
# default pool, which a hung model call could fill.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-htmx-render")
_in_flight: dict[bytes, asyncio.Future] = {}


_store = None  # rendered replies on disk (store/rendered.py), once set
# keys this process knows are there: an optimisation, so forgotten at a bound
_on_disk: set[bytes] = set()
MOST_KNOWN_ON_DISK = 100_000  # about 10 MB of set


def set_store(store) -> None:
    global _store
    _store = store
    _on_disk.clear()


async def forget(conversation_ids) -> None:
    """A deleted conversation's replies leave the disk cache."""
    if _store is not None:
        _on_disk.clear()
        await in_render_thread(_store.forget, list(conversation_ids))


async def render_ahead(texts, conversation_id: str | None = None) -> None:
    """Render these replies into the cache, off the event loop. Each text
    is rendered once however many requests ask at the same moment (ten
    streams of one finished reply share one render).

    All the missing texts go to the thread as one job: a job per text lets
    that thread hand the GIL back and forth at each job's end, too often
    for the event loop's request for it to ever fire (it then waited 0.6 s
    behind a 200-reply page)."""
    waits = set()
    missing = {}
    unsaved = {}  # rendered in this process (a reply just streamed), not yet on disk
    keep_on_disk = _store is not None and conversation_id is not None
    for text in texts:
        key = _key(text)
        if key in missing:
            continue
        html = _cache.get(key)
        if html is not None:
            if keep_on_disk and key not in _on_disk:
                unsaved[key] = str(html)
            continue
        if key in _in_flight:
            waits.add(_in_flight[key])
        else:
            missing[key] = text
    if missing:
        job = asyncio.get_running_loop().run_in_executor(
            _executor, _render_into_cache, missing, conversation_id
        )
        for key in missing:
            _in_flight[key] = job
        job.add_done_callback(lambda _: [_in_flight.pop(key, None) for key in missing])
        waits.add(job)
    if unsaved:  # written behind the page, which does not wait for it
        _known_on_disk(unsaved)
        asyncio.get_running_loop().run_in_executor(_executor, _store.put_many, unsaved, conversation_id)
    if waits:
        await asyncio.gather(*(asyncio.shield(w) for w in waits))


async def in_render_thread(function, *args):
    """Run ``function(*args)`` in the render thread: markdown work of
    replies being written (live_markdown.py) queues behind pages' too,
    never on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_executor, function, *args)


def _render_into_cache(texts: dict[bytes, str], conversation_id: str | None = None) -> None:
    """Render into the cache; a conversation's replies are read from the
    disk cache first (a restart costs no markdown work) and written there
    once rendered."""
    stored = _store.get_many(texts) if _store is not None and conversation_id else {}
    rendered = {}
    for key, text in texts.items():
        html = stored.get(key)
        if html is None:
            html = rendered[key] = _render(text)
        _cache.put(key, Markup(html))
    if _store is not None and conversation_id:
        if rendered:
            _store.put_many(rendered, conversation_id)
        _known_on_disk(texts)


def _known_on_disk(keys) -> None:
    if len(_on_disk) > MOST_KNOWN_ON_DISK:
        _on_disk.clear()
    _on_disk.update(keys)


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
