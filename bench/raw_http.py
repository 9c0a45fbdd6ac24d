"""A lean HTTP/1.1 client over one kept-alive socket, for timing the
server: httpx spends 2-3 ms of the benchmark's own CPU per request, on the
two cores the server shares, which a first-token figure of a few ms cannot
carry. Only what the benchmarks send: GET and form POSTs, answers with a
Content-Length or chunked, and an SSE stream read until a test passes."""

import asyncio
import codecs
import re
import urllib.parse
import zlib


class RawClient:
    def __init__(self, port: int, cookie: str):
        self.port = port
        self.cookie = cookie
        self.reader = self.writer = None

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc):
        self.writer.close()

    async def request(self, method: str, path: str, form: dict | None = None, headers=()):
        """(status, headers as a dict of lower-cased names, body text)."""
        body = urllib.parse.urlencode(form).encode() if form is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Cookie: {self.cookie}",
                 *(f"{name}: {value}" for name, value in headers)]
        if form is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, head = await self._head()
        if "content-length" in head:
            text = await self.reader.readexactly(int(head["content-length"]))
        else:
            text = b"".join([chunk async for chunk in self._chunks()])
        return status, head, text.decode()

    async def _head(self):
        raw = await self.reader.readuntil(b"\r\n\r\n")
        first, *rest = raw.decode("latin-1").split("\r\n")
        head = {}
        for line in rest:
            if ":" in line:
                name, value = line.split(":", 1)
                head[name.strip().lower()] = value.strip()
        return int(first.split()[1]), head

    async def _chunks(self):
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return
            yield data[:-2]

    async def stream_until(self, path: str, test, gzip: bool = False) -> None:
        """GET an SSE stream on a connection of its own and read it until
        ``test(event name, data)`` is true or the stream ends."""
        await stream_until(self.port, self.cookie, path, test, gzip)


async def stream_until(port: int, cookie: str, path: str, test, gzip: bool = False) -> None:
    """Read an SSE stream (asking for gzip, as a browser does, if ``gzip``)
    until ``test(event name, data)`` is true or the stream ends."""
    async with RawClient(port, cookie) as raw:
        encoding = "Accept-Encoding: gzip\r\n" if gzip else ""
        raw.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                         f"Accept: text/event-stream\r\n{encoding}\r\n".encode())
        status, head = await raw._head()
        assert status == 200, status
        gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if head.get("content-encoding") == "gzip" else None
        text = codecs.getincrementaldecoder("utf-8")()  # a character may span two chunks
        buffer = ""
        async for chunk in raw._chunks():
            buffer += text.decode(gunzip.decompress(chunk) if gunzip else chunk)
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                name = re.search(r"^event: (.*)$", event, re.M)
                data = "\n".join(line[6:] for line in event.split("\n") if line.startswith("data: "))
                if test(name.group(1) if name else "message", data):
                    return
