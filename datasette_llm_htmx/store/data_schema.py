"""The schema of the site's other databases, for a conversation about them
(about.py) and the SQL tool (sql_tool.py): their CREATE statements. Which
tables an actor may see is decided before, by Datasette's own pages, read
as that actor."""

SCHEMA_SQL = (
    "select name, sql from sqlite_master where type in ('table', 'view') and sql is not null"
)


async def create_statements(db) -> dict[str, str]:
    """Every table's and view's CREATE statement, by name."""
    return {name: sql for name, sql in (await db.execute(SCHEMA_SQL)).rows}


async def create_statement(db, name: str) -> str | None:
    row = (await db.execute(SCHEMA_SQL + " and name = ?", [name])).first()
    return row[1] if row else None
