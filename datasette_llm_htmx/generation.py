"""One reply being generated: its text so far, its followers, and the
run of its model, which ends when the model does, fails, is stopped or
times out.

Whatever the model does, the run ends when it is told to: the model task
is never awaited past a stop or a timeout (a model may ignore
cancellation), and chunks it sends after that are dropped.
"""

import asyncio
import contextlib
import json
import re
import threading
import time
from dataclasses import replace

from .safe_text import valid_text
from .store.records import Message, ReplyPart, ToolCall, ToolResult
from .sync_bridge import batches_from_thread

YIELD_EVERY = 0.001  # a model that never awaits still lets the loop run
CHECK_EVERY = 16
BATCH_INTERVAL = 0.05  # new text wakes a reply's followers at most ~20 times a second
# With many replies at once the interval grows: each wake-up costs each of
# their streams an event (framing, gzip, a write through the ASGI stack, a
# syscall), and on a saturated event loop fewer, fuller events keep every
# stream at its model's pace (bench P4: 1,000 paced streams, 2.0 -> 1.4).
BATCH_REPLIES = 100  # replies at once that the base interval is for
BATCH_MAX = 0.25  # the longest interval, from 500 replies at once


def batch_interval(running: int) -> float:
    """How long new text waits for more before it wakes the followers."""
    return min(BATCH_MAX, BATCH_INTERVAL * max(1.0, running / BATCH_REPLIES))


class LivePart:
    """A part of a reply as it is written: text, reasoning or a tool call,
    in the chunks it came in."""

    __slots__ = ("kind", "chunks", "name", "call_id", "started", "ended", "live")

    def __init__(self, kind: str, name: str | None = None, call_id: str | None = None):
        self.kind = kind
        self.chunks: list[str] = []
        self.name = name
        self.call_id = call_id
        self.started = time.monotonic()
        self.ended: float | None = None
        self.live = None  # text: its blocks so far, once a stream follows it (following.py)

    def text(self) -> str:
        return "".join(self.chunks)

    def finished(self) -> ReplyPart:
        """The part as it will stay."""
        if self.kind == "tool_call":
            arguments = self.text()
            try:
                arguments = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
            except ValueError:
                pass
            return ReplyPart("tool_call", tool_call=ToolCall(self.name or "", arguments, self.call_id))
        if self.kind == "tool_result":
            output, error = self.chunks[0], self.chunks[1] if len(self.chunks) > 1 else None
            return ReplyPart("tool_result", tool_result=ToolResult(self.name or "", output, self.call_id, error))
        seconds = (self.ended - self.started) if self.ended and self.kind == "reasoning" else None
        return ReplyPart(self.kind, self.text(), seconds=seconds)


class Generation:
    """One reply being generated, and what its followers need to know."""

    def __init__(self, message: Message, actor_id: str | None, response, is_async: bool):
        self.message = message
        self.actor_id = actor_id
        self.response = response
        self.is_async = is_async
        self.parts: list[LivePart] = []
        self.length = 0  # characters of reply text and reasoning so far
        self.started = time.monotonic()
        self.last_chunk_at = self.started
        self.finished_at: float | None = None  # the end, told to followers
        self.saved = False  # the end has reached the database
        self.recorded = False  # the start has reached the database
        self.record_landed: asyncio.Future | None = None  # see Generations.start
        self.saved_state: tuple[int, int, str] | None = None
        self.stop_event = asyncio.Event()
        self.text_complete = asyncio.Event()  # no more text will come
        self.name_conversation = False  # the first reply names the conversation
        self.title: asyncio.Future | None = None  # the name, once asked for
        self.task: asyncio.Task | None = None
        self.actor: dict | None = None  # who asked (datasette-llm's hooks see them)
        self.rest_of_chain = None  # a chain (tools, datasette-llm): what follows this response
        self.more_responses: list = []  # the chain's later responses, after tool calls
        self._frozen = False  # stopped: chunks still coming are dropped
        self._changed: asyncio.Event | None = None
        self._last_notify = 0.0
        self._notify_later: asyncio.TimerHandle | None = None
        self.running_now = lambda: 1  # replies running in this process (Generations.start)
        self._current: LivePart | None = None

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def text(self) -> str:
        return "".join(part.text() for part in self.parts if part.kind == "text")

    def append(self, chunk: str, kind: str = "text") -> None:
        """Add a chunk of text or reasoning: to the part being written when
        it is of that kind (the hot path), or as a new part."""
        if self._frozen or not chunk:
            return
        if not chunk.isascii():
            chunk = valid_text(chunk)
        current = self._current
        if current is None or current.kind != kind:
            current = self._begin(kind)
        current.chunks.append(chunk)
        self.length += len(chunk)
        self.last_chunk_at = time.monotonic()
        if self._changed is not None and self._notify_later is None:  # someone is waiting
            self._notify_soon()

    def begin_tool_call(self, name: str, call_id: str | None) -> None:
        if self._frozen:
            return
        self._begin("tool_call", name=name, call_id=call_id)
        self.notify()

    def tool_call_arguments(self, chunk: str, call_id: str | None) -> None:
        """Arguments arrive in pieces, for the call with that id (or the
        last one)."""
        if self._frozen or not chunk:
            return
        calls = [part for part in self.parts if part.kind == "tool_call"]
        target = next((p for p in calls if call_id and p.call_id == call_id), calls[-1] if calls else None)
        if target is None:
            target = self._begin("tool_call", name="", call_id=call_id)
        target.chunks.append(valid_text(chunk))
        self.last_chunk_at = time.monotonic()
        if self._changed is not None and self._notify_later is None:
            self._notify_soon()

    def add_tool_calls(self, calls) -> None:
        """Tool calls the model registered without streaming them (llm-echo
        does): the reply shows them all the same."""
        seen = {part.call_id for part in self.parts if part.kind == "tool_call"}
        for call in calls:
            if call.tool_call_id is None or call.tool_call_id not in seen:
                part = self._begin("tool_call", name=call.name, call_id=call.tool_call_id)
                part.chunks.append(json.dumps(call.arguments or {}))
        self.notify()

    def add_tool_results(self, results) -> None:
        """What the tools the model called answered (the chain ran them
        before the model's next response)."""
        for result in results:
            part = self._begin("tool_result", name=result.name, call_id=result.tool_call_id)
            part.chunks.append(valid_text(str(result.output)))
            if result.exception is not None:
                part.chunks.append(valid_text(f"{type(result.exception).__name__}: {result.exception}"))
        self.notify()

    def _begin(self, kind: str, name: str | None = None, call_id: str | None = None) -> LivePart:
        now = time.monotonic()
        if self._current is not None and self._current.ended is None:
            self._current.ended = now
        self._current = LivePart(kind, name=name, call_id=call_id)
        self.parts.append(self._current)
        self.last_chunk_at = now
        return self._current

    def notify(self) -> None:
        """Wake every follower now."""
        if self._notify_later is not None:
            self._notify_later.cancel()
            self._notify_later = None
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    def _notify_text(self) -> None:
        self._last_notify = time.monotonic()
        self.notify()

    def _notify_soon(self) -> None:
        """New text wakes the followers at once if text last woke them
        batch_interval() ago, else when it will be: the tokens between go
        out together, and a reply costs one timer however many streams
        follow it (not a timer per stream per token). Other news (the reply
        began, a tool was called) does not count: the first text after it
        goes at once."""
        wait = self._last_notify + batch_interval(self.running_now()) - time.monotonic()
        if wait <= 0:
            self._notify_text()
        else:
            self._notify_later = asyncio.get_running_loop().call_later(wait, self._notify_text)

    def complete_text(self) -> None:
        """No more text will come: followers send the rest at once."""
        self.text_complete.set()
        self.notify()

    async def changed(self, timeout: float | None = None) -> None:
        """Wait until there is new text (see _notify_soon) or a new status,
        or until ``timeout``."""
        if self._changed is None:
            self._changed = asyncio.Event()
        if timeout is None:
            await self._changed.wait()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def end(self, status: str, error: str | None = None) -> None:
        """The reply's last word: later chunks are dropped, and every
        follower is told."""
        self._frozen = True
        if self._current is not None and self._current.ended is None:
            self._current.ended = time.monotonic()
        self.message.status = status
        self.message.error = valid_text(error) if error else None
        self.message.parts = self.reply_parts()
        self.message.text = self.text()
        # one string a part instead of a chunk each: a long reply's list of
        # small strings costs several times its text
        for part in self.parts:
            if len(part.chunks) > 1:
                part.chunks = [part.text()]
        self.finished_at = time.monotonic()
        self.text_complete.set()
        self.notify()

    def reply_parts(self) -> list[ReplyPart]:
        return [part.finished() for part in self.parts]

    def current(self) -> Message:
        """A copy of the message as it stands, with its parts so far."""
        if self.finished:
            return replace(self.message)
        return replace(self.message, text=self.text(), parts=self.reply_parts())


async def run_model(generation: "Generation", *, idle_timeout: float, total_timeout: float, detached: set) -> tuple[str, str | None]:
    """Run the model until it ends, fails, is stopped or times out.
    Returns (status, error); "done" means the text is complete. A model
    task that does not end when told to is left in ``detached``: nobody
    waits for it."""
    message = generation.message
    message.status = "running"
    generation.notify()
    consume = _consume_async if generation.is_async else _consume_sync
    model_task = asyncio.create_task(consume(generation))
    stop_wait = asyncio.create_task(generation.stop_event.wait())
    try:
        while True:
            now = time.monotonic()
            idle_left = generation.last_chunk_at + idle_timeout - now
            total_left = generation.started + total_timeout - now
            if idle_left <= 0:
                return "failed", (
                    f"The model sent nothing for {idle_timeout:g} seconds, "
                    "so the reply was stopped."
                )
            if total_left <= 0:
                return "failed", (
                    f"The reply took longer than {total_timeout:g} "
                    "seconds, so it was stopped."
                )
            done, _ = await asyncio.wait(
                {model_task, stop_wait},
                timeout=min(idle_left, total_left),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stop_wait in done:
                return "stopped", None
            if model_task in done:
                error = model_task.exception()
                if error is not None:
                    return "failed", describe_error(error)
                generation.complete_text()
                return "done", None
    finally:
        stop_wait.cancel()
        if not model_task.done():
            generation._frozen = True
            # The model may ignore this; nobody waits for it to agree.
            model_task.cancel()
            detached.add(model_task)
            model_task.add_done_callback(lambda task: (detached.discard(task), _retrieve(task)))

async def _consume_async(generation: Generation) -> None:
    try:
        await _consume_events(generation, generation.response)
        if generation.rest_of_chain is not None:
            generation.add_tool_calls(await generation.response.tool_calls())
            # A model that called tools: the chain runs them and goes on
            # with their results, in the same reply. Without tools it ends
            # here, and datasette-llm's hooks exit (costs settle).
            async for response in generation.rest_of_chain:
                generation.more_responses.append(response)
                generation.add_tool_results(response.prompt.tool_results)
                await _consume_events(generation, response)
                generation.add_tool_calls(await response.tool_calls())
            generation.rest_of_chain = None
    finally:
        if generation.rest_of_chain is not None:
            await _end_chain_early(generation.rest_of_chain)


async def _consume_events(generation: Generation, response) -> None:
    # The hot loop of a fast model: a few attribute lookups per chunk, and
    # the clock read only every CHECK_EVERY chunks.
    append = generation.append
    monotonic = time.monotonic
    last_yield = monotonic()
    count = 0
    events = response.astream_events()
    async with contextlib.aclosing(events):
        async for event in events:
            if event.type == "text":
                append(event.chunk)
            else:
                take_event(generation, event)
            count += 1
            if count % CHECK_EVERY == 0:
                now = monotonic()
                if now - last_yield > YIELD_EVERY:
                    last_yield = now
                    await asyncio.sleep(0)


class ReplyEnded(Exception):
    """Thrown into datasette-llm's hooks when a reply ends early (stopped,
    failed, timed out): hooks that clean up on an exception run
    (datasette-llm-accountant gives its reservation back); the GeneratorExit
    of a plain aclose() would leave it held."""


async def _end_chain_early(rest) -> None:
    try:
        await rest.athrow(ReplyEnded())
    except (ReplyEnded, StopAsyncIteration, RuntimeError):
        pass

async def _consume_sync(generation: Generation) -> None:
    stop = threading.Event()
    batches = batches_from_thread(
        generation.response.stream_events, name=f"llm-{generation.id}", stop=stop
    )
    append = generation.append
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for event in batch:
                if event.type == "text":
                    append(event.chunk)
                else:
                    take_event(generation, event)


def take_event(generation: Generation, event) -> None:
    """The stream events that are not reply text (llm.parts.StreamEvent)."""
    if event.type == "reasoning":
        generation.append(event.chunk, "reasoning")
    elif event.type == "tool_call_name":
        generation.begin_tool_call(event.chunk, event.tool_call_id)
    elif event.type == "tool_call_args":
        generation.tool_call_arguments(event.chunk, event.tool_call_id)



# How models say a conversation no longer fits (llama.cpp, OpenAI, Anthropic...)
CONTEXT_OVERFLOW = re.compile(
    r"exceed(s|ed)? (the )?context window|context[_ ]length|maximum context|"
    r"context_length_exceeded|prompt is too long|too many tokens",
    re.IGNORECASE,
)


def describe_error(error: BaseException) -> str:
    text = str(error) or error.__class__.__name__
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    text = valid_text(text)
    if CONTEXT_OVERFLOW.search(text):
        return (
            f"The conversation no longer fits in the model's context window ({text}). "
            "Continue in a new conversation: it carries the last exchange."
        )
    return text



def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
