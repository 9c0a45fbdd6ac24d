"""A tiny OpenAI-compatible chat-completions server, for benchmarks: the
"real upstream" that llm's own OpenAI plugin talks to over a local socket.

    python bench/openai_server.py --port 8765 [--rate 0]

POST /v1/chat/completions answers as OpenAI's API does: with
``"stream": true`` a text/event-stream of ``chat.completion.chunk`` objects
(a first chunk with the role, one chunk per token, a last chunk with
``finish_reason``, then, when ``stream_options.include_usage`` is set, a
chunk with ``usage`` and no choices, then ``data: [DONE]``); otherwise one
``chat.completion``. HTTP/1.1 with keep-alive and chunked transfer encoding.

The last user message sets the reply: ``tokens=N`` (default 20) and
``rate=R`` tokens a second (default ``--rate``; 0 sends as fast as the
socket takes them). The text is deterministic: ``reply_text(N)``.

Plain asyncio, no framework, so that the upstream costs as little CPU as
possible on a machine it shares with what it measures. Nothing here leaves
127.0.0.1, and no key is checked (any ``Authorization`` is accepted).
"""

import argparse
import asyncio
import json
import re
import time

VOCABULARY = (
    " the a model reply stream token server browser data base query table index "
    "of to and in is it for on with as at by from that this"
).split(" ")
PARAGRAPH_EVERY = 80  # tokens


def token(i: int) -> str:
    """Token i of every reply: English-sized words (about 4.5 characters a
    token, as OpenAI's tokenizers average), a paragraph break now and then."""
    if i % PARAGRAPH_EVERY == PARAGRAPH_EVERY - 1:
        return ".\n\n"
    word = VOCABULARY[(i * 7 + i // 13) % len(VOCABULARY)] or "the"
    return (" " if i % PARAGRAPH_EVERY else "") + word


def reply_text(tokens: int) -> str:
    return "".join(token(i) for i in range(tokens))


TOKENS = re.compile(r"tokens=(\d+)")
RATE = re.compile(r"rate=([0-9.]+)")


def last_user_text(messages) -> str:
    for message in reversed(messages or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class Upstream:
    def __init__(self, default_rate: float):
        self.default_rate = default_rate
        self.requests = 0
        self.counter = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:  # keep-alive: one request after another
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                    await self.chat(json.loads(body or b"{}"), writer)
                elif method == "GET" and path.rstrip("/").endswith("/health"):
                    self.simple(writer, 200, b'{"ok": true}')
                else:
                    self.simple(writer, 404, b'{"error": {"message": "not found"}}')
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    def simple(writer, status: int, body: bytes):
        reason = {200: "OK", 404: "Not Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode() + body
        )

    async def chat(self, request: dict, writer: asyncio.StreamWriter):
        text = last_user_text(request.get("messages"))
        match = TOKENS.search(text)
        count = int(match.group(1)) if match else 20
        match = RATE.search(text)
        rate = float(match.group(1)) if match else self.default_rate
        model = str(request.get("model", "local"))
        self.counter += 1
        cid = f"chatcmpl-bench{self.counter}"
        created = int(time.time())
        usage = {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": count,
                 "total_tokens": max(1, len(text) // 4) + count}
        if not request.get("stream"):
            body = json.dumps({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_text(count)},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            }).encode()
            self.simple(writer, 200, body)
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        head = (
            '{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            '"system_fingerprint":"fp_bench","choices":[{"index":0,"delta":'
            % (cid, created, json.dumps(model))
        )

        def event(delta: str, finish="null") -> str:
            return f'data: {head}{delta},"logprobs":null,"finish_reason":{finish}}}]}}\n\n'

        def send(payload: str):
            data = payload.encode()
            writer.write(b"%x\r\n%b\r\n" % (len(data), data))

        send(event('{"role":"assistant","content":"","refusal":null}'))
        if rate <= 0:
            # as fast as the socket takes it, in writes of about 64 KB
            batch, size = [], 0
            for i in range(count):
                piece = event('{"content":%s}' % json.dumps(token(i)))
                batch.append(piece)
                size += len(piece)
                if size > 65536:
                    send("".join(batch))
                    batch, size = [], 0
                    await writer.drain()
            if batch:
                send("".join(batch))
        else:
            await writer.drain()
            start = time.monotonic()
            for i in range(count):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                send(event('{"content":%s}' % json.dumps(token(i))))
                await writer.drain()
        tail = [event("{}", '"stop"')]
        if (request.get("stream_options") or {}).get("include_usage"):
            tail.append("data: " + json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_bench", "choices": [], "usage": usage,
            }) + "\n\n")
        tail.append("data: [DONE]\n\n")
        send("".join(tail))
        writer.write(b"0\r\n\r\n")


async def serve(port: int, rate: float, host: str = "127.0.0.1"):
    upstream = Upstream(rate)
    server = await asyncio.start_server(upstream.handle, host, port, backlog=1024, limit=1 << 20)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="tokens a second; 0: no delay")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.rate))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
