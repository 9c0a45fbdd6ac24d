"""logs.db: attaching it, the plugin's own tables, and reading conversations.

Finished replies are written by llm's own ``log_to_db``; this module reads them
back from both generations of llm's tables: ``threads``/``turns``/``messages``/
``parts`` (llm 0.32 and later) and ``conversations``/``responses`` (before).
"""

import datetime
import json
import os
import sqlite3
from dataclasses import dataclass, field

import llm.migrations
import sqlite_utils
from datasette.database import Database

from .config import DATABASE_NAME, settings
from .safe_text import search_terms, valid_text

# Statuses of a message that has no logged response (yet).
STREAMING = ("pending", "running")
ENDED = ("stopped", "failed", "interrupted")

PLUGIN_SCHEMA = """
create table if not exists initiated (
    id text primary key,
    model_id text,
    prompt text,
    system text,
    actor_id text,
    datetime_utc text,
    options_json text
);
create index if not exists initiated_actor_id on initiated (actor_id, id);

-- Messages in flight, or that ended without a logged response. A row is
-- deleted in the transaction that logs its response with llm's log_to_db.
create table if not exists unlogged_messages (
    id text primary key,
    conversation_id text not null,
    model_id text not null,
    prompt text not null,
    system text,
    options_json text,
    status text not null,
    text text not null default '',
    error text,
    actor_id text,
    worker text,
    stop_requested integer not null default 0,
    datetime_utc text not null,
    updated_utc text not null
);
create index if not exists unlogged_messages_conversation_id
    on unlogged_messages (conversation_id);
create index if not exists unlogged_messages_worker
    on unlogged_messages (worker, status);

-- llm never indexed the pre-0.32 responses by conversation, and the list
-- and the conversation page ask for exactly that.
create index if not exists llm_htmx_responses_conversation_id
    on responses (conversation_id);
"""


def utcnow() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclass
class Message:
    """One prompt and its reply: an llm response once it is logged."""

    id: str
    conversation_id: str
    model_id: str
    prompt: str
    system: str | None
    text: str
    status: str  # done, pending, running, stopped, failed or interrupted
    datetime_utc: str
    error: str | None = None
    options: dict = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_ms: int | None = None
    worker: str | None = None
    updated_utc: str | None = None

    @property
    def streaming(self) -> bool:
        return self.status in STREAMING

    @property
    def retryable(self) -> bool:
        return self.status in ENDED


@dataclass
class Conversation:
    id: str
    name: str | None
    model_id: str | None
    actor_id: str | None
    datetime_utc: str | None
    messages: list[Message]

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        if self.messages:
            return self.messages[0].prompt[:60] or "Untitled"
        return "Untitled"


def database_name(datasette) -> str:
    """The name logs.db has in Datasette: "llm", or the name the user gave
    it by attaching the file themselves."""
    return getattr(datasette, "_llm_htmx_database_name", DATABASE_NAME)


def llm_database(datasette) -> Database:
    return datasette.get_database(database_name(datasette))


def _attached_as(datasette, path) -> str | None:
    for name, db in datasette.databases.items():
        if db.path and os.path.exists(db.path) and path.exists():
            if os.path.samefile(db.path, path):
                return name
    return None


async def prepare(datasette) -> None:
    """Attach logs.db as the database "llm" (unless the file is attached
    already) and bring its tables up to date."""
    path = settings(datasette).database_path
    name = _attached_as(datasette, path)
    if name is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()  # create the file if it is new
        # add_database renames on a clash: keep the name it chose
        name = datasette.add_database(
            Database(datasette, path=str(path), is_mutable=True), name=DATABASE_NAME
        ).name
    datasette._llm_htmx_database_name = name
    await llm_database(datasette).execute_write_fn(migrate)


def migrate(conn) -> None:
    llm.migrations.migrate(sqlite_utils.Database(conn))
    # Statement by statement: executescript() would commit Datasette's
    # transaction half way.
    for statement in PLUGIN_SCHEMA.split(";\n"):
        if statement.strip():
            conn.execute(statement)


# Writes: each runs on Datasette's single write connection.


def record_start(conn, *, message: Message, actor_id: str | None, new: bool) -> None:
    if new:
        conn.execute(
            "insert into initiated (id, model_id, prompt, system, actor_id,"
            " datetime_utc, options_json) values (?, ?, ?, ?, ?, ?, ?)",
            [
                message.conversation_id,
                message.model_id,
                message.prompt,
                message.system,
                actor_id,
                message.datetime_utc,
                json.dumps(message.options),
            ],
        )
    conn.execute(
        "insert into unlogged_messages (id, conversation_id, model_id, prompt,"
        " system, options_json, status, text, actor_id, worker, datetime_utc,"
        " updated_utc) values (?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?)",
        [
            message.id,
            message.conversation_id,
            message.model_id,
            message.prompt,
            message.system,
            json.dumps(message.options),
            message.status,
            actor_id,
            message.worker,
            message.datetime_utc,
            message.datetime_utc,
        ],
    )


def save_progress(conn, rows: list[tuple[str, str, str | None, str]]) -> None:
    """rows: (id, status, error, text) for messages still unlogged."""
    now = utcnow()
    conn.executemany(
        "update unlogged_messages set status = ?, error = ?, text = ?,"
        " updated_utc = ? where id = ?",
        [(status, error, text, now, mid) for mid, status, error, text in rows],
    )


def heartbeat(conn, worker: str) -> list[str]:
    """Mark this worker's running messages as alive; return stop requests."""
    conn.execute(
        "update unlogged_messages set updated_utc = ? where worker = ?"
        " and status in ('pending', 'running')",
        [utcnow(), worker],
    )
    return [
        row[0]
        for row in conn.execute(
            "select id from unlogged_messages where worker = ? and stop_requested = 1"
            " and status in ('pending', 'running')",
            [worker],
        )
    ]


def log_response(conn, response, mid: str) -> None:
    """Log a finished response with llm's own code; the message is no longer
    unlogged."""
    _valid_chunks(response)
    response.log_to_db(sqlite_utils.Database(conn))
    conn.execute("delete from unlogged_messages where id = ?", [mid])


def _valid_chunks(response) -> None:
    """llm logs the chunks it kept itself: a lone surrogate from the model
    would fail the write (and llm's hashing). Replace it, as the text on
    screen did. (llm internals: the chunk list and the stream events.)"""
    response._chunks = [valid_text(c) if isinstance(c, str) else c for c in response._chunks]
    for stream_event in getattr(response, "_stream_events", []):
        if isinstance(getattr(stream_event, "chunk", None), str):
            stream_event.chunk = valid_text(stream_event.chunk)


def rename(conn, cid: str, name: str) -> None:
    """The one write to llm's tables by hand: a conversation's name."""
    from llm.logs import LogStore

    LogStore(sqlite_utils.Database(conn)).ensure_thread(cid, name=name)
    conn.execute("update threads set name = ? where id = ?", [name, cid])
    conn.execute("update conversations set name = ? where id = ?", [name, cid])


# Reads.


def read_conversation(conn, cid: str, with_messages: bool = True) -> Conversation | None:
    """The whole conversation, from every table that can hold part of it;
    without its messages, just who owns it and what it is called."""
    thread = conn.execute(
        "select name, datetime_utc from threads where id = ?", [cid]
    ).fetchone()
    legacy = conn.execute(
        "select name, model from conversations where id = ?", [cid]
    ).fetchone()
    initiated = conn.execute(
        "select model_id, actor_id, datetime_utc, prompt from initiated where id = ?",
        [cid],
    ).fetchone()
    messages = {}
    if with_messages:
        messages = {m.id: m for m in _legacy_messages(conn, cid)}
        messages.update((m.id, m) for m in _thread_messages(conn, cid))
        for message in _unlogged_messages(conn, "conversation_id = ?", [cid]):
            messages.setdefault(message.id, message)
    if not (thread or legacy or initiated or messages):
        return None
    ordered = sorted(messages.values(), key=lambda m: m.id)
    name = (thread and thread[0]) or (legacy and legacy[0]) or None
    model_id = (
        (initiated and initiated[0])
        or (ordered and ordered[0].model_id)
        or (legacy and legacy[1])
        or None
    )
    started = (
        (initiated and initiated[2])
        or (ordered and ordered[0].datetime_utc)
        or (thread and thread[1])
        or None
    )
    return Conversation(
        id=cid,
        name=name,
        model_id=model_id,
        actor_id=initiated[1] if initiated else None,
        datetime_utc=started,
        messages=ordered,
    )


def continuation(conn, cid: str) -> tuple[str | None, list[Message]]:
    """What a follow-up needs without reading the whole conversation: the
    model of the latest message, and the messages not yet logged."""
    unlogged = _unlogged_messages(conn, "conversation_id = ?", [cid])
    latest = conn.execute(
        """select model, id from (
            select model, id from (select model, id from turns where thread_id = :cid
                                   order by id desc limit 1)
            union all
            select model, id from (select model, id from responses where conversation_id = :cid
                                   order by id desc limit 1)
            union all
            select model_id, id from (select model_id, id from unlogged_messages
                                      where conversation_id = :cid order by id desc limit 1)
        ) order by id desc limit 1""",
        {"cid": cid},
    ).fetchone()
    return (latest[0] if latest else None), unlogged


def read_message(conn, cid: str, mid: str) -> Message | None:
    """One message. While it is in flight it is one row of unlogged_messages,
    found by key: a stream that follows it by polling pays that, not the
    whole conversation. Once logged, it is read with its conversation."""
    unlogged = _unlogged_messages(conn, "id = ? and conversation_id = ?", [mid, cid])
    if unlogged:
        return unlogged[0]
    conversation = read_conversation(conn, cid)
    if conversation is None:
        return None
    for message in conversation.messages:
        if message.id == mid:
            return message
    return None



def _unlogged_messages(conn, where: str, params: list) -> list[Message]:
    rows = conn.execute(
        "select id, conversation_id, model_id, prompt, system, options_json,"
        " status, text, error, worker, datetime_utc, updated_utc"
        f" from unlogged_messages where {where} order by id",
        params,
    ).fetchall()
    return [
        Message(
            id=row[0],
            conversation_id=row[1],
            model_id=row[2],
            prompt=row[3],
            system=row[4],
            options=json.loads(row[5] or "{}"),
            status=row[6],
            text=row[7],
            error=row[8],
            worker=row[9],
            datetime_utc=row[10],
            updated_utc=row[11],
        )
        for row in rows
    ]


def _legacy_messages(conn, cid: str) -> list[Message]:
    rows = conn.execute(
        "select id, model, prompt, system, response, options_json, datetime_utc,"
        " input_tokens, output_tokens, duration_ms"
        " from responses where conversation_id = ? order by id",
        [cid],
    ).fetchall()
    return [
        Message(
            id=row[0],
            conversation_id=cid,
            model_id=row[1],
            prompt=row[2] or "",
            system=row[3] or None,
            text=row[4] or "",
            status="done",
            options=json.loads(row[5] or "{}"),
            datetime_utc=row[6],
            input_tokens=row[7],
            output_tokens=row[8],
            duration_ms=row[9],
        )
        for row in rows
    ]


# Every message on the way from each turn's tip back to the root, with its
# text parts: three queries for a whole thread, however long.
CHAIN_SQL = """
with recursive chain(hash) as (
    select tip_message_hash from turns where thread_id = :cid
    union
    select messages.parent_hash from messages join chain on messages.hash = chain.hash
    where messages.parent_hash is not null
)
select messages.hash, messages.parent_hash, messages.role,
       parts.type, parts.text, parts.payload
from chain
join messages on messages.hash = chain.hash
left join parts on parts.message_hash = messages.hash
order by messages.hash, parts.position
"""


def _thread_messages(conn, cid: str) -> list[Message]:
    turns = conn.execute(
        "select id, model, parent_message_hash, tip_message_hash, options_json,"
        " datetime_utc, input_tokens, output_tokens, duration_ms"
        " from turns where thread_id = ? order by id",
        [cid],
    ).fetchall()
    if not turns:
        return []
    parents: dict[str, str | None] = {}
    roles: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    refs: list[tuple[str, dict]] = []
    for hash_, parent, role, part_type, text, payload in conn.execute(
        CHAIN_SQL, {"cid": cid}
    ):
        parents[hash_] = parent
        roles[hash_] = role
        pieces = texts.setdefault(hash_, [])
        if part_type != "text":
            continue
        if text is not None:
            pieces.append(text)
        elif payload:
            # Text that borrows fragments is stored as literal pieces and
            # fragment ids; put it back together below.
            pieces.append("")
            refs.append((hash_, json.loads(payload)))
    if refs:
        _resolve_fragment_refs(conn, texts, refs)

    def chain(tip):
        hashes = []
        while tip is not None and tip in parents:
            hashes.append(tip)
            tip = parents[tip]
        hashes.reverse()
        return hashes

    def text_of(hashes, role):
        return "".join("".join(texts[h]) for h in hashes if roles[h] == role)

    messages = []
    for (
        tid,
        model,
        parent,
        tip,
        options_json,
        when,
        input_tokens,
        output_tokens,
        duration_ms,
    ) in turns:
        inputs = chain(parent)
        outputs = chain(tip)[len(inputs) :]
        # The turn's own input is the run of user and tool messages at the
        # end of its input chain: what comes before belongs to earlier turns.
        boundary = len(inputs)
        while boundary and roles[inputs[boundary - 1]] in ("user", "tool"):
            boundary -= 1
        system = None
        if inputs and roles[inputs[0]] == "system":
            system = text_of(inputs[:1], "system")
        messages.append(
            Message(
                id=tid,
                conversation_id=cid,
                model_id=model,
                prompt=text_of(inputs[boundary:], "user"),
                system=system or None,
                text=text_of(outputs, "assistant"),
                status="done",
                options=json.loads(options_json or "{}"),
                datetime_utc=when,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                duration_ms=duration_ms,
            )
        )
    return messages


def _resolve_fragment_refs(conn, texts, refs) -> None:
    ids = sorted(
        {piece["fragment"] for _, p in refs for piece in p.get("text_ref", []) if "fragment" in piece}
    )
    contents = {}
    if ids:
        placeholders = ",".join("?" * len(ids))
        contents = dict(
            conn.execute(
                f"select id, content from fragments where id in ({placeholders})", ids
            ).fetchall()
        )
    for hash_, payload in refs:
        text = "".join(
            piece["literal"] if "literal" in piece else contents.get(piece["fragment"], "")
            for piece in payload.get("text_ref", [])
        )
        pieces = texts[hash_]
        pieces[pieces.index("")] = text


# The list of conversations on /-/llm, newest first, by keyset pagination.

# Each table gives its newest ids by its primary key, so a page costs the
# same however many conversations there are.
LIST_IDS_SQL = """
select id from (
    select id from (select id from threads where (:before is null or id < :before)
                    order by id desc limit :limit)
    union
    select id from (select id from conversations where (:before is null or id < :before)
                    order by id desc limit :limit)
    union
    select id from (select id from initiated where (:before is null or id < :before)
                    order by id desc limit :limit)
)
order by id desc
limit :limit
"""

LIST_OWN_IDS_SQL = """
select id from initiated
where actor_id = :actor_id and (:before is null or id < :before)
order by id desc
limit :limit
"""

# Search: the hits in llm's own full-text indexes (both generations of
# tables), newest hit first, each with the join that keeps an actor to their
# own conversations. FTS5 walks its index in rowid order, so a page of
# results stops reading after a page of conversations, however many match.
SEARCH_HITS_SQL = (
    (
        """
        select turns.thread_id
        from turn_search_fts
        join turn_search on turn_search.id = turn_search_fts.rowid
        join turns on turns.id = turn_search.turn_id
        {own}
        where turn_search_fts match :query
        order by turn_search_fts.rowid desc
        """,
        "join initiated on initiated.id = turns.thread_id and initiated.actor_id = :actor_id",
    ),
    (
        """
        select responses.conversation_id
        from responses_fts
        join responses on responses.rowid = responses_fts.rowid
        {own}
        where responses_fts match :query
        order by responses_fts.rowid desc
        """,
        "join initiated on initiated.id = responses.conversation_id"
        " and initiated.actor_id = :actor_id",
    ),
)


def _search_ids(conn, params, *, everyone: bool, before: str | None, limit: int) -> list[str]:
    """Conversations in the order of their newest matching turn.

    ``before`` is the last conversation of the previous page: the walk skips
    to it, so a conversation with many hits is listed once, on the page of
    its newest hit."""
    seen: set[str] = set()
    ids: list[str] = []
    passed = before is None
    for sql, own in SEARCH_HITS_SQL:
        for (cid,) in conn.execute(sql.format(own="" if everyone else own), params):
            if cid is None or cid in seen:
                continue
            seen.add(cid)
            if not passed:
                passed = cid == before
            else:
                ids.append(cid)
                if len(ids) == limit:
                    return ids
    return ids


LIST_DETAILS_SQL = """
select ids.value as id,
    coalesce(threads.name, conversations.name) as name,
    coalesce(
        initiated.model_id,
        (select model from turns where thread_id = ids.value order by id limit 1),
        conversations.model
    ) as model_id,
    (select count(*) from turns where thread_id = ids.value)
    + (select count(*) from responses
        where conversation_id = ids.value
        and not exists (select 1 from turns where turns.id = responses.id)) as replies,
    coalesce(
        initiated.datetime_utc,
        (select datetime_utc from turns where thread_id = ids.value order by id limit 1),
        (select datetime_utc from responses where conversation_id = ids.value
            order by id limit 1),
        threads.datetime_utc
    ) as datetime_utc,
    initiated.prompt as first_prompt,
    initiated.actor_id as actor_id
from json_each(:ids) as ids
left join threads on threads.id = ids.value
left join conversations on conversations.id = ids.value
left join initiated on initiated.id = ids.value
order by ids.key
"""


@dataclass
class ListedConversation:
    id: str
    name: str
    model_id: str | None
    replies: int
    datetime_utc: str | None
    actor_id: str | None


def fts_query(text: str) -> str:
    """Each word a quoted phrase: what people type never breaks FTS syntax."""
    return " ".join(
        '"' + word.replace('"', '""') + '"' for word in search_terms(text).split()
    )


def list_conversations(
    conn,
    *,
    actor_id: str | None,
    everyone: bool,
    before: str | None,
    limit: int,
    query: str | None = None,
) -> tuple[list[ListedConversation], str | None]:
    """A page of conversations and the id to continue after: newest first,
    or for a search, by newest matching turn."""
    params = {"before": before, "limit": limit + 1, "actor_id": actor_id}
    if query and fts_query(query):
        params["query"] = fts_query(query)
        ids = _search_ids(conn, params, everyone=everyone, before=before, limit=limit + 1)
    else:
        sql = LIST_IDS_SQL if everyone else LIST_OWN_IDS_SQL
        ids = [row[0] for row in conn.execute(sql, params)]
    next_before = ids[limit - 1] if len(ids) > limit else None
    ids = ids[:limit]
    rows = conn.execute(LIST_DETAILS_SQL, {"ids": json.dumps(ids)}).fetchall()
    listed = [
        ListedConversation(
            id=row[0],
            name=row[1] or (row[5] or "").strip()[:60] or "Untitled",
            model_id=row[2],
            replies=row[3],
            datetime_utc=row[4],
            actor_id=row[6],
        )
        for row in rows
    ]
    return listed, next_before
