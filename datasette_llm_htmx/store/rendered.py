"""Rendered replies kept on disk, so the first view of a long conversation
after a restart reads its HTML instead of rendering its markdown again
(bleach stays the sanitizer, and is paid once per reply, not per restart).

A file of the plugin's own beside logs.db (``logs-llm-htmx-render.db``),
never a second copy inside logs.db. Keyed by the digest of the markdown and
the renderer's version (this module's, markdown-it-py's and bleach's): a
change to any of them starts afresh. Bounded in bytes; the least recently
written go first. It holds replies, which are private: it is created
readable by its owner only, and each row names the conversation it was
drawn for, so deleting a conversation deletes its rows here too.

Used from the render thread only (rendering.py), so one connection.
"""

import os
import pathlib
import sqlite3

import bleach
import markdown_it

RENDERER = f"3/{markdown_it.__version__}/{bleach.__version__}"
MOST_BYTES = 256 * 1024 * 1024


class RenderStore:
    def __init__(self, path: pathlib.Path, most_bytes: int = MOST_BYTES):
        self.path = path
        self.most_bytes = most_bytes
        self._conn: sqlite3.Connection | None = None
        self.broken = False  # a cache that fails is left alone, never fatal
        self.size = 0  # characters of HTML, counted at opening and kept up to date

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                self.path.touch(mode=0o600)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=1)
            conn.execute("pragma journal_mode=wal")
            conn.execute(
                "create table if not exists rendered (key blob primary key,"
                " renderer text not null, html text not null, conversation_id text)"
            )
            conn.execute(
                "create index if not exists rendered_conversation on rendered (conversation_id)"
            )
            with conn:
                conn.execute("delete from rendered where renderer != ?", [RENDERER])
            self._conn = conn
            self.size = self._measure()
        return self._conn

    def get_many(self, keys) -> dict[bytes, str]:
        keys = list(keys)
        if self.broken or not keys:
            return {}
        try:
            conn = self._connection()
            found = {}
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                for key, html in conn.execute(
                    f"select key, html from rendered where renderer = ? and key in ({marks})",
                    [RENDERER, *batch],
                ):
                    found[bytes(key)] = html
            return found
        except sqlite3.Error:
            self.broken = True
            return {}

    def put_many(self, items: dict[bytes, str], conversation_id: str) -> None:
        if self.broken or not items:
            return
        try:
            conn = self._connection()
            with conn:
                conn.executemany(
                    "insert or replace into rendered (key, renderer, html, conversation_id)"
                    " values (?, ?, ?, ?)",
                    [(key, RENDERER, html, conversation_id) for key, html in items.items()],
                )
            # Counted as it grows, not summed per write (a scan of the whole
            # file); measured again only when it may be over the bound (a
            # replaced row, or another process writing, makes the count drift)
            self.size += sum(len(html) for html in items.values())
            if self.size > self.most_bytes and self._measure() > self.most_bytes:
                with conn:
                    # the oldest writes first, a quarter of the rows at a time
                    conn.execute(
                        "delete from rendered where rowid in (select rowid from rendered order by rowid"
                        " limit (select count(*) / 4 + 1 from rendered))"
                    )
                self._measure()
        except sqlite3.Error:
            self.broken = True

    def _measure(self) -> int:
        self.size = self._conn.execute("select coalesce(sum(length(html)), 0) from rendered").fetchone()[0]
        return self.size

    def forget(self, conversation_ids) -> None:
        """A deleted conversation's replies leave the cache too."""
        ids = list(conversation_ids)
        if not ids or not self.path.exists():
            return
        try:
            conn = self._connection()
            with conn:
                conn.executemany("delete from rendered where conversation_id = ?", [(i,) for i in ids])
        except sqlite3.Error:
            # it must not keep a deleted reply: without it, the whole cache goes
            self.broken = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            remove_file(self.path)


def beside(database_path: pathlib.Path) -> pathlib.Path:
    return database_path.with_name(database_path.stem + "-llm-htmx-render.db")


def remove_file(path: pathlib.Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(str(path) + suffix)
        except FileNotFoundError:
            pass
