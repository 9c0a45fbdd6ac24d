"""Chat about a table, a query or a row: the page the person was looking at
becomes an llm fragment of their first prompt (its schema and the rows it
showed, capped), so `llm logs -f` finds it and the page shows it folded.

The rows are read through Datasette's own JSON API *as the asking actor*:
their view and SQL permissions decide what goes in, exactly as the page
they came from did. Nothing here reads a database directly.
"""

import csv
import io
from urllib.parse import parse_qsl, urlencode, urlsplit

from datasette.utils import tilde_decode

from .forms import BadInput
from .store import data_schema
from .store.records import Fragment

KINDS = {"database": "Database", "table": "Table", "query": "Query", "row": "Row"}
# what shapes the JSON, not which rows: set here
OWN_ARGS = {"_shape", "_size", "_extra", "_json", "_nl", "_next", "_format"}


def action_link(datasette, request, kind: str) -> dict:
    """The entry of a table, query or row page's action menu."""
    page = request.scope.get("route_path") or request.path  # without base_url
    if request.query_string:
        page += "?" + request.query_string
    href = datasette.urls.path("/-/llm/about") + "?" + urlencode({"kind": kind, "page": page})
    return {
        "href": href,
        "label": f"Chat about this {kind}",
        "description": f"Start an LLM conversation that carries this {kind}'s data",
    }


def _json_url(kind: str, page: str, cap: int) -> tuple[str, str]:
    """(database, the JSON API URL of the page): only a database's pages."""
    if kind not in KINDS:
        raise BadInput("Choose a database, a table, a query or a row to chat about.")
    parts = urlsplit(page)
    segments = parts.path.split("/")
    least = 2 if kind == "database" else 3
    # A "." or ".." segment would be resolved on the way to the JSON (so
    # the permission check reads another page) but not in the names the
    # schema is read by: no such page is a database's
    if (
        parts.scheme
        or parts.netloc
        or len(segments) < least
        or not segments[1]
        or segments[1] == "-"
        or any(segment in (".", "..") for segment in segments)
    ):
        raise BadInput("That is not a page of a database, a table, a query or a row.")
    if kind == "database":
        return tilde_decode(segments[1]), f"/{segments[1]}.json"
    database = tilde_decode(segments[1])
    args = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in OWN_ARGS]
    args.append(("_extra", "count,columns" if kind == "table" else "columns"))
    if kind == "table":
        args.append(("_size", str(cap)))
    return database, parts.path.removesuffix(".json") + ".json?" + urlencode(args)


async def fragment_for(datasette, actor, kind: str, page: str, cap: int) -> Fragment:
    """The fragment: what the actor sees of the page, at most ``cap`` rows.
    Raises BadInput if they cannot see it."""
    database, url = _json_url(kind, page, cap)
    if database not in datasette.databases:
        raise BadInput(f"There is no database called {database!r}.", 404)
    response = await datasette.client.get(url, actor=actor)
    if response.status_code in (401, 403):
        raise BadInput("You do not have permission to read that data.", 403)
    if response.status_code != 200:
        raise BadInput(f"That {kind} could not be read ({response.status_code}).", 400)
    data = response.json()
    if kind == "database":
        return await _database_fragment(datasette, database, page, data)
    columns = data.get("columns") or []
    rows = (data.get("rows") or [])[:cap]
    described = f"{KINDS[kind]} {page} of the Datasette database {database!r}"
    lines = [described + "."]
    if kind in ("table", "row"):
        schema = await _schema(datasette, database, url)
        if schema:
            lines += ["", "Schema:", schema]
    total = data.get("count")
    shown = f"{len(rows)} row" + ("" if len(rows) == 1 else "s")
    if total is not None and total > len(rows):
        shown += f" of {total:,} (the first {cap}; the rest are not included)"
    elif kind == "query" and len(data.get("rows") or []) > cap:
        shown += f" (the first {cap}; the rest are not included)"
    lines += ["", f"{shown}, as CSV:", _csv(columns, rows)]
    return Fragment(source=f"datasette:{page}", content="\n".join(lines))


async def _database_fragment(datasette, database: str, page: str, data: dict) -> Fragment:
    """The schema of the tables and views the actor may see (the database's
    JSON lists only those), with their row counts."""
    names = [t["name"] for t in data.get("tables") or [] if not t.get("hidden")]
    names += [v["name"] if isinstance(v, dict) else v for v in data.get("views") or []]
    counts = {t["name"]: t.get("count") for t in data.get("tables") or []}
    schemas = await data_schema.create_statements(datasette.get_database(database))
    lines = [f"The Datasette database {database!r} ({page}): its tables and views.", ""]
    for name in names:
        if name in schemas:
            count = counts.get(name)
            lines.append(schemas[name] + ";" + (f"  -- {count:,} rows" if count is not None else ""))
    return Fragment(source=f"datasette:{page}", content="\n".join(lines))


async def _schema(datasette, database: str, url: str) -> str | None:
    """The table's CREATE statement (the actor may see the table: the JSON
    request before proved it)."""
    table = tilde_decode(urlsplit(url).path.split("/")[2].removesuffix(".json"))
    return await data_schema.create_statement(datasette.get_database(database), table)


def _csv(columns: list, rows: list[dict]) -> str:
    if not columns and rows:
        columns = list(rows[0])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) if isinstance(row, dict) else "" for c in columns])
    return out.getvalue().rstrip("\n")


def _cell(value):
    if isinstance(value, dict) and "value" in value:  # a foreign key label
        return value.get("label") or value["value"]
    return value
