"""The text/event-stream of one message.

Every connection gets a ``snapshot`` of the text so far first, then ``token``
events with the new text, then ``done`` (or ``error``) with the finished
message drawn by the same partial as the page. Each event's ``id`` is the
number of characters of reply text it covers. A connection only watches: it
never starts or stops a model.
"""

import asyncio
import contextlib
import html
import logging
import time
import zlib


from . import storage
from .generation import generations
from .partials import render_partial

logger = logging.getLogger(__name__)

PING_INTERVAL = 15.0
BATCH_INTERVAL = 0.05  # at most ~20 token events a second per stream
POLL_INTERVAL = 0.5  # when another process generates the reply
RETRY_MS = 1000

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


# What may never reach the wire raw. A carriage return (alone or in CR LF)
# ends an SSE line, so text holding one could end an event early and forge
# the next; some clients also split on the Unicode line separators. Every
# payload is HTML, where a character reference stays text. NEL cannot be
# one: HTML reads &#133; through Windows-1252, as "…". It is a line break,
# so it becomes one.
FRAMING = str.maketrans(
    {"\r": "&#13;", "\u2028": "&#8232;", "\u2029": "&#8233;", "\x85": "\n"}
)


def escape_text(text: str) -> str:
    """Text for element content: &, < and > are all that need escaping."""
    return html.escape(text, quote=False)


def event(name: str, data: str, id: int | None = None) -> bytes:
    """One event, framed safely whatever made ``data``: the only function
    that writes one. Each line of the payload gets its own ``data:``."""
    lines = []
    if id is not None:
        lines.append(f"id: {int(id)}")
    lines.append(f"event: {name}")
    lines.extend("data: " + line for line in data.translate(FRAMING).split("\n"))
    return utf8("\n".join(lines) + "\n\n")


def utf8(text: str) -> bytes:
    """Valid UTF-8 always: a lone surrogate (which a model can emit) becomes
    U+FFFD instead of failing the stream."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return (
            text.encode("utf-16", "surrogatepass")
            .decode("utf-16", "replace")
            .encode("utf-8")
        )


def accepts_gzip(request) -> bool:
    accepted = request.headers.get("accept-encoding", "")
    return any(
        part.split(";")[0].strip() == "gzip" and "q=0" not in part.replace(" ", "")
        for part in accepted.split(",")
    )


class EventStream:
    """Writes events to one ASGI connection; notices when the client left.

    With a client that accepts it, the stream is gzipped, flushed after every
    event so nothing waits in a buffer: the finished message's HTML and the
    repeated event framing shrink several times over."""

    def __init__(self, send, receive, gzip: bool = False):
        self._send = send
        self._receive = receive
        self.closed = False
        self._watcher: asyncio.Task | None = None
        # An 8 KB window and a small hash table: about 64 KB a stream instead
        # of zlib's default 256 KB, which matters with hundreds of streams.
        self._compressor = (
            zlib.compressobj(6, zlib.DEFLATED, 16 + 13, 6) if gzip else None
        )

    async def open(self):
        headers = list(HEADERS)
        if self._compressor:
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self.write(f"retry: {RETRY_MS}\n\n".encode())
        self._watcher = asyncio.create_task(self._watch_disconnect())

    async def _watch_disconnect(self):
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.closed = True
                return

    async def write(self, data: bytes):
        if self.closed:
            return
        if self._compressor:
            data = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except (OSError, RuntimeError):
            # uvicorn raises on a send after the client went away
            self.closed = True

    async def close(self):
        if self._watcher:
            self._watcher.cancel()
        if not self.closed:
            end = self._compressor.flush(zlib.Z_FINISH) if self._compressor else b""
            with contextlib.suppress(OSError, RuntimeError):
                await self._send({"type": "http.response.body", "body": end, "more_body": False})


async def stream_message(datasette, request, send, receive, cid: str, mid: str, render_final):
    """Serve the stream of message ``mid``. ``render_final(message)`` draws the
    finished message (the same partial as the page)."""
    registry = generations(datasette)
    stream = EventStream(send, receive, gzip=accepts_gzip(request))
    await stream.open()
    try:
        generation = registry.running.get(mid)
        if generation is not None:
            await _follow_local(stream, datasette, generation, render_final)
        else:
            await _follow_stored(stream, datasette, registry, cid, mid, render_final)
    except Exception:
        # The response has started: there is no error page to send any more.
        # The browser reconnects and gets a fresh snapshot.
        logger.exception("Stream of message %s failed", mid)
    finally:
        await stream.close()


async def _send_snapshot(stream, datasette, text: str):
    html = render_partial(datasette, "_streaming_text.html", text=text)
    await stream.write(event("snapshot", html, id=len(text)))


async def _send_final(stream, message, render_final, new_title=None):
    name = "error" if message.status == "failed" else "done"
    html = await render_final(message, new_title)
    await stream.write(event(name, html, id=len(message.text)))


async def _follow_local(stream, datasette, generation, render_final):
    chunks_sent = len(generation.chunks)
    covered = generation.length
    await _send_snapshot(stream, datasette, "".join(generation.chunks[:chunks_sent]))
    last_write = time.monotonic()
    while not stream.closed:
        if len(generation.chunks) > chunks_sent:
            upto = len(generation.chunks)
            new_text = "".join(generation.chunks[chunks_sent:upto])
            chunks_sent = upto
            covered += len(new_text)
            await stream.write(event("token", escape_text(new_text), id=covered))
            last_write = time.monotonic()
            # let tokens gather into the next event, unless the model is done
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(generation.text_complete.wait(), BATCH_INTERVAL)
            continue
        if generation.done:
            await _send_final(
                stream, generation.snapshot(), render_final, generation.new_title
            )
            return
        await generation.changed(timeout=PING_INTERVAL)
        if time.monotonic() - last_write >= PING_INTERVAL and not stream.closed:
            await stream.write(b": ping\n\n")
            last_write = time.monotonic()


async def _follow_stored(stream, datasette, registry, cid, mid, render_final):
    """Another process (or nobody) generates this message: follow what it
    saves to the database."""
    db = storage.llm_database(datasette)
    sent = None
    last_write = time.monotonic()
    while not stream.closed:
        message = await db.execute_fn(lambda conn: storage.read_message(conn, cid, mid))
        if message is None:
            return
        registry.settle(message)
        if not message.streaming:
            if sent is None:
                await _send_snapshot(stream, datasette, message.text)
            await _send_final(stream, message, render_final)
            return
        if sent is None:
            await _send_snapshot(stream, datasette, message.text)
            sent = len(message.text)
            last_write = time.monotonic()
        elif len(message.text) > sent:
            await stream.write(event("token", escape_text(message.text[sent:]), id=len(message.text)))
            sent = len(message.text)
            last_write = time.monotonic()
        elif time.monotonic() - last_write >= PING_INTERVAL:
            await stream.write(b": ping\n\n")
            last_write = time.monotonic()
        await asyncio.sleep(POLL_INTERVAL)
