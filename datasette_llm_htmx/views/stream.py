"""GET /-/llm/{cid}/stream/{mid}: the text/event-stream of one reply.

Every connection first gets a ``snapshot`` of the text so far, then
``token`` events of new text, then ``done`` (or ``error``): the finished
message, drawn by the same partial as the page. Each event's ``id`` is the
number of characters of reply text it covers. Following the reply is
following.py's job; sending the events is sse.py's; drawing them is here.
"""

from itertools import chain

from datasette import Response

from .. import memory, partials, permissions, shutdown, sse
from ..following import Delta, Final, Snapshot, follow
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
        _events(datasette, request, steps, can_write),
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


def _gathered(chunks, transform):
    """Chunks joined into slices of about SLICE characters, as the client
    takes them."""
    batch, size = [], 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= SLICE:
            yield from _slices("".join(batch), transform)
            batch, size = [], 0
    if batch:
        yield from _slices("".join(batch), transform)


# The event that adds to a part being written, by the part's kind
DELTA_EVENTS = {"text": "token", "reasoning": "reasoning"}


async def _events(datasette, request, steps, can_write):
    async for step in steps:
        if isinstance(step, Snapshot):
            yield await _snapshot(datasette, step)
        elif isinstance(step, Delta):
            yield sse.event(DELTA_EVENTS[step.kind], sse.escape_text(step.text), id=step.covered)
        elif isinstance(step, Final):
            yield await _final(datasette, request, step, can_write)


async def _snapshot(datasette, step: Snapshot):
    """The reply so far: its finished parts drawn as they will stay (their
    markdown rendered off the event loop), and the part being written sent
    in slices of its chunks."""
    await render_ahead([part.text for part in step.finished if part.kind == "text"])
    parts = [*step.finished, ReplyPart(step.kind)]
    before, after = partials.streaming_parts_around(datasette, parts)
    return sse.event_pieces(
        "snapshot",
        chain([before], _gathered(step.chunks, sse.escape_text), [after]),
        id=step.covered,
    )


async def _final(datasette, request, step: Final, can_write: bool):
    """The finished message, drawn around its reply's HTML, which is
    rendered once (off the event loop) and sent in slices of the cached
    copy: ten streams of a long reply do not make ten copies of it."""
    message = step.message
    texts = [part.text for part in message.reply_parts if part.kind == "text"]
    await render_ahead(texts)
    around = partials.message_around(datasette, request, message, can_write)
    if around is None:  # several parts: none of them the long case
        before, after, body = partials.message(datasette, request, message, can_write), "", ""
    else:
        (before, after), body = around, markdown_to_html(texts[0])
    after += partials.chat_status(datasette, request, message.status)
    if step.names_conversation and can_write:
        # the first reply: its title follows, swapped in when it is ready
        after += "\n" + partials.title_update(datasette, request, message.conversation_id)
    name = "error" if message.status == "failed" else "done"
    covered = len(message.text) + len(message.reasoning)
    return sse.event_pieces(name, chain([before], _slices(body), [after]), id=covered)
