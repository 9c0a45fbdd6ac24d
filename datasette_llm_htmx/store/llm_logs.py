"""llm's own tables, and the one place that uses llm's internals.

llm 0.32 and later log to ``threads``/``turns``/``messages``/``parts``;
earlier versions wrote ``conversations``/``responses``. Both are read here,
so a conversation made by any version of the `llm` CLI opens in the
browser. Writes go through llm's own code (``log_to_db``); the one write by
hand is a conversation's name.

llm internals used (an llm upgrade should need changes here only):
``llm.logs.LogStore`` (creating a thread to name), ``llm.models._conversation_name``
(the name llm gives a thread), ``llm.logs.ensure_attachment``
(storing an upload as llm stores attachments), ``llm.cli.load_conversation``
(the history of a conversation, as ``llm chat --cid`` rebuilds it), and a
response's ``_chunks``/``_stream_events`` (made valid UTF-8 before logging).
The payloads of ``parts`` (text_ref, attachment, tool calls and results) are
read as llm 0.36 writes them.
"""

import json

import sqlite_utils
from llm.cli import load_conversation as _llm_load_conversation

from ..safe_text import valid_text
from .attachments import _rows


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


def default_name(prompt: str) -> str:
    """The name llm gives a conversation it logs: its first prompt, short."""
    from llm.models import _conversation_name

    return _conversation_name(prompt)


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


def store_attachment(conn, attachment, name: str | None) -> str:
    """Keep an uploaded file in llm's attachments table, where llm will log
    it (content-addressed: the same bytes are one row), before the reply is
    logged: a stopped or failed reply still shows what was sent."""
    from llm.logs import ensure_attachment

    attachment_id = ensure_attachment(sqlite_utils.Database(conn), attachment)
    if name:
        conn.execute(
            "insert or ignore into llm_htmx_attachment_names (id, name) values (?, ?)",
            [attachment_id, name],
        )
    return attachment_id


def llm_attachments(conn, ids: list[str]) -> list:
    """llm.Attachment objects for attachments already stored, to send them
    again (a retry): their bytes, or their path or URL as llm kept them."""
    import llm

    rows = {row[0]: row for row in _rows(conn, "select id, type, content, path, url from attachments", ids)}
    return [
        llm.Attachment(type=row[1], content=row[2], path=row[3], url=row[4])
        for row in (rows.get(i) for i in ids)
        if row is not None
    ]




def _store(conn):
    """llm's LogStore over a connection, without the migrations its
    constructor runs (they ran at startup; a read connection cannot run
    them)."""
    from llm.logs import LogStore

    store = LogStore.__new__(LogStore)
    store.db = sqlite_utils.Database(conn)
    return store


def history(conn, tip: str | None) -> list:
    """The llm messages from the root to ``tip``, resolved (fragment text
    and attachments put back): the history a fork continues from."""
    return _store(conn).load_chain(tip) if tip else []


def thread_history(conn, cid: str) -> list | None:
    """The history a thread continues from (its tip's chain, as
    ``llm chat --cid`` continues it); [] for a new conversation; None for
    one llm logged before 0.32 (its responses are not messages)."""
    row = conn.execute("select tip_message_hash from threads where id = ?", [cid]).fetchone()
    if row and row[0]:
        return history(conn, row[0])
    if conn.execute("select 1 from conversations where id = ?", [cid]).fetchone():
        return None
    return []


def history_of(conversation) -> list:
    """The llm messages an llm conversation would send before its next
    prompt (llm builds the same chain in ``_build_full_chain``)."""
    if conversation.loaded_messages:
        return list(conversation.loaded_messages)
    if conversation.responses:
        last = conversation.responses[-1]
        return [*last.prompt.messages, *last._messages_now()]
    return []


def create_fork(conn, thread_id: str, tip: str | None, forked_from: str, name: str | None) -> None:
    """A thread that starts at message ``tip`` of another, as llm's
    ``LogStore.fork`` makes one (a thread with no tip forks at the root)."""
    _store(conn).create_thread(name=name, tip=tip, forked_from=forked_from, id=thread_id)


def ensure_thread(conn, thread_id: str, name: str | None = None) -> None:
    _store(conn).ensure_thread(thread_id, name=name)


def store_messages(conn, messages) -> str | None:
    """Store a chain of llm messages (a pre-0.32 conversation's history,
    to fork it into the new tables); return its tip."""
    return _store(conn).ensure_chain(messages)


TURN_TABLES = ("turn_search", "turn_fragments", "turn_tools", "tool_instantiations")
LEGACY_RESPONSE_TABLES = (
    "prompt_fragments", "system_fragments", "prompt_attachments", "tool_responses",
    "tool_calls",
)


def delete_threads(conn, thread_ids: list[str]) -> None:
    """Delete threads and their turns (llm has no delete yet, llm #366): and
    the messages no other thread or turn leads to, with their parts. Shared
    messages, fragments and attachments another conversation uses stay.
    For a pre-0.32 conversation, its responses go too."""
    ids = json.dumps(thread_ids)
    in_threads = "(select value from json_each(:ids))"
    turns = [row[0] for row in conn.execute(f"select id from turns where thread_id in {in_threads}", {"ids": ids})]
    tips = {
        row[0]
        for row in conn.execute(
            f"select parent_message_hash from turns where thread_id in {in_threads}"
            f" union select tip_message_hash from turns where thread_id in {in_threads}"
            f" union select tip_message_hash from threads where id in {in_threads}",
            {"ids": ids},
        )
        if row[0]
    }
    turn_ids = json.dumps(turns)
    for table in TURN_TABLES:
        conn.execute(f"delete from {table} where turn_id in (select value from json_each(?))", [turn_ids])
    conn.execute("delete from turns where id in (select value from json_each(?))", [turn_ids])
    conn.execute(f"update threads set forked_from = null where forked_from in {in_threads}", {"ids": ids})
    conn.execute(f"delete from threads where id in {in_threads}", {"ids": ids})
    _delete_unreachable(conn, tips)
    # pre-0.32 tables
    responses = [
        row[0]
        for row in conn.execute(
            f"select id from responses where conversation_id in {in_threads}", {"ids": ids}
        )
    ]
    if responses:
        response_ids = json.dumps(responses)
        for table in LEGACY_RESPONSE_TABLES:
            conn.execute(
                f"delete from {table} where response_id in (select value from json_each(?))",
                [response_ids],
            )
        conn.execute(
            "delete from tool_results where response_id in (select value from json_each(?))",
            [response_ids],
        )
        conn.execute("delete from responses where id in (select value from json_each(?))", [response_ids])
    conn.execute(f"delete from conversations where id in {in_threads}", {"ids": ids})


def _delete_unreachable(conn, tips: set[str]) -> None:
    """Delete the messages on the way to ``tips`` that nothing left leads
    to: no thread or turn points at them or at a message after them."""
    candidates: list[str] = []
    seen = set()
    for tip in tips:
        hash_ = tip
        while hash_ and hash_ not in seen:
            seen.add(hash_)
            candidates.append(hash_)
            row = conn.execute("select parent_hash from messages where hash = ?", [hash_]).fetchone()
            hash_ = row[0] if row else None
    gone: set[str] = set()
    remaining = list(candidates)
    changed = True
    while changed:  # a message can go once everything after it has gone
        changed = False
        for hash_ in list(remaining):
            pointed_at = conn.execute(
                "select 1 from turns where parent_message_hash = :h or tip_message_hash = :h"
                " union all select 1 from threads where tip_message_hash = :h limit 1",
                {"h": hash_},
            ).fetchone()
            children = [row[0] for row in conn.execute("select hash from messages where parent_hash = ?", [hash_])]
            if pointed_at or any(child not in gone for child in children):
                continue
            gone.add(hash_)
            remaining.remove(hash_)
            changed = True
    if not gone:
        return
    hashes = json.dumps(sorted(gone))
    parts = "(select id from parts where message_hash in (select value from json_each(:hashes)))"
    attachment_ids = [
        row[0]
        for row in conn.execute(f"select attachment_id from part_attachments where part_id in {parts}", {"hashes": hashes})
    ]
    conn.execute(f"delete from part_attachments where part_id in {parts}", {"hashes": hashes})
    conn.execute(f"delete from part_fragments where part_id in {parts}", {"hashes": hashes})
    conn.execute("delete from parts where message_hash in (select value from json_each(:hashes))", {"hashes": hashes})
    conn.execute("delete from messages where hash in (select value from json_each(:hashes))", {"hashes": hashes})
    # an attachment nothing refers to any more goes with its bytes
    for attachment_id in set(attachment_ids):
        used = conn.execute(
            "select 1 from part_attachments where attachment_id = :a"
            " union all select 1 from prompt_attachments where attachment_id = :a"
            " union all select 1 from tool_results_attachments where attachment_id = :a limit 1",
            {"a": attachment_id},
        ).fetchone()
        if not used:
            conn.execute("delete from attachments where id = ?", [attachment_id])
            conn.execute("delete from llm_htmx_attachment_names where id = ?", [attachment_id])
