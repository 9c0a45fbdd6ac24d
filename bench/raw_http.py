"""A lean HTTP/1.1 client over one kept-alive socket, for timing the
server: httpx spends 2-3 ms of the benchmark's own CPU per request, on the
two cores the server shares, which a first-token figure of a few ms cannot
carry. Only what the benchmarks send: GET and form POSTs, answers with a
Content-Length or chunked, and an SSE stream read until a test passes."""

import asyncio
import re
import urllib.parse


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

    async def stream_until(self, path: str, test) -> None:
        """GET an SSE stream on a connection of its own and read it until
        ``test(event name, data)`` is true, then close it."""
        async with RawClient(self.port, self.cookie) as other:
            other.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {self.cookie}\r\n"
                               "Accept: text/event-stream\r\n\r\n".encode())
            status, _head = await other._head()
            assert status == 200, status
            buffer = ""
            async for chunk in other._chunks():
                buffer += chunk.decode()
                while "\n\n" in buffer:
                    event, buffer = buffer.split("\n\n", 1)
                    name = re.search(r"^event: (.*)$", event, re.M)
                    data = "\n".join(line[6:] for line in event.split("\n") if line.startswith("data: "))
                    if test(name.group(1) if name else "message", data):
                        return
