"""Generation belongs to the server, not to a connection.

A POST starts a Generation as a task in this process. Stream GETs subscribe to
it; however many come and go, the model runs once. The text so far is saved to
``unlogged_messages`` about once a second, so a reload, another worker process
or a restart after a crash can still show it. A finished reply is logged with
llm's own ``log_to_db``.
"""

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict

import llm
from llm.cli import load_conversation

from . import storage
from .config import settings
from .safe_text import valid_text
from .storage import Message
from .titles import TITLE_TIMEOUT, generate_title

logger = logging.getLogger(__name__)

HOST = socket.gethostname()
# Which process runs a message: host, pid and a token for this process's life
# (a restarted container can get the same pid back).
WORKER = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"

SAVE_INTERVAL = 1.0  # seconds between saves of the text so far
STALE_AFTER = 15.0  # a message not saved for this long is assumed dead
KEEP_FINISHED = 120.0  # seconds a finished generation stays to answer streams
YIELD_EVERY = 0.001  # a model that never awaits still lets the loop run
CHECK_EVERY = 16


class Generation:
    """One reply being generated, and what its subscribers need to know."""

    def __init__(self, message: Message, response, is_async: bool):
        self.message = message
        self.response = response
        self.is_async = is_async
        self.chunks: list[str] = []
        self.length = 0  # characters of reply text so far
        self.task: asyncio.Task | None = None
        self.finished_at: float | None = None
        self.stop_requested = False
        self.dirty = False
        self.text_complete = asyncio.Event()  # the model sent its last chunk
        self.name_conversation = False  # the first reply names the conversation
        self.new_title: str | None = None
        self._event: asyncio.Event | None = None

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def text(self) -> str:
        return "".join(self.chunks)

    def append(self, chunk: str) -> None:
        chunk = valid_text(chunk)
        self.chunks.append(chunk)
        self.length += len(chunk)
        self.dirty = True
        if self._event is not None:  # someone is waiting: wake them
            self.notify()

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def changed(self, timeout: float) -> None:
        """Wait until there is new text or a new status, or timeout passes."""
        if self._event is None:
            self._event = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

    def snapshot(self) -> Message:
        """The message as it stands, with the text so far."""
        message = self.message
        message.text = self.text()
        return message


class Generations:
    """The generations of this process, for one Datasette instance."""

    def __init__(self, datasette):
        self.datasette = datasette
        self.running: dict[str, Generation] = {}
        self.conversations: OrderedDict[str, object] = OrderedDict()
        self._saver: asyncio.Task | None = None

    @property
    def db(self):
        return storage.llm_database(self.datasette)

    # Starting

    async def start(self, message: Message, *, actor_id, new_conversation: bool):
        """Record the message and start generating its reply."""
        model, is_async = resolve_model(message.model_id)
        conversation = await self._conversation(message.conversation_id, model, is_async)
        response = conversation.prompt(
            message.prompt, system=message.system, options=message.options
        )
        response.id = message.id  # the logged response keeps the message's id
        message.status = "pending"
        message.worker = WORKER
        generation = Generation(message, response, is_async)
        generation.name_conversation = new_conversation
        # The model starts while the record is written: writes are queued on
        # one thread in order, so this record precedes every later save.
        self.running[message.id] = generation
        generation.task = asyncio.create_task(self._run(generation))
        try:
            await self.db.execute_write_fn(
                lambda conn: storage.record_start(
                    conn, message=message, actor_id=actor_id, new=new_conversation
                )
            )
        except BaseException:
            generation.task.cancel()
            del self.running[message.id]
            raise
        self._ensure_saver()
        return generation

    async def _conversation(self, cid: str, model, is_async: bool):
        """The llm conversation, with its history, for the next prompt.

        Kept in memory between prompts, as ``llm chat`` does; after a restart
        it is rebuilt from logs.db, as ``llm chat --cid`` does.
        """
        conversation = self.conversations.get(cid)
        if conversation is not None and conversation.model.model_id == model.model_id:
            self.conversations.move_to_end(cid)
            return conversation
        conversation = None
        logged = await self.db.execute_fn(
            lambda conn: conn.execute(
                "select 1 from threads where id = ? union all"
                " select 1 from conversations where id = ?",
                [cid, cid],
            ).fetchone()
        )
        if logged:
            path = self.db.path
            conversation = await asyncio.to_thread(
                load_conversation, cid, async_=is_async, database=path
            )
            conversation.model = model
        if conversation is None:
            conversation = model.conversation()
            conversation.id = cid
        self.conversations[cid] = conversation
        while len(self.conversations) > 500:
            self.conversations.popitem(last=False)
        return conversation

    # Running

    async def _run(self, generation: Generation) -> None:
        message = generation.message
        message.status = "running"
        generation.dirty = True
        generation.notify()
        try:
            if generation.is_async:
                await self._consume_async(generation)
            else:
                await self._consume_sync(generation)
        except asyncio.CancelledError:
            message.status = "stopped"
        except Exception as error:  # a model's failure is shown, not raised
            message.status = "failed"
            message.error = describe_error(error)
        else:
            generation.text_complete.set()  # subscribers send the rest at once
            if generation.stop_requested:
                message.status = "stopped"
            else:
                if await self._log(generation):
                    if generation.name_conversation:
                        await self._name_conversation(generation)
                    # done only now, so that a page drawn while the title
                    # was being written still connects and gets it
                    message.status = "done"
        message.text = generation.text()
        if message.status != "done":
            generation.dirty = True  # the final status must reach the database
            await self._save([generation])
        generation.finished_at = time.monotonic()
        generation.text_complete.set()
        generation.notify()
        self._forget_finished()

    async def _consume_async(self, generation: Generation) -> None:
        # The hot loop of a fast model: a few attribute lookups per chunk, and
        # the clock read only every CHECK_EVERY chunks.
        append = generation.append
        monotonic = time.monotonic
        last_yield = monotonic()
        count = 0
        events = generation.response.astream_events()
        async with contextlib.aclosing(events):
            async for event in events:
                chunk = event.chunk
                if chunk and event.type == "text":
                    append(chunk)
                count += 1
                if count % CHECK_EVERY == 0:
                    now = monotonic()
                    if now - last_yield > YIELD_EVERY:
                        last_yield = now
                        await asyncio.sleep(0)

    async def _consume_sync(self, generation: Generation) -> None:
        """Run a sync-only model in a thread of its own, chunks bridged to
        the event loop in batches."""
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        lock = threading.Lock()
        pending: list[str] = []
        scheduled = False

        def drain():
            nonlocal scheduled
            with lock:
                chunks = pending[:]
                pending.clear()
                scheduled = False
            for chunk in chunks:
                generation.append(chunk)

        def settle(error):
            if finished.done():
                return
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)

        def work():
            nonlocal scheduled
            error = None
            iterator = iter(generation.response)
            try:
                for chunk in iterator:
                    with lock:
                        pending.append(chunk)
                        if not scheduled:
                            scheduled = True
                            loop.call_soon_threadsafe(drain)
                    if generation.stop_requested:
                        break
            except BaseException as e:  # handed to the event loop
                error = e
            finally:
                iterator.close()
                loop.call_soon_threadsafe(drain)
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=work, name=f"llm-{generation.id}", daemon=True).start()
        try:
            await asyncio.shield(finished)
        except asyncio.CancelledError:
            # Stop: the thread ends after the chunk it is waiting for.
            generation.stop_requested = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(finished), 10)
            drain()
            raise

    async def _log(self, generation: Generation) -> bool:
        message = generation.message
        response = generation.response
        try:
            await self.db.execute_write_fn(
                lambda conn: storage.log_response(conn, response, message.id)
            )
        except Exception as error:
            message.status = "failed"
            message.error = "The reply could not be logged: " + describe_error(error)
            return False
        message.input_tokens = response.input_tokens
        message.output_tokens = response.output_tokens
        duration = response.duration_ms()
        message.duration_ms = await duration if generation.is_async else duration
        return True

    async def _name_conversation(self, generation: Generation) -> None:
        """Name the conversation with a model, before the done event goes out
        so that it carries the new title."""
        title_model = settings(self.datasette).title_model
        if title_model is False:
            return  # keep the name llm gave it: the first prompt, shortened
        message = generation.message
        try:
            title = await asyncio.wait_for(
                generate_title(title_model or message.model_id, message.prompt, generation.text()),
                TITLE_TIMEOUT,
            )
            if title:
                await self.db.execute_write_fn(
                    lambda conn: storage.rename(conn, message.conversation_id, title)
                )
                generation.new_title = title
        except Exception as error:  # a title is a nicety: never fail a reply for it
            logger.warning("Could not name conversation %s: %s", message.conversation_id, error)

    # Stopping

    async def stop(self, mid: str) -> bool:
        """Stop a generation of this process; False if it is not ours."""
        generation = self.running.get(mid)
        if generation is None:
            return False
        if not generation.done:
            generation.stop_requested = True
            generation.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(generation.task)
        return True

    # Saving the text so far, and learning of stops asked of other workers

    def _ensure_saver(self) -> None:
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_periodically())

    async def _save_periodically(self) -> None:
        while any(not g.done for g in self.running.values()):
            await asyncio.sleep(SAVE_INTERVAL)
            active = [g for g in self.running.values() if not g.done]
            try:
                stops = await self._save(active, heartbeat=True)
            except Exception:
                continue  # the next round tries again
            for mid in stops:
                if mid in self.running:
                    asyncio.create_task(self.stop(mid))

    async def _save(self, generations, heartbeat=False) -> list[str]:
        rows = []
        for generation in generations:
            if generation.dirty or generation.done:
                generation.dirty = False
                message = generation.message
                rows.append((message.id, message.status, message.error, generation.text()))

        def write(conn):
            if rows:
                storage.save_progress(conn, rows)
            return storage.heartbeat(conn, WORKER) if heartbeat else []

        if not rows and not heartbeat:
            return []
        return await self.db.execute_write_fn(write)

    def _forget_finished(self) -> None:
        now = time.monotonic()
        for mid in [
            mid
            for mid, g in self.running.items()
            if g.done and now - g.finished_at > KEEP_FINISHED
        ]:
            del self.running[mid]

    # Reading

    def settle(self, message: Message) -> Message:
        """Bring a message read from the database up to date: the text and
        status of its generation if it runs here; interrupted if the process
        that generated it died."""
        generation = self.running.get(message.id)
        if generation is not None:
            message.text = generation.text()
            message.status = generation.message.status
            message.error = generation.message.error
        elif message.status in storage.STREAMING and self._died(message):
            message.status = "interrupted"
        return message

    def _died(self, message: Message) -> bool:
        if not message.worker or message.worker == WORKER:
            return True  # ours, yet not running here: from before a restart
        host, pid, _token = (message.worker.split(":") + ["", "", ""])[:3]
        if host == HOST and (str(os.getpid()) == pid or not _pid_alive(pid)):
            return True
        return _age_seconds(message.updated_utc) > STALE_AFTER


def generations(datasette) -> Generations:
    registry = getattr(datasette, "_llm_htmx_generations", None)
    if registry is None:
        registry = datasette._llm_htmx_generations = Generations(datasette)
    return registry


@functools.lru_cache(maxsize=256)
def resolve_model(model_id: str):
    """(model, is_async): the async variant where the model has one.

    Plugins register their models once, at startup: asking them all again
    on every request costs a millisecond."""
    try:
        return llm.get_async_model(model_id), True
    except llm.UnknownModelError:
        return llm.get_model(model_id), False


def describe_error(error: BaseException) -> str:
    text = str(error) or error.__class__.__name__
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    return valid_text(text)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _age_seconds(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    then = datetime.datetime.fromisoformat(timestamp)
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()
