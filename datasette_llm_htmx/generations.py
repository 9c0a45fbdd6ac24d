"""Generation belongs to the server, not to a connection: the replies of
this process, from start to their last word in the database.

A POST starts a Generation (generation.py): the model runs in a task of
this process, and
streams only watch it (following.py). However many come and go, the model
runs once; only Stop, a timeout or shutdown end it early. The text so far
is saved about once a second, so a reload, another worker process or a
restart after a crash can still show it; a finished reply is logged with
llm's own ``log_to_db``.

Whatever the model or the database does, the end of a generation is
reached and told to every stream: the model task is never awaited past a
stop or a timeout (a model may ignore cancellation), and the last save
retries until it lands.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

import llm

from . import liveness, llm_layer, memory, permissions, shutdown, sql_tool, titles
from .catalog import resolve_model
from .config import settings
from .errors import ShownError
from .events import ConversationStarted, PromptSent
from .generation import Generation, describe_error, run_model
from .store import llm_logs, unlogged
from .store.database import llm_database, read_at_once, write_until_done, write_within
from .store.records import Attachment, Message
from .sync_bridge import threads_alive

logger = logging.getLogger(__name__)

SAVE_INTERVAL = 1.0  # seconds between saves of the text so far
START_WAIT = 8.0  # seconds a start waits for another process's write lock
LOG_WAIT = 10.0  # ... and the logging of a finished reply
KEEP_FINISHED = 120.0  # seconds a saved, finished generation still answers streams
MAX_SYNC_THREADS = 32  # sync model threads still finishing a chunk after a stop
CONVERSATIONS_KEPT = 64
CONVERSATION_KEPT_UP_TO = 200_000  # characters of a reply whose conversation stays cached


class TooBusy(ShownError):
    status = 429


@dataclass
class Fork:
    """Where a new thread of a conversation starts: at message ``tip`` of
    thread ``forked_from`` (None: at the root), or, for a pre-0.32
    conversation, after the ``legacy_history`` it is given."""

    tip: str | None
    forked_from: str
    root_id: str
    name: str | None
    legacy_history: list | None = None


class Generations:
    """The generations of this process, for one Datasette instance."""

    def __init__(self, datasette):
        self.datasette = datasette
        # every reply of this process: in flight, or finished a little while
        # ago (still answering streams that connect late)
        self.replies: dict[str, Generation] = {}
        self.conversations: dict[str, object] = {}
        self.shutting_down = asyncio.Event()
        self._saver: asyncio.Task | None = None
        self._worker_registered = False
        # model tasks told to stop that have not (a model can ignore it)
        self.detached: set[asyncio.Task] = set()
        self._watching = False
        self.running = 0  # replies whose model runs here now
        self.busiest = 0  # the most at once since memory was last given back

    @property
    def db(self):
        return llm_database(self.datasette)

    def in_flight(self) -> list[Generation]:
        return [g for g in self.replies.values() if not g.finished]

    # Starting

    async def start(
        self,
        message: Message,
        *,
        actor: dict | None,
        new_conversation: bool,
        uploads=(),
        resend: bool = False,
        fork: "Fork | None" = None,
        new_system: bool = False,
    ) -> Generation:
        """Record the message and start generating its reply. Raises a
        ShownError (the prompt is kept) if it cannot start now.

        ``uploads`` are (llm.Attachment, file name) sent with the prompt;
        ``resend`` sends the fragments and attachments the message already
        names (a retry, a regenerate, an edit), read back from logs.db;
        ``fork`` starts the message in a new thread forked from another (its
        conversation_id); ``new_system`` puts its system prompt in the
        history from here on (a change mid-conversation)."""
        actor_id = permissions.actor_id(actor)
        self._check_capacity(actor_id)
        shutdown.watch_signals(self)
        model, is_async = resolve_model(message.model_id)
        explicit = None
        if fork is not None:
            conversation = await self._forked_conversation(message.conversation_id, fork, model)
        else:
            conversation = await self._conversation(message.conversation_id, model, is_async)
            if new_system:
                explicit = [*llm_logs.history_of(conversation), llm.system(message.system)]
        attachments = [attachment for attachment, _name in uploads]
        if resend and message.attachments:
            attachments = await read_at_once(
                self.db,
                lambda conn: llm_logs.llm_attachments(conn, [a.id for a in message.attachments]),
            )
        if not resend:
            message.attachments = [
                Attachment(a.id(), a.type, len(a.content or b""), name=name) for a, name in uploads
            ]
        prompt = dict(
            system=message.system,
            options=message.options,
            attachments=attachments or None,
            fragments=[llm.Fragment(f.content, f.source or "") for f in message.fragments] or None,
            messages=explicit,
        )
        rest = None
        tools = sql_tool.tools_for(self.datasette, actor) if is_async and model.supports_tools else []
        if is_async and llm_layer.installed(self.datasette):
            response, rest = await self._through_llm_layer(
                actor, model, conversation, message, {**prompt, "tools": tools or None}
            )
        elif tools:  # a chain runs the tools the model calls
            rest = conversation.chain(message.prompt, tools=tools, **prompt).responses()
            response = await rest.__anext__()
        else:
            response = conversation.prompt(message.prompt, **prompt)
        response.id = message.id  # the logged response keeps the message's id
        message.status = "pending"
        message.worker = liveness.THIS_WORKER.id
        generation = Generation(message, actor_id, response, is_async)
        generation.actor = actor
        generation.rest_of_chain = rest
        generation.running_now = lambda: self.running
        generation.name_conversation = new_conversation
        # The model starts while the record is written, so the first token
        # does not wait for the disk; if the record cannot be written in
        # time, the model is stopped and the user told.
        # resolved once the record has landed (True) or cannot (False): the
        # reply's log and last word wait for it, so they never come first
        generation.record_landed = asyncio.get_running_loop().create_future()
        self.replies[message.id] = generation
        self.running += 1
        self.busiest = max(self.busiest, self.running)
        generation.task = asyncio.create_task(self._run(generation))
        generation.task.add_done_callback(self._stopped_running)
        register = not self._worker_registered

        def record(conn):
            if register:
                unlogged.register_worker(conn, liveness.THIS_WORKER)
            for attachment, name in uploads:
                llm_logs.store_attachment(conn, attachment, name)
            if fork is not None:
                tip = fork.tip
                if fork.legacy_history is not None:
                    llm_logs.ensure_thread(conn, fork.forked_from, fork.name)
                    tip = llm_logs.store_messages(conn, fork.legacy_history)
                llm_logs.create_fork(conn, message.conversation_id, tip, fork.forked_from, fork.name)
            unlogged.record_start(
                conn, message, actor_id, new_conversation, fork.root_id if fork else None
            )

        try:
            await write_within(self.db, record, START_WAIT, grouped=True)
        except BaseException:
            generation.record_landed.set_result(False)
            if rest is not None:
                await rest.aclose()
            generation.stop_event.set()
            generation.end("failed", "not recorded")
            generation.saved = True  # nothing of it reached the database
            self._forget(generation)
            self.conversations.pop(message.conversation_id, None)
            raise
        self._worker_registered = True
        generation.recorded = True
        generation.record_landed.set_result(True)
        self._ensure_saver()
        cid = message.conversation_id
        if new_conversation:
            await self.datasette.track_event(ConversationStarted(actor, cid, message.model_id))
        await self.datasette.track_event(PromptSent(actor, cid, message.id, message.model_id))
        return generation

    async def _through_llm_layer(self, actor, model, conversation, message, prompt):
        """The prompt through datasette-llm's hooks: its first response, and
        the rest of the chain (which ends the hooks when it is read out).
        A hook that refuses (a budget) does it here, before anything is
        recorded or run, and the person sees why beside the form."""
        wrapped = await llm_layer.conversation(self.datasette, actor, model.model_id, conversation)
        responses = wrapped.chain(message.prompt, **prompt).responses()
        try:
            return await responses.__anext__(), responses
        except Exception as error:
            await responses.aclose()
            refusal = llm_layer.refusal(error)
            if refusal:
                raise ShownError(refusal, 429)
            raise ShownError(f"This prompt was refused: {describe_error(error)}", 403)

    async def _forked_conversation(self, thread_id: str, fork: "Fork", model):
        """An llm conversation for a new fork: the history up to where it
        forks, logged into the new thread."""
        history = fork.legacy_history
        if history is None:
            history = await read_at_once(self.db, lambda conn: llm_logs.history(conn, fork.tip))
        conversation = model.conversation()
        conversation.id = thread_id
        conversation.loaded_messages = history or None
        self.conversations[thread_id] = conversation
        return conversation

    def _check_capacity(self, actor_id) -> None:
        if self.shutting_down.is_set():
            raise ShownError("The server is restarting. Please send again in a moment.", 503)
        limit = settings(self.datasette).max_generations_per_actor
        mine = sum(1 for g in self.in_flight() if g.actor_id == actor_id)
        if mine >= limit:
            raise TooBusy(
                f"You already have {mine} replies being written, the most at once. "
                "Wait for one to finish, or stop one, then send again."
            )
        if threads_alive() >= MAX_SYNC_THREADS:
            raise TooBusy(
                "Too many local model runs are still finishing. Send again in a moment."
            )

    async def _conversation(self, cid: str, model, is_async: bool):
        """The llm conversation, with its history, for the next prompt.

        Kept in memory between prompts (a few dozen), as ``llm chat`` does;
        otherwise rebuilt from logs.db, as ``llm chat --cid`` does.
        """
        cached = self.conversations.pop(cid, None)
        latest = await read_at_once(self.db, lambda conn: llm_logs.latest_turn(conn, cid))
        if cached is not None and getattr(cached, "latest_turn", None) != (latest and latest[1]):
            cached = None  # someone else (the llm CLI) went on with it since
        if cached is not None and cached.model.model_id == model.model_id:
            self.conversations[cid] = cached  # most recently used last
            return cached
        if cached is not None:
            history = llm_logs.history_of(cached)  # the same history, another model
        else:
            history = await read_at_once(self.db, lambda conn: llm_logs.thread_history(conn, cid))
        if history is None:  # a pre-0.32 conversation: llm rebuilds it
            conversation = await asyncio.to_thread(
                llm_logs.load_conversation, self.db.path, cid, is_async
            )
            conversation.model = model
        else:
            conversation = model.conversation()
            conversation.id = cid
            conversation.loaded_messages = history or None
        conversation.latest_turn = latest and latest[1]
        self.conversations[cid] = conversation
        while len(self.conversations) > CONVERSATIONS_KEPT:
            self.conversations.pop(next(iter(self.conversations)))
        return conversation

    # Running

    async def _run(self, generation: Generation) -> None:
        """From the model's first chunk to the last word in the database.
        The end is always reached, whatever the model or database does."""
        try:
            config = settings(self.datasette)
            status, error = await run_model(
                generation,
                idle_timeout=config.idle_timeout,
                total_timeout=config.generation_timeout,
                detached=self.detached,
            )
            # a fast model can end before its record is written (they run
            # together): what follows the record waits for it
            if not await asyncio.shield(generation.record_landed):
                status, error = "failed", "not recorded"
            elif status == "done":
                status, error = await self._log(generation)
        except asyncio.CancelledError:
            status, error = "interrupted", None
        except Exception as e:  # a bug of ours must not wedge the reply
            logger.exception("Generation %s failed", generation.id)
            status, error = "failed", describe_error(e)
        finally:
            if not generation.finished:
                generation.end(status, error)
        if generation.length > CONVERSATION_KEPT_UP_TO:
            # llm's response keeps an event per chunk: rebuild this one from
            # logs.db at the next follow-up rather than hold it in memory
            self.conversations.pop(generation.message.conversation_id, None)
        generation.response = None
        if generation.name_conversation and generation.message.status == "done":
            generation.title = asyncio.ensure_future(self._name_conversation(generation))
        if generation.message.status != "done":
            await self._save_final(generation)
        generation.saved = True
        self._forget_later(generation)
        if generation.length > memory.WORTH_IT:
            memory.trim_soon()

    def _stopped_running(self, task) -> None:
        self.running -= 1
        if self.running == 0 and self.busiest >= memory.BUSY:
            # the end of a burst of replies: what they held goes back
            self.busiest = 0
            memory.trim_soon()

    async def _log(self, generation: Generation) -> tuple[str, str | None]:
        message = generation.message
        response = generation.response
        try:
            # a chain (tool calls) logs each of its responses, as llm does
            responses = [response, *generation.more_responses]
            cost = None
            if generation.is_async and llm_layer.installed(self.datasette):
                cost = await llm_layer.cost_nanocents(self.datasette, message.model_id, responses)
            await write_within(
                self.db,
                lambda conn: unlogged.log_response(conn, responses, message.id, cost),
                LOG_WAIT,
                grouped=True,
            )
        except ShownError as error:
            return "failed", "The reply could not be logged: " + error.message
        except Exception as error:
            return "failed", "The reply could not be logged: " + describe_error(error)
        conversation = self.conversations.get(message.conversation_id)
        if conversation is not None and conversation is response.conversation:
            conversation.latest_turn = message.id  # the cache stays in step
        message.input_tokens = response.input_tokens
        message.output_tokens = response.output_tokens
        message.cost_nanocents = cost
        duration = response.duration_ms()
        message.duration_ms = await duration if generation.is_async else duration
        return "done", None

    async def _save_final(self, generation: Generation) -> None:
        """A reply that ended unlogged: its status and text must reach the
        database, however long the lock is held or the disk stays full."""
        if not generation.recorded:
            return
        message = generation.message
        parts = unlogged.parts_json(message.parts)
        row = [(message.id, message.status, message.error, message.text, parts)]
        await write_until_done(
            self.db,
            lambda conn: unlogged.save(conn, row, liveness.THIS_WORKER.id),
            f"the end of reply {message.id}",
            give_up=self.shutting_down,
        )

    async def _name_conversation(self, generation: Generation) -> str | None:
        """Name the conversation after its first reply: the title follows
        the done event, it never holds it up."""
        title_model = settings(self.datasette).title_model
        if title_model is False:
            return None  # keep the name llm gave it: the first prompt, shortened
        message = generation.message
        title = await titles.title_for(
            title_model or message.model_id,
            message.prompt,
            message.text,
            message.system,
            through=self._llm_layer_for(generation.actor),
        )
        try:
            await write_within(
                self.db,
                lambda conn: llm_logs.rename(conn, message.conversation_id, title),
                LOG_WAIT,
            )
        except ShownError as error:
            logger.warning("Could not name %s: %s", message.conversation_id, error.message)
            return None
        return title

    def _llm_layer_for(self, actor):
        """How a one-off prompt of ``actor`` (a title) goes through
        datasette-llm's hooks; None without datasette-llm."""
        if not llm_layer.installed(self.datasette):
            return None

        def through(model_id, text, system):
            return llm_layer.title_prompt(self.datasette, actor, model_id, text, system)

        return through

    # Stopping

    async def stop(self, mid: str) -> bool:
        """Stop a generation of this process at once; False if it is not ours."""
        generation = self.replies.get(mid)
        if generation is None:
            return False
        generation.stop_event.set()
        deadline = time.monotonic() + 1.0
        while not generation.finished and time.monotonic() < deadline:
            await generation.changed(timeout=deadline - time.monotonic())
        return True

    async def shutdown(self) -> None:
        """The server is stopping: every reply in flight ends now, as
        interrupted, its streams are told, and one write records it."""
        if self.shutting_down.is_set():
            return
        self.shutting_down.set()
        ending = self.in_flight()
        for generation in ending:
            generation.end("interrupted")
            if generation.task:
                generation.task.cancel()
        rows = [(g.id, g.message.text) for g in ending if g.recorded]
        try:
            await write_within(
                self.db,
                lambda conn: unlogged.worker_stopped(conn, liveness.THIS_WORKER.id, rows),
                2.0,
            )
        except Exception as error:
            # After the restart these show as interrupted all the same: this
            # process is gone from the host.
            logger.warning("Could not record the shutdown: %s", error)

    # Saving the text so far; the heartbeat; stops asked by other workers

    def _ensure_saver(self) -> None:
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_periodically())

    async def _save_periodically(self) -> None:
        while self.in_flight() and not self.shutting_down.is_set():
            await asyncio.sleep(SAVE_INTERVAL)
            rows = []
            for generation in self.in_flight():
                state = (generation.length, len(generation.parts), generation.message.status)
                if generation.recorded and state != generation.saved_state:
                    generation.saved_state = state
                    message = generation.message
                    parts = unlogged.parts_json(generation.reply_parts())
                    rows.append((message.id, message.status, None, generation.text(), parts))
            try:
                stops = await self.db.execute_write_fn(
                    lambda conn: unlogged.save(conn, rows, liveness.THIS_WORKER.id)
                )
            except Exception as error:  # the next round tries again
                logger.warning("Saving progress failed: %s", error)
                for generation in self.in_flight():
                    generation.saved_state = None
                continue
            for mid in stops:
                if mid in self.replies:
                    self.replies[mid].stop_event.set()

    def _forget_later(self, generation: Generation) -> None:
        asyncio.get_running_loop().call_later(KEEP_FINISHED, self._forget, generation)

    def _forget(self, generation: Generation) -> None:
        if self.replies.get(generation.id) is generation:
            del self.replies[generation.id]

    # Reading

    def up_to_date(self, message: Message) -> Message:
        """Bring a message read from the database up to date: the text and
        status of its generation if it runs here; interrupted if the
        process that generated it is known to have ended."""
        generation = self.replies.get(message.id)
        if generation is not None and generation.saved and generation.more_responses:
            return message  # a tool chain, logged in its steps: as llm's log has it
        if generation is not None:
            message.text = generation.text()
            message.parts = generation.message.parts if generation.finished else generation.reply_parts()
            message.status = generation.message.status
            message.error = generation.message.error
            message.input_tokens = generation.message.input_tokens
            message.output_tokens = generation.message.output_tokens
            message.duration_ms = generation.message.duration_ms
            message.cost_nanocents = generation.message.cost_nanocents
        elif message.in_flight and liveness.has_ended(message, running_here=False):
            message.status = "interrupted"
        return message


def generations(datasette) -> Generations:
    """The registry of one Datasette instance."""
    registry = getattr(datasette, "_llm_htmx_generations", None)
    if registry is None:
        registry = datasette._llm_htmx_generations = Generations(datasette)
    return registry
