"""GET /-/llm/{cid}/stream/{mid}: the text/event-stream of one reply.

Every connection first gets a ``snapshot`` of the text so far, then
``token`` events of new text, then ``done`` (or ``error``): the finished
message, drawn by the same partial as the page. Each event's ``id`` is the
number of characters of reply text it covers. Following the reply is
following.py's job; sending the events is sse.py's; drawing them is here.
"""

from datasette import Response

from .. import partials, permissions, sse
from ..following import Delta, Final, Snapshot, follow
from ..generation import generations
from ..rendering import render_ahead
from ..store.database import llm_database
from .common import find_message, load_readable


async def stream(request, datasette, send, receive):
    if request.headers.get("sec-fetch-site") == "cross-site":
        return Response.text("Cross-site streams are refused.", status=403)
    mid = request.url_vars["mid"]
    registry = generations(datasette)
    registry.watch_for_shutdown()
    local = registry.running.get(mid)
    if local is not None and local.message.conversation_id == request.url_vars["cid"]:
        # generated here: only who may read the conversation is needed
        conversation = await load_readable(datasette, request, with_messages=False)
    else:
        conversation = await load_readable(datasette, request)
        find_message(conversation, mid)
    can_write = await permissions.can_write(datasette, request.actor, conversation)
    steps = follow(registry, llm_database(datasette), conversation.id, mid, registry.shutting_down)
    await sse.serve(
        send,
        receive,
        _events(datasette, request, steps, can_write),
        gzip=sse.accepts_gzip(request.headers),
    )
    return None


async def _events(datasette, request, steps, can_write):
    covered = 0
    async for step in steps:
        if isinstance(step, Snapshot):
            covered = len(step.text)
            html = partials.streaming_text(datasette, step.text)
            yield sse.event("snapshot", html, id=covered)
        elif isinstance(step, Delta):
            covered = step.covered
            yield sse.event("token", sse.escape_text(step.text), id=covered)
        elif isinstance(step, Final):
            yield sse.event(*await _final(datasette, request, step, can_write))


async def _final(datasette, request, step: Final, can_write: bool):
    message = step.message
    await render_ahead([message.text])  # off the event loop, once for all streams
    html = partials.message(datasette, request, message, can_write)
    html += partials.chat_status(datasette, request, message.status)
    if step.names_conversation and can_write:
        # the first reply: its title follows, swapped in when it is ready
        html += "\n" + partials.title_update(datasette, request, message.conversation_id)
    name = "error" if message.status == "failed" else "done"
    return name, html, len(message.text)
