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
from .records import Attachment, Fragment, Message, ReplyPart, ToolCall, ToolResult


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


def legacy_messages(conn, cid: str) -> list[Message]:
    """Responses as llm before 0.32 logged them, with their reasoning,
    tool calls and results, attachments and fragments: seven queries for
    the whole conversation."""
    rows = conn.execute(
        "select id, model, prompt, system, response, options_json, datetime_utc,"
        " input_tokens, output_tokens, duration_ms, reasoning"
        " from responses where conversation_id = ? order by id",
        [cid],
    ).fetchall()
    if not rows:
        return []
    ids = json.dumps([row[0] for row in rows])
    fragments = _by_response(conn, ids, """
        select response_id, kind, source, content, hash from (
            select pf.response_id, 'prompt' as kind, pf."order" as position,
                   f.source, f.content, f.hash
            from prompt_fragments pf join fragments f on f.id = pf.fragment_id
            where pf.response_id in (select value from json_each(:ids))
            union all
            select sf.response_id, 'system', sf."order", f.source, f.content, f.hash
            from system_fragments sf join fragments f on f.id = sf.fragment_id
            where sf.response_id in (select value from json_each(:ids))
        ) order by response_id, kind, position""")
    attachments = _by_response(conn, ids, f"""
        select pa.response_id, {ATTACHMENT_COLUMNS}
        from prompt_attachments pa join attachments on attachments.id = pa.attachment_id
        where pa.response_id in (select value from json_each(:ids))
        order by pa.response_id, pa."order" """)
    calls = _by_response(conn, ids, """
        select response_id, name, arguments, tool_call_id from tool_calls
        where response_id in (select value from json_each(:ids)) order by response_id, id""")
    results = _by_response(conn, ids, """
        select response_id, name, output, tool_call_id, exception from tool_results
        where response_id in (select value from json_each(:ids)) order by response_id, id""")
    messages = []
    for row in rows:
        rid = row[0]
        parts = []
        if row[10]:
            parts.append(ReplyPart("reasoning", row[10]))
        if row[4]:
            parts.append(ReplyPart("text", row[4]))
        parts += [
            ReplyPart("tool_call", tool_call=ToolCall(name, _pretty(arguments), call_id))
            for name, arguments, call_id in calls.get(rid, [])
        ]
        messages.append(
            Message(
                id=rid,
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
                fragments=[Fragment(*f[1:]) for f in fragments.get(rid, []) if f[0] == "prompt"],
                system_fragments=[
                    Fragment(*f[1:]) for f in fragments.get(rid, []) if f[0] == "system"
                ],
                attachments=[_attachment(*a) for a in attachments.get(rid, [])],
                tool_results=[ToolResult(*r) for r in results.get(rid, [])],
                parts=parts,
            )
        )
    return messages


ATTACHMENT_COLUMNS = (
    "attachments.id, attachments.type, length(attachments.content),"
    " attachments.url, attachments.path"
)


def _by_response(conn, ids: str, sql: str) -> dict[str, list[tuple]]:
    grouped: dict[str, list[tuple]] = {}
    for row in conn.execute(sql, {"ids": ids}):
        grouped.setdefault(row[0], []).append(row[1:])
    return grouped


def _attachment(id_, type_, size, url, path, name=None) -> Attachment:
    name = name or (path.rsplit("/", 1)[-1] if path else None)
    return Attachment(id=id_, type=type_, size=size, url=url, name=name)


def attachments(conn, ids) -> dict[str, Attachment]:
    """Attachments by id: type, size, URL, and a name where one is known."""
    return {
        row[0]: _attachment(*row)
        for row in _rows(
            conn,
            f"select {ATTACHMENT_COLUMNS}, (select name from llm_htmx_attachment_names n"
            " where n.id = attachments.id) from attachments",
            ids,
        )
    }


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


def attachment_content(conn, attachment_id: str) -> tuple | None:
    """(type, content, path, url) of one attachment."""
    return conn.execute(
        "select type, content, path, url from attachments where id = ?", [attachment_id]
    ).fetchone()


def _pretty(arguments) -> str:
    """Tool call arguments as indented JSON (they are stored as JSON text
    or as an object)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    return json.dumps(arguments, indent=2, ensure_ascii=False)


# Every message on the way from each turn's tip back to the root, with all
# its parts: one query for a whole thread, however long.
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

TURNS_SQL = """
select id, model, parent_message_hash, tip_message_hash, options_json,
       datetime_utc, input_tokens, output_tokens, duration_ms
from turns where thread_id = ? order by id
"""

TURN_FRAGMENTS_SQL = """
select tf.turn_id, tf.kind, f.source, f.content, f.hash
from turn_fragments tf join fragments f on f.id = tf.fragment_id
where tf.turn_id in (select id from turns where thread_id = ?)
order by tf.turn_id, tf.kind, tf."order"
"""


class _Chain:
    """The messages of a thread, each with its parts resolved: fragment
    text put back, attachments looked up."""

    def __init__(self, conn, cid: str):
        self.parents: dict[str, str | None] = {}
        self.roles: dict[str, str] = {}
        self.parts: dict[str, list[tuple[str, str | None, dict]]] = {}
        fragment_ids, attachment_ids = set(), set()
        for hash_, parent, role, part_type, text, payload in conn.execute(CHAIN_SQL, {"cid": cid}):
            self.parents[hash_] = parent
            self.roles[hash_] = role
            parts = self.parts.setdefault(hash_, [])
            if part_type is None:
                continue
            data = json.loads(payload) if payload else {}
            parts.append((part_type, text, data))
            fragment_ids.update(p["fragment"] for p in data.get("text_ref", []) if "fragment" in p)
            attachment_ids.update(_attachment_ids(data))
        self.fragments = _rows_by_id(conn, "select id, content from fragments", fragment_ids)
        self.attachments = attachments(conn, attachment_ids)

    def walk(self, tip: str | None) -> list[str]:
        """The hashes from the root to ``tip``."""
        hashes = []
        while tip is not None and tip in self.parents:
            hashes.append(tip)
            tip = self.parents[tip]
        hashes.reverse()
        return hashes

    def text(self, part_text: str | None, data: dict) -> str:
        if part_text is not None:
            return part_text
        # text that borrows fragments is stored as literal pieces and ids
        return "".join(
            piece["literal"] if "literal" in piece else self.fragments.get(piece["fragment"], "")
            for piece in data.get("text_ref", [])
        ) or data.get("text", "")

    def attachment(self, data: dict) -> list[Attachment]:
        return [self.attachments[i] for i in _attachment_ids(data) if i in self.attachments]


def _attachment_ids(data: dict) -> list[str]:
    found = []
    if isinstance(data.get("attachment"), dict) and "id" in data["attachment"]:
        found.append(data["attachment"]["id"])
    for item in data.get("attachments") or []:
        if isinstance(item, dict) and "id" in item:
            found.append(item["id"])
    return found


def _rows(conn, sql: str, ids) -> list[tuple]:
    if not ids:
        return []
    return conn.execute(
        f"{sql} where id in (select value from json_each(?))", [json.dumps(sorted(ids))]
    ).fetchall()


def _rows_by_id(conn, sql: str, ids) -> dict:
    return {row[0]: row[1] for row in _rows(conn, sql, ids)}


def thread_messages(conn, cid: str) -> list[Message]:
    """Turns as llm 0.32 and later log them, with every part: four queries
    for a whole thread, however long.

    A turn's own input is the run of user and tool messages at the end of
    its input chain (what comes before belongs to earlier turns); its
    reply is the messages from there to its tip."""
    turns = conn.execute(TURNS_SQL, [cid]).fetchall()
    if not turns:
        return []
    chain = _Chain(conn, cid)
    turn_fragments: dict[str, dict[str, list[Fragment]]] = {}
    for turn_id, kind, source, content, hash_ in conn.execute(TURN_FRAGMENTS_SQL, [cid]):
        turn_fragments.setdefault(turn_id, {}).setdefault(kind, []).append(
            Fragment(source, content, hash_)
        )
    messages = []
    for tid, model, parent, tip, options_json, when, input_tokens, output_tokens, duration_ms in turns:
        inputs = chain.walk(parent)
        outputs = chain.walk(tip)[len(inputs) :]
        boundary = len(inputs)
        while boundary and chain.roles[inputs[boundary - 1]] in ("user", "tool"):
            boundary -= 1
        own_input = inputs[boundary:]
        fragments = turn_fragments.get(tid, {})
        user_text, attachments, tool_results = [], [], []
        for hash_ in own_input:
            for part_type, text, data in chain.parts[hash_]:
                if part_type == "text" and chain.roles[hash_] == "user":
                    user_text.append(chain.text(text, data))
                elif part_type == "attachment":
                    attachments += chain.attachment(data)
                elif part_type == "tool_result":
                    tool_results.append(
                        ToolResult(
                            name=data.get("name") or "",
                            output=str(data.get("output", "")),
                            call_id=data.get("tool_call_id"),
                            error=data.get("exception"),
                            attachments=chain.attachment(data),
                        )
                    )
        system = None
        if inputs and chain.roles[inputs[0]] == "system":
            system = "".join(
                chain.text(text, data)
                for part_type, text, data in chain.parts[inputs[0]]
                if part_type == "text"
            )
        parts = []
        for hash_ in outputs:
            if chain.roles[hash_] != "assistant":
                continue
            for part_type, text, data in chain.parts[hash_]:
                if part_type in ("text", "reasoning"):
                    _add_text(parts, part_type, chain.text(text, data))
                elif part_type == "tool_call":
                    parts.append(
                        ReplyPart(
                            "tool_call",
                            tool_call=ToolCall(
                                data.get("name") or "",
                                _pretty(data.get("arguments", {})),
                                data.get("tool_call_id"),
                            ),
                        )
                    )
        prompt_fragments = fragments.get("prompt", [])
        system_fragments = fragments.get("system", [])
        messages.append(
            Message(
                id=tid,
                conversation_id=cid,
                model_id=model,
                prompt=typed_text("".join(user_text), prompt_fragments, "\n"),
                system=(typed_text(system, system_fragments, "\n\n", strip=True) or None)
                if system
                else None,
                text="".join(p.text for p in parts if p.kind == "text"),
                status="done",
                options=json.loads(options_json or "{}"),
                datetime_utc=when,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                duration_ms=duration_ms,
                fragments=prompt_fragments,
                system_fragments=system_fragments,
                attachments=attachments,
                tool_results=tool_results,
                parts=parts,
            )
        )
    return messages


def _add_text(parts: list[ReplyPart], kind: str, text: str) -> None:
    """Consecutive parts of one kind read as one."""
    if not text:
        return
    if parts and parts[-1].kind == kind:
        parts[-1].text += text
    else:
        parts.append(ReplyPart(kind, text))


def typed_text(text: str, fragments: list[Fragment], joiner: str, strip: bool = False) -> str:
    """What was typed, without the fragments llm put before it: llm joins
    fragments and the typed text with ``joiner`` (the system prompt's
    fragments are stripped first)."""
    if not fragments:
        return text
    prefix = joiner.join(f.content.strip() if strip else f.content for f in fragments)
    if text == prefix:
        return ""
    if text.startswith(prefix + joiner):
        return text[len(prefix) + len(joiner) :]
    return text
