"""Conversations as llm before 0.32 logged them: ``conversations`` and
``responses``, with their reasoning, tool calls and results, attachments
and fragments in tables of their own."""

import json

from .attachments import ATTACHMENT_COLUMNS, _attachment
from .records import Fragment, Message, ReplyPart, ToolCall, ToolResult

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


def _by_response(conn, ids: str, sql: str) -> dict[str, list[tuple]]:
    grouped: dict[str, list[tuple]] = {}
    for row in conn.execute(sql, {"ids": ids}):
        grouped.setdefault(row[0], []).append(row[1:])
    return grouped


def _pretty(arguments) -> str:
    """Tool call arguments as indented JSON (they are stored as JSON text
    or as an object)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    return json.dumps(arguments, indent=2, ensure_ascii=False)


