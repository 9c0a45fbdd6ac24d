"""A read-only SQL tool for models that call tools: ``query(database,
sql)`` and ``describe(database, table)``, off unless datasette.yaml opens
databases to it (``sql_tool_databases``).

Every call goes through Datasette's own query API *as the asking actor*:
their ``execute-sql`` permission decides, Datasette's SQL checks keep it to
reading (a write is refused), its ``sql_time_limit_ms`` cuts a slow query
off; the rows are capped here before the model sees them. A call can never
reach a database the actor could not query in their browser.
"""

import json
from urllib.parse import urlencode

import llm
from datasette.utils import tilde_encode

from .config import settings
from .store import data_schema

MOST_ROWS = 100
MOST_CHARACTERS = 20_000


class Refused(Exception):
    """A call the tool will not make: the model is told why."""


def tools_for(datasette, actor) -> list[llm.Tool]:
    """The tools for one prompt of ``actor`` (none if the setting is off)."""
    databases = [d for d in settings(datasette).sql_tool_databases if d in datasette.databases]
    if not databases:
        return []
    names = ", ".join(databases)

    async def query(database: str, sql: str) -> str:
        return await run_query(datasette, actor, databases, database, sql)

    async def describe(database: str, table: str) -> str:
        return await describe_table(datasette, actor, databases, database, table)

    return [
        llm.Tool.function(
            query,
            name="query",
            description=(
                "Run one read-only SQLite SELECT query against a database and get the "
                f"rows back as JSON (at most {MOST_ROWS}). Databases: {names}."
            ),
        ),
        llm.Tool.function(
            describe,
            name="describe",
            description=f"The schema (CREATE statement) of a table in a database. Databases: {names}.",
        ),
    ]


def _open(databases: list[str], database: str) -> None:
    if database not in databases:
        raise Refused(
            f"The database {database!r} is not open to this tool. Open: {', '.join(databases)}."
        )


async def run_query(datasette, actor, databases, database: str, sql: str) -> str:
    _open(databases, database)
    path = f"/{tilde_encode(database)}/-/query.json?" + urlencode({"sql": sql, "_shape": "objects"})
    response = await datasette.client.get(path, actor=actor)
    if response.status_code in (401, 403):
        raise Refused(f"You may not run SQL on the database {database!r}.")
    data = _json(response)
    if response.status_code != 200 or not data.get("ok", True):
        raise Refused(_error(data, response.status_code))
    rows = data.get("rows") or []
    return _capped(rows, truncated=bool(data.get("truncated")))


async def describe_table(datasette, actor, databases, database: str, table: str) -> str:
    _open(databases, database)
    # the table's page, as the actor: proves they may see it
    path = f"/{tilde_encode(database)}/{tilde_encode(table)}.json?_size=0&_extra=count"
    response = await datasette.client.get(path, actor=actor)
    if response.status_code in (401, 403):
        raise Refused(f"You may not see the table {table!r}.")
    if response.status_code == 404:
        raise Refused(f"There is no table {table!r} in {database!r}.")
    data = _json(response)
    if response.status_code != 200:
        raise Refused(_error(data, response.status_code))
    schema = await data_schema.create_statement(datasette.get_database(database), table)
    count = data.get("count")
    return (schema or "") + (f"\n-- {count} rows" if count is not None else "")


def _json(response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(data: dict, status: int) -> str:
    return str(data.get("error") or f"The query failed ({status}).")


def _capped(rows: list, truncated: bool) -> str:
    shown = rows[:MOST_ROWS]
    text = json.dumps(shown, default=str)
    while len(text) > MOST_CHARACTERS and shown:
        shown = shown[: max(1, len(shown) // 2)] if len(shown) > 1 else []
        text = json.dumps(shown, default=str)
    left = len(rows) - len(shown)
    if left or truncated:
        text += f"\n({len(shown)} rows shown; more were left out: add a LIMIT or narrow the query)"
    return text
