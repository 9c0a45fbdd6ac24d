"""text/event-stream over ASGI: framing, gzip, keep-alive pings, and
noticing the client leave. Transport only: it knows nothing of messages.

``serve(send, receive, events)`` sends the response: the events an async
iterator yields (bytes, or an event in pieces of bytes: the pieces go
out together up to WRITE_SIZE bytes a write, each write once the client
has taken the last, so a client that stops reading holds up one write,
never a whole reply), a ping comment when the line has been quiet, and it
ends
the moment the iterator ends or the client goes away, whichever is first
(then the iterator is closed, wherever it was waiting).
"""

import asyncio
import contextlib
import html
import logging
import zlib

logger = logging.getLogger(__name__)

PING_INTERVAL = 15.0
RETRY_MS = 1000
# Pieces of an event written together up to this size: each write is a gzip
# flush, a trip through the ASGI send wrappers and a syscall, which a
# "block" event in its five or seven pieces paid five or seven times.
WRITE_SIZE = 64 * 1024

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


def event_pieces(name: str, pieces, id: int | None = None):
    """One event, framed safely whatever made its payload, as bytes in
    pieces: the only function that frames an event. Each line of the
    payload gets its own ``data:``; a long payload (a whole reply) goes in
    the pieces it came in, so a stream never holds more than one of them."""
    head = f"id: {int(id)}\n" if id is not None else ""
    yield utf8(f"{head}event: {name}\ndata: ")
    for piece in pieces:
        yield utf8(piece.translate(FRAMING).replace("\n", "\ndata: "))
    yield b"\n\n"


def event(name: str, data: str, id: int | None = None) -> bytes:
    """A short event, in one piece."""
    return b"".join(event_pieces(name, [data], id))


def utf8(text: str) -> bytes:
    """Valid UTF-8 always: a lone surrogate becomes U+FFFD instead of
    failing the stream."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return (
            text.encode("utf-16", "surrogatepass")
            .decode("utf-16", "replace")
            .encode("utf-8")
        )


def accepts_gzip(headers) -> bool:
    accepted = headers.get("accept-encoding", "")
    return any(
        part.split(";")[0].strip() == "gzip" and "q=0" not in part.replace(" ", "")
        for part in accepted.split(",")
    )


class _Writer:
    """Writes bytes to one connection, gzipped when asked, flushed after
    every write so nothing waits in a buffer."""

    def __init__(self, send, gzip: bool):
        self._send = send
        # An 8 KB window and a small hash table: about 64 KB a stream instead
        # of zlib's default 256 KB, which matters with hundreds of streams.
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + 13, 6) if gzip else None
        self._lock = asyncio.Lock()
        self.last_write = 0.0
        self.sent = 0  # bytes of events, before gzip

    async def start(self):
        headers = list(HEADERS)
        if self._compressor:
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self.write(f"retry: {RETRY_MS}\n\n".encode())

    async def write(self, data: bytes, more: bool = True):
        async with self._lock:
            self.sent += len(data)
            if self._compressor:
                data = self._compressor.compress(data) + self._compressor.flush(
                    zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH
                )
            await self._send({"type": "http.response.body", "body": data, "more_body": more})
            self.last_write = asyncio.get_running_loop().time()


async def serve(send, receive, events, *, gzip: bool = False, ping_interval: float | None = None) -> int:
    """Send ``events`` (an async iterator of framed bytes) as the response;
    return how many bytes of events were sent."""
    ping_interval = ping_interval or PING_INTERVAL
    writer = _Writer(send, gzip)
    await writer.start()

    async def pump():
        async with contextlib.aclosing(events):
            async for data in events:
                if isinstance(data, bytes):
                    await writer.write(data)
                    continue
                # an event in pieces: gathered into writes of up to
                # WRITE_SIZE, each waiting for the client to take the last
                gathered, size = [], 0
                for piece in data:
                    gathered.append(piece)
                    size += len(piece)
                    if size >= WRITE_SIZE:
                        await writer.write(b"".join(gathered))
                        gathered, size = [], 0
                if gathered:
                    await writer.write(b"".join(gathered))

    async def ping():
        loop = asyncio.get_running_loop()
        while True:
            quiet = loop.time() - writer.last_write
            if quiet >= ping_interval:
                await writer.write(b": ping\n\n")
                quiet = 0
            await asyncio.sleep(ping_interval - quiet)

    async def client_left():
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.create_task(job()) for job in (pump, ping, client_left)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    pumped = tasks[0]
    if pumped not in done or pumped.cancelled():
        return writer.sent  # the client left
    if pumped.exception() is None:
        with contextlib.suppress(OSError, RuntimeError):
            await writer.write(b"", more=False)
    elif not isinstance(pumped.exception(), (OSError, RuntimeError)):
        # The response has started: there is no error page to send any
        # more. The browser reconnects and gets a fresh snapshot.
        logger.error("Event stream failed", exc_info=pumped.exception())
    return writer.sent
