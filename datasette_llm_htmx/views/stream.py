"""GET /-/llm/{cid}/stream/{mid}: the text/event-stream of one reply.

Every connection first gets a ``snapshot`` of the reply so far, then the
events that add to it, then ``done`` (or ``error``): the finished message,
drawn by the same partial as the page. Text is shown as markdown block by
block while it is written (live_markdown.py): ``token`` events append text
to the tail, the block still being written; a ``block`` event replaces that
tail with the blocks just finished (their sanitized HTML, rendered once)
and the tail after them. So ``done`` need not send the reply's text again:
it names the texts the browser already shows, and htmx keeps them
(hx-preserve). Each event's ``id`` is the number of characters of reply
text it covers. Following the reply is following.py's job; sending the
events is sse.py's; drawing them is here.
"""

from itertools import chain

from datasette import Response

from .. import memory, partials, permissions, shutdown, sse
from ..following import Blocks, Delta, Final, Snapshot, follow
from ..store.records import ReplyPart
from ..generations import generations
from ..rendering import markdown_to_html, render_ahead
from ..store.database import llm_database
from .common import find_message, load_readable


async def stream(request, datasette, send, receive):
    if request.headers.get("sec-fetch-site") == "cross-site":
        return Response.text("Cross-site streams are refused.", status=403)
    mid = request.url_vars["mid"]
    registry = generations(datasette)
    shutdown.watch_signals(registry)
    local = registry.replies.get(mid)
    if local is not None and local.message.conversation_id == request.url_vars["cid"]:
        # generated here: only who may read the conversation is needed
        conversation = await load_readable(datasette, request, with_messages=False)
    else:
        conversation = await load_readable(datasette, request)
        find_message(conversation, mid)
    can_write = await permissions.can_write(datasette, request.actor, conversation)
    steps = follow(registry, llm_database(datasette), conversation.id, mid, registry.shutting_down)
    sent = await sse.serve(
        send,
        receive,
        _events(datasette, request, mid, steps, can_write),
        gzip=sse.accepts_gzip(request.headers),
    )
    if sent > memory.WORTH_IT:
        memory.trim_soon()
    return None


SLICE = 64 * 1024  # characters of a long payload sent at a time


def _slices(text: str, transform=lambda piece: piece):
    """A long text a slice at a time, made as the client takes them."""
    for start in range(0, len(text), SLICE):
        yield transform(text[start : start + SLICE])


def _gathered(chunks, transform=lambda piece: piece):
    """Chunks joined into slices of about SLICE characters, as the client
    takes them (a chunk that long is sliced as it is, not copied)."""
    batch, size = [], 0
    for chunk in chunks:
        if len(chunk) >= SLICE:
            if batch:
                yield from _slices("".join(batch), transform)
                batch, size = [], 0
            yield from _slices(chunk, transform)
            continue
        batch.append(chunk)
        size += len(chunk)
        if size >= SLICE:
            yield from _slices("".join(batch), transform)
            batch, size = [], 0
    if batch:
        yield from _slices("".join(batch), transform)


# The event that adds to a part being written, by the part's kind
DELTA_EVENTS = {"text": "token", "reasoning": "reasoning"}


async def _events(datasette, request, mid, steps, can_write):
    async for step in steps:
        if isinstance(step, Snapshot):
            yield await _snapshot(datasette, mid, step)
        elif isinstance(step, Delta):
            yield sse.event(DELTA_EVENTS[step.kind], sse.escape_text(step.text), id=step.covered)
        elif isinstance(step, Blocks):
            yield _blocks(datasette, step)
        elif isinstance(step, Final):
            yield await _final(datasette, request, step, can_write)


async def _snapshot(datasette, mid, step: Snapshot):
    """The reply so far: its finished parts drawn as they will stay (their
    markdown rendered off the event loop), and the part being written: its
    finished blocks and its tail, or its reasoning, sent in slices."""
    await render_ahead([part.text for part in step.finished if part.kind == "text"])
    if step.kind is None:  # finished: every part as it will stay
        texts = [part.text for part in step.finished if part.kind == "text"]
        if len(texts) != 1:
            html = partials.finished_parts(datasette, mid, step.finished)
            return sse.event("snapshot", html, id=step.covered)
        # the long case: the cached HTML in slices, not copied per stream
        drawn = partials.finished_parts(datasette, mid, step.finished, body=partials.MARKER)
        before, after = partials.around(drawn)
        body = _slices(markdown_to_html(texts[0]))
        return sse.event_pieces("snapshot", chain([before], body, [after]), id=step.covered)
    parts = [*step.finished, ReplyPart(step.kind)]
    if step.kind == "text":
        writing = not step.complete
        pieces = partials.streaming_parts_pieces(datasette, mid, parts, writing, step.code)
        body = [_gathered(step.blocks), _gathered(step.chunks, sse.escape_text)]
        return sse.event_pieces(
            "snapshot", _interleave(pieces, body[: len(pieces) - 1]), id=step.covered
        )
    before, after = partials.streaming_parts_around(datasette, mid, parts)
    return sse.event_pieces(
        "snapshot",
        chain([before], _gathered(step.chunks, sse.escape_text), [after]),
        id=step.covered,
    )


def _blocks(datasette, step: Blocks):
    """Blocks just finished, and the tail after them: swapped in for the
    tail. Their HTML is sanitized (rendering.py); the tail is escaped."""
    writing = step.tail is not None
    pieces = partials.streaming_blocks_pieces(datasette, writing, step.code)
    body = [_gathered(step.blocks), _gathered(step.tail or (), sse.escape_text)]
    return sse.event_pieces("block", _interleave(pieces, body[: len(pieces) - 1]), id=step.covered)


def _interleave(around, contents):
    """around[0], contents[0], around[1], ... around[-1], lazily."""
    for piece, content in zip(around, contents):
        yield piece
        yield from content
    yield around[-1]


async def _final(datasette, request, step: Final, can_write: bool):
    """The finished message, drawn around its reply's HTML, which is
    rendered once (off the event loop) and sent in slices of the cached
    copy: ten streams of a long reply do not make ten copies of it. Texts
    the browser already shows as they will stay are not sent again."""
    message = step.message
    kept = await _kept(message, step)
    texts = [
        part.text for i, part in enumerate(message.reply_parts)
        if part.kind == "text" and i not in kept
    ]
    await render_ahead(texts)
    kept_ids = {partials.part_id(message.id, i) for i in kept}
    around = partials.message_around(datasette, request, message, can_write) if texts else None
    if around is None:  # nothing left to send, or several parts: none the long case
        drawn = partials.message(datasette, request, message, can_write, kept=kept_ids)
        before, after, body = drawn, "", ""
    else:
        (before, after), body = around, markdown_to_html(texts[0])
    after += partials.chat_status(datasette, request, message.status)
    if step.names_conversation and can_write:
        # the first reply: its title follows, swapped in when it is ready
        after += "\n" + partials.title_update(datasette, request, message.conversation_id)
    name = "error" if message.status == "failed" else "done"
    covered = len(message.text) + len(message.reasoning)
    return sse.event_pieces(name, chain([before], _slices(body), [after]), id=covered)


async def _kept(message, step: Final) -> set[int]:
    """The text parts this stream's browser shows as they will stay: those
    its last snapshot drew finished, and the one it showed in blocks to the
    end, if they are the finished render (links to definitions that came
    later are not: such a text is rendered whole and sent)."""
    parts = message.reply_parts
    kept = {i for i in range(min(step.drawn, len(parts))) if parts[i].kind == "text"}
    if step.live is not None:
        index, live = step.live
        if index < len(parts) and parts[index].kind == "text" and live.length == len(parts[index].text):
            if not live.exact:
                await render_ahead([parts[index].text])
            if live.exact or markdown_to_html(parts[index].text) == live.html():
                kept.add(index)
    return kept
