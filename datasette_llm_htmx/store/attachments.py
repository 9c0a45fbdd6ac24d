"""Attachments as llm keeps them (``attachments``, by the SHA-256 of their
bytes), and the names the plugin keeps of uploaded files."""

import json

from .records import Attachment

ATTACHMENT_COLUMNS = (
    "attachments.id, attachments.type, length(attachments.content),"
    " attachments.url, attachments.path"
)


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


def attachment_content(conn, attachment_id: str) -> tuple | None:
    """(type, content, path, url) of one attachment."""
    return conn.execute(
        "select type, content, path, url from attachments where id = ?", [attachment_id]
    ).fetchone()


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


