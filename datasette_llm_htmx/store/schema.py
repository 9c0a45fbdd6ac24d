"""The plugin's own tables in logs.db, made and changed by numbered
migrations recorded in the table ``llm_htmx_migrations``.

Each migration runs once, in order, in the transaction Datasette opens for
the startup write; a new column reaches every existing logs.db. Add a
migration at the end of ``MIGRATIONS``; never edit one that has shipped.
"""

import llm.migrations
import sqlite_utils

# How long the write connection waits for another process's lock before
# SQLite says "database is locked". Short, so that the plugin's own queue
# of writes never stalls behind one long wait: callers retry instead.
BUSY_TIMEOUT_MS = 1000


def m001_initial(conn) -> None:
    # The tables of 0.1.0, which made them without recording a migration:
    # "if not exists" lets a logs.db from 0.1.0 pass through this one.
    conn.execute(
        """create table if not exists initiated (
            id text primary key,
            model_id text,
            prompt text,
            system text,
            actor_id text,
            datetime_utc text,
            options_json text
        )"""
    )
    conn.execute(
        "create index if not exists initiated_actor_id on initiated (actor_id, id)"
    )
    # Messages in flight, or that ended without a logged response. A row is
    # deleted in the transaction that logs its response with llm's log_to_db.
    conn.execute(
        """create table if not exists unlogged_messages (
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
        )"""
    )
    conn.execute(
        "create index if not exists unlogged_messages_conversation_id"
        " on unlogged_messages (conversation_id)"
    )
    conn.execute(
        "create index if not exists unlogged_messages_worker"
        " on unlogged_messages (worker, status)"
    )
    # llm never indexed the pre-0.32 responses by conversation, and the list
    # and the conversation page ask for exactly that.
    conn.execute(
        "create index if not exists llm_htmx_responses_conversation_id"
        " on responses (conversation_id)"
    )


def m002_workers(conn) -> None:
    # Each process that generates replies says it is alive here. A reply is
    # interrupted only when its process is known to have ended: gone from
    # this host, or silent for far longer than it ever is while it runs.
    conn.execute(
        """create table llm_htmx_workers (
            id text primary key,
            host text not null,
            pid integer not null,
            process_start text,  -- tells this process from a later one with its pid
            started_utc text not null,
            heartbeat_utc text not null,
            stopped_utc text
        )"""
    )


def m003_parts(conn) -> None:
    # A reply in flight keeps its parts (reasoning, tool calls) as JSON, and
    # its prompt what it carried besides text (fragments, attachments).
    conn.execute("alter table unlogged_messages add column parts_json text")
    conn.execute("alter table unlogged_messages add column input_json text")
    # llm keeps an attachment's bytes and type; the name of an uploaded file
    # is kept here, by the attachment's id.
    conn.execute(
        """create table llm_htmx_attachment_names (
            id text primary key,
            name text not null
        )"""
    )


def m004_branches(conn) -> None:
    # A fork (regenerate, edit and resend) is a thread of the conversation
    # it came from: initiated records it with the thread it started as.
    conn.execute("alter table initiated add column root_id text")
    conn.execute("create index initiated_root_id on initiated (root_id)")
    # What reading a conversation's forks and deleting one look up in
    # llm's tables, which llm does not index.
    conn.execute("create index if not exists llm_htmx_threads_forked_from on threads (forked_from)")
    conn.execute("create index if not exists llm_htmx_threads_tip on threads (tip_message_hash)")
    conn.execute("create index if not exists llm_htmx_turns_tip on turns (tip_message_hash)")
    conn.execute("create index if not exists llm_htmx_turns_parent on turns (parent_message_hash)")


def m005_costs(conn) -> None:
    # What a reply cost, where datasette-llm-accountant's pricing says
    # (llm's tables have no place for it): one row per turn.
    conn.execute(
        "create table if not exists llm_htmx_costs (turn_id text primary key, nanocents integer not null)"
    )


MIGRATIONS = [m001_initial, m002_workers, m003_parts, m004_branches, m005_costs]


def migrate(conn) -> list[str]:
    """Bring llm's tables and the plugin's up to date; return the names of
    the migrations that ran."""
    conn.execute(f"pragma busy_timeout = {BUSY_TIMEOUT_MS}")
    llm.migrations.migrate(sqlite_utils.Database(conn))
    conn.execute(
        """create table if not exists llm_htmx_migrations (
            name text primary key,
            applied_utc text not null default (strftime('%Y-%m-%dT%H:%M:%fZ'))
        )"""
    )
    applied = {row[0] for row in conn.execute("select name from llm_htmx_migrations")}
    ran = []
    for migration in MIGRATIONS:
        if migration.__name__ not in applied:
            migration(conn)
            conn.execute(
                "insert into llm_htmx_migrations (name) values (?)", [migration.__name__]
            )
            ran.append(migration.__name__)
    return ran
