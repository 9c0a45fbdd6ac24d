"""Messages in flight, or that ended without a logged response, in the
table ``unlogged_messages``; and the processes that generate them, in
``llm_htmx_workers``. Every function here runs on a connection it is given:
writes on Datasette's write connection, inside its transaction."""

import json

from . import attachments, llm_logs
from .records import Fragment, Message, ReplyPart, ToolCall, ToolResult, Worker, utcnow


def record_start(
    conn, message: Message, actor_id: str | None, new_conversation: bool, root_id: str | None = None
) -> None:
    """A reply begins: its row, and for a new conversation (or a new fork
    of one, with the thread it started as) who began it."""
    if new_conversation or root_id:
        conn.execute(
            "insert into initiated (id, model_id, prompt, system, actor_id,"
            " datetime_utc, options_json, root_id) values (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                message.conversation_id,
                message.model_id,
                message.prompt,
                message.system,
                actor_id,
                message.datetime_utc,
                json.dumps(message.options),
                root_id,
            ],
        )
    conn.execute(
        "insert into unlogged_messages (id, conversation_id, model_id, prompt,"
        " system, options_json, status, text, actor_id, worker, datetime_utc,"
        " updated_utc, input_json) values (?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)",
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
            _input_json(message),
        ],
    )


def _input_json(message: Message) -> str:
    return json.dumps(
        {
            "fragments": [[f.source, f.content] for f in message.fragments],
            "attachments": [a.id for a in message.attachments],
            "show_system": message.show_system,
        }
    )


def parts_json(parts: list[ReplyPart]) -> str | None:
    """A reply's parts, where it has more than its text."""
    if all(part.kind == "text" for part in parts):
        return None
    return json.dumps(
        [
            {"kind": "tool_call", "name": part.tool_call.name,
             "arguments": part.tool_call.arguments, "call_id": part.tool_call.call_id}
            if part.tool_call
            else {"kind": "tool_result", "name": part.tool_result.name,
                  "output": part.tool_result.output, "call_id": part.tool_result.call_id,
                  "error": part.tool_result.error}
            if part.tool_result
            else {"kind": part.kind, "text": part.text, "seconds": part.seconds}
            for part in parts
        ]
    )


def _parts(value: str | None) -> list[ReplyPart]:
    parts = []
    for item in json.loads(value) if value else []:
        if item["kind"] == "tool_call":
            call = ToolCall(item["name"], item["arguments"], item.get("call_id"))
            parts.append(ReplyPart("tool_call", tool_call=call))
        elif item["kind"] == "tool_result":
            result = ToolResult(item["name"], item["output"], item.get("call_id"), item.get("error"))
            parts.append(ReplyPart("tool_result", tool_result=result))
        else:
            parts.append(ReplyPart(item["kind"], item.get("text", ""), seconds=item.get("seconds")))
    return parts


def register_worker(conn, worker: Worker) -> None:
    conn.execute(
        "insert or replace into llm_htmx_workers (id, host, pid, process_start,"
        " started_utc, heartbeat_utc) values (?, ?, ?, ?, ?, ?)",
        [worker.id, worker.host, worker.pid, worker.process_start, utcnow(), utcnow()],
    )


def save(conn, rows: list[tuple], worker_id: str) -> list[str]:
    """One short transaction a second, whatever is streaming: the text so
    far of each message (rows of id, status, error, text, parts JSON), the
    worker's heartbeat, and the stops asked of it by other processes."""
    now = utcnow()
    if rows:
        conn.executemany(
            "update unlogged_messages set status = ?, error = ?, text = ?,"
            " parts_json = ?, updated_utc = ? where id = ?",
            [(status, error, text, parts, now, mid) for mid, status, error, text, parts in rows],
        )
    conn.execute(
        "update llm_htmx_workers set heartbeat_utc = ? where id = ?", [now, worker_id]
    )
    return [
        row[0]
        for row in conn.execute(
            "select id from unlogged_messages where worker = ? and stop_requested = 1"
            " and status in ('pending', 'running')",
            [worker_id],
        )
    ]


def worker_stopped(conn, worker_id: str, interrupted: list[tuple[str, str]]) -> None:
    """A process shutting down: its replies in flight (id, text so far) are
    interrupted, and it says so itself."""
    now = utcnow()
    conn.executemany(
        "update unlogged_messages set status = 'interrupted', text = ?, updated_utc = ?"
        " where id = ? and status in ('pending', 'running')",
        [(text, now, mid) for mid, text in interrupted],
    )
    conn.execute(
        "update llm_htmx_workers set stopped_utc = ? where id = ?", [now, worker_id]
    )


def request_stop(conn, mid: str) -> None:
    """Ask the process that generates ``mid`` to stop it: it reads this at
    its next save."""
    conn.execute("update unlogged_messages set stop_requested = 1 where id = ?", [mid])


def log_response(conn, responses: list, mid: str, cost_nanocents: int | None = None) -> None:
    """Log a finished reply's responses (more than one when the model
    called tools) with llm's own code, and what it cost if known, in the
    same transaction that ends its unlogged life."""
    for response in responses:
        llm_logs.log(conn, response)
    if cost_nanocents is not None:
        conn.execute(
            "insert or replace into llm_htmx_costs (turn_id, nanocents) values (?, ?)",
            [mid, cost_nanocents],
        )
    conn.execute("delete from unlogged_messages where id = ?", [mid])


SELECT = """
select m.id, m.conversation_id, m.model_id, m.prompt, m.system, m.options_json,
       m.status, m.text, m.error, m.worker, m.datetime_utc, m.updated_utc,
       w.id, w.host, w.pid, w.process_start, w.heartbeat_utc, w.stopped_utc,
       m.parts_json, m.input_json
from unlogged_messages m
left join llm_htmx_workers w on w.id = m.worker
"""


def messages(conn, cid: str) -> list[Message]:
    return _read(conn, "m.conversation_id = ?", [cid])


def message(conn, cid: str, mid: str) -> Message | None:
    """One message by key: what a stream that follows another process's
    reply reads on each poll."""
    found = _read(conn, "m.id = ? and m.conversation_id = ?", [mid, cid])
    return found[0] if found else None


def _read(conn, where: str, params: list) -> list[Message]:
    rows = conn.execute(f"{SELECT} where {where} order by m.id", params).fetchall()
    inputs = [json.loads(row[19] or "{}") for row in rows]
    attached = attachments.attachments(conn, {i for data in inputs for i in data.get("attachments", [])})
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
            worker_record=Worker(*row[12:18]) if row[12] else None,
            parts=_parts(row[18]),
            fragments=[Fragment(source, content) for source, content in data.get("fragments", [])],
            attachments=[attached[i] for i in data.get("attachments", []) if i in attached],
            show_system=data.get("show_system", True),
        )
        for row, data in zip(rows, inputs)
    ]


def forget(conn, conversation_ids: list[str]) -> None:
    """A deleted conversation's replies that were never logged, and the
    record of who began it."""
    ids = json.dumps(conversation_ids)
    conn.execute(
        "delete from unlogged_messages where conversation_id in (select value from json_each(?))", [ids]
    )
    conn.execute("delete from initiated where id in (select value from json_each(?))", [ids])
