"""llm's own tables, and the one place that uses llm's internals.

llm 0.32 and later log to ``threads``/``turns``/``messages``/``parts``;
earlier versions wrote ``conversations``/``responses``. Both are read here,
so a conversation made by any version of the `llm` CLI opens in the
browser. Writes go through llm's own code (``log_to_db``); the one write by
hand is a conversation's name.

llm internals used (an llm upgrade should need changes here only):
``llm.logs.LogStore`` (creating a thread to name), ``llm.cli.load_conversation``
(the history of a conversation, as ``llm chat --cid`` rebuilds it), and a
response's ``_chunks``/``_stream_events`` (made valid UTF-8 before logging).
"""

import json

import sqlite_utils
from llm.cli import load_conversation as _llm_load_conversation

from ..safe_text import valid_text
from .records import Message


def log(conn, response) -> None:
    """Log a finished response with llm's own ``log_to_db``."""
    _valid_chunks(response)
    response.log_to_db(sqlite_utils.Database(conn))


def _valid_chunks(response) -> None:
    """llm logs the chunks it kept itself: a lone surrogate from the model
    would fail the write (and llm's hashing). Replace it, as the text on
    screen did."""
    response._chunks = [valid_text(c) if isinstance(c, str) else c for c in response._chunks]
    for stream_event in getattr(response, "_stream_events", []):
        if isinstance(getattr(stream_event, "chunk", None), str):
            stream_event.chunk = valid_text(stream_event.chunk)


def load_conversation(path: str, cid: str, is_async: bool):
    """The llm conversation ``cid`` with its history, as `llm chat --cid`
    rebuilds it. Blocking: run it in a thread."""
    return _llm_load_conversation(cid, async_=is_async, database=path)


def is_logged(conn, cid: str) -> bool:
    """Has llm logged anything in this conversation (either schema)?"""
    return bool(
        conn.execute(
            "select 1 from threads where id = ? union all"
            " select 1 from conversations where id = ?",
            [cid, cid],
        ).fetchone()
    )


def rename(conn, cid: str, name: str) -> None:
    """The one write to llm's tables by hand: a conversation's name."""
    from llm.logs import LogStore

    LogStore(sqlite_utils.Database(conn)).ensure_thread(cid, name=name)
    conn.execute("update threads set name = ? where id = ?", [name, cid])
    conn.execute("update conversations set name = ? where id = ?", [name, cid])


def names(conn, cid: str) -> tuple[tuple | None, tuple | None]:
    """(name, datetime_utc) of the thread and (name, model) of the pre-0.32
    conversation, where they exist."""
    thread = conn.execute(
        "select name, datetime_utc from threads where id = ?", [cid]
    ).fetchone()
    legacy = conn.execute(
        "select name, model from conversations where id = ?", [cid]
    ).fetchone()
    return thread, legacy


def latest_turn(conn, cid: str) -> tuple[str, str] | None:
    """(model, id) of the newest logged turn of a conversation, either schema."""
    return conn.execute(
        """select model, id from (
            select model, id from (select model, id from turns where thread_id = :cid
                                   order by id desc limit 1)
            union all
            select model, id from (select model, id from responses where conversation_id = :cid
                                   order by id desc limit 1)
        ) order by id desc limit 1""",
        {"cid": cid},
    ).fetchone()


def legacy_messages(conn, cid: str) -> list[Message]:
    """Responses as llm before 0.32 logged them."""
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


def thread_messages(conn, cid: str) -> list[Message]:
    """Turns as llm 0.32 and later log them: each turn's own prompt is the
    run of user messages at the end of its input chain."""
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
        {
            piece["fragment"]
            for _, payload in refs
            for piece in payload.get("text_ref", [])
            if "fragment" in piece
        }
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
