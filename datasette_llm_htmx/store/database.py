"""logs.db as a Datasette database: finding it, attaching it, checking it
at startup, and writes that wait for a lock a bounded time or retry until
they land."""

import asyncio
import logging
import os
import random
import sqlite3
import time

from datasette.database import Database
from datasette.utils import StartupError

from ..config import DATABASE_NAME, settings
from ..errors import ShownError
from . import schema

logger = logging.getLogger(__name__)

class StoreUnavailable(ShownError):
    """logs.db could not take a write in time: locked by another process,
    full, or read-only. The message says which, for the user; the status
    says it is the server's trouble, not the user's."""

    status = 503


def database_name(datasette) -> str:
    """The name logs.db has in Datasette: "llm", or the name the user gave
    it by attaching the file themselves."""
    return getattr(datasette, "_llm_htmx_database_name", DATABASE_NAME)


def llm_database(datasette) -> Database:
    return datasette.get_database(database_name(datasette))


def _attached_as(datasette, path) -> str | None:
    for name, db in datasette.databases.items():
        if db.path and os.path.exists(db.path) and path.exists():
            if os.path.samefile(db.path, path):
                return name
    return None


async def prepare(datasette) -> None:
    """Attach logs.db as the database "llm" (unless the file is attached
    already), check it, and bring its tables up to date. A file that cannot
    be used stops startup with one line that names it."""
    path = settings(datasette).database_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_usable(path)
    except (OSError, sqlite3.Error) as error:
        raise StartupError(f"datasette-llm-htmx: {path} {describe(error)}")
    name = _attached_as(datasette, path)
    if name is None:
        # add_database renames on a clash: keep the name it chose
        name = datasette.add_database(
            Database(datasette, path=str(path), is_mutable=True), name=DATABASE_NAME
        ).name
    datasette._llm_htmx_database_name = name
    try:
        await llm_database(datasette).execute_write_fn(schema.migrate)
    except sqlite3.Error as error:
        raise StartupError(f"datasette-llm-htmx: {path} {describe(error)}")


def check_usable(path) -> None:
    """Open logs.db (creating it if new), read it, and try a write that is
    rolled back: a corrupt or read-only file fails here, by name, instead
    of with every Send later."""
    if not path.exists():
        # a new logs.db will hold private chats: readable by its owner only
        # (an existing one keeps the mode its owner gave it)
        path.touch(mode=0o600)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("select count(*) from sqlite_master").fetchone()
        try:
            conn.execute("begin immediate")
        except sqlite3.OperationalError as error:
            if "locked" in str(error):
                return  # another process is writing: it is writable
            raise
        try:
            conn.execute("create table llm_htmx_write_check (x)")
        finally:
            conn.execute("rollback")
    finally:
        conn.close()


def describe(error: Exception) -> str:
    """What is wrong with logs.db, in words a person can act on."""
    text = str(error)
    if "not a database" in text or "malformed" in text:
        return f"is not a usable SQLite database ({text})"
    if "readonly" in text or "read-only" in text or "Read-only" in text:
        return "is read-only: the chat needs to write to it"
    if "full" in text:
        return "cannot grow: the disk is full"
    if "locked" in text or "busy" in text:
        return "is locked by another process"
    return f"cannot be written ({text})"


def _unavailable(error: sqlite3.Error) -> StoreUnavailable:
    text = str(error)
    if "locked" in text or "busy" in text:
        return StoreUnavailable(
            "The log database is busy: another program (perhaps the llm command) "
            "is writing to it. Nothing was sent; please send again in a moment."
        )
    if "full" in text:
        return StoreUnavailable(
            "The log database cannot grow: the disk is full. Nothing was sent.", 507
        )
    if "readonly" in text:
        return StoreUnavailable(
            "The log database is read-only, so nothing can be sent. Ask an administrator."
        )
    return StoreUnavailable(f"The log database could not be written ({text}).")


async def read_at_once(db: Database, fn):
    """Run ``fn(conn)``'s queries in one read transaction, so they all see
    the same moment: a reply logged between two of them (its unlogged row
    deleted, its llm rows added) is seen once, never missed."""

    def snapshot(conn):
        if conn.in_transaction:
            # left open on this pooled connection by a failed statement:
            # reading inside it would see an old moment, and hold a lock
            conn.execute("rollback")
        conn.execute("begin")
        try:
            return fn(conn)
        finally:
            if conn.in_transaction:
                conn.execute("rollback")  # it only read

    return await db.execute_fn(snapshot)


class _Group:
    """Group commit: writes that arrive while one is being committed wait,
    then go in together, in one transaction and one turn of the write
    thread, each in a savepoint of its own (a write that raises is undone
    alone). A thousand chats started at once are a few commits, not a
    thousand queued behind each other. A database error (locked, full)
    fails the whole group, and each write retries as it would alone."""

    def __init__(self, db: Database):
        self.db = db
        self.waiting: list[tuple] = []
        self.drainer: asyncio.Task | None = None

    async def write(self, fn):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((fn, future))
        if self.drainer is None:
            self.drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        group = []
        try:
            while self.waiting:
                # a caller that has gone (cancelled) has its write dropped
                group = [(fn, future) for fn, future in self.waiting if not future.done()]
                self.waiting = []
                if not group:
                    continue
                fns = [fn for fn, _ in group]
                try:
                    outcomes = await self.db.execute_write_fn(lambda conn: _each_in_savepoint(conn, fns))
                except Exception as error:
                    outcomes = [(False, error)] * len(group)
                for (_, future), (ok, value) in zip(group, outcomes):
                    if not future.done():
                        future.set_result(value) if ok else future.set_exception(value)
                group = []
        except BaseException as error:  # cancelled (the loop closing): nobody waits forever
            for _, future in [*group, *self.waiting]:
                if not future.done():
                    if isinstance(error, Exception):
                        future.set_exception(error)
                    else:
                        future.cancel()
            self.waiting = []
            raise
        finally:
            self.drainer = None


# SQLite's primary result codes that are the database's trouble, not one
# write's: busy, locked, out of memory, read-only, I/O, corrupt, full,
# cannot open, protocol
DATABASE_TROUBLE = {5, 6, 7, 8, 10, 11, 13, 14, 15}


def _each_in_savepoint(conn, fns) -> list[tuple[bool, object]]:
    outcomes = []
    for fn in fns:
        conn.execute("savepoint grouped")
        try:
            value = fn(conn)
        except Exception as error:
            code = getattr(error, "sqlite_errorcode", None)
            if not conn.in_transaction or (code is not None and code & 0xFF in DATABASE_TROUBLE):
                raise  # the group fails, and each write retries as it would alone
            conn.execute("rollback to grouped")
            outcomes.append((False, error))
        else:
            outcomes.append((True, value))
        conn.execute("release grouped")
    return outcomes


def _group(db: Database) -> _Group:
    group = getattr(db, "_llm_htmx_group", None)
    if group is None:
        group = db._llm_htmx_group = _Group(db)
    return group


async def write_within(db: Database, fn, seconds: float, grouped: bool = False):
    """Run ``fn(conn)`` as one write, waiting for a lock at most about
    ``seconds``; then raise StoreUnavailable. A write that has not started
    by the deadline does nothing, so a refused request leaves no trace.
    ``grouped``: committed with the writes that arrive meanwhile (for
    writes that never commit by themselves: the plugin's, and llm's, whose
    sqlite-utils ``atomic()`` nests in a savepoint inside a transaction)."""
    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        def guarded(conn):
            if time.monotonic() > deadline + 1:
                raise TimeoutError("expired in the queue")
            return fn(conn)

        try:
            if grouped:
                return await _group(db).write(guarded)
            return await db.execute_write_fn(guarded)
        except TimeoutError:
            raise _unavailable(sqlite3.OperationalError("database is locked"))
        except sqlite3.OperationalError as error:
            if not ("locked" in str(error) or "busy" in str(error)):
                raise _unavailable(error)
            if time.monotonic() + delay > deadline:
                raise _unavailable(error)
        except sqlite3.Error as error:
            raise _unavailable(error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def write_until_done(db: Database, fn, what: str, give_up: asyncio.Event | None = None):
    """Run ``fn(conn)`` as one write, retrying with backoff (capped at 5 s)
    until it lands: the last word on a reply must reach the database even
    if the disk was full or another process held the lock for a while.
    ``give_up`` set (at shutdown) makes one last try the final one."""
    delay = 0.1
    while True:
        try:
            return await db.execute_write_fn(fn)
        except sqlite3.Error as error:
            if give_up is not None and give_up.is_set():
                logger.error("Could not save %s: %s", what, error)
                return None
            logger.warning("Saving %s failed (%s); trying again in %.1f s", what, error, delay)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 5.0)
