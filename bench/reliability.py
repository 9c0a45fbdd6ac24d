"""Faults, measured: what is lost when the `llm` CLI writes to logs.db while
the server streams, and what memory stalled clients cost.

    python bench/reliability.py cli [--runs 40] [--streams 5]
    python bench/reliability.py stalled [--megabytes 4] [--clients 5]

Every figure comes from a real `datasette serve` subprocess and real `llm`
CLI subprocesses on one logs.db. Results go to docs/reliability.md by hand.
"""

import argparse
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import Server  # noqa: E402
from run import rss_mb  # noqa: E402

STREAM = re.compile(r'sse-connect="([^"]+)"')


def cli_while_streaming(runs: int, streams: int, extra_args=()) -> dict:
    """``runs`` `llm -m echo` prompts, one after another, while the server
    streams ``streams`` replies the whole time."""
    with tempfile.TemporaryDirectory() as tmp:
        user_dir = pathlib.Path(tmp) / "llm"
        user_dir.mkdir()
        extra_args = ["-s", "plugins.datasette-llm-htmx.max_generations_per_actor", "100", *extra_args]
        server = Server(user_dir, extra_args=extra_args,
                        env={"LLM_USER_PATH": str(user_dir)}).start()
        env = {**os.environ, "LLM_USER_PATH": str(user_dir)}
        cids = []
        try:
            with server.client() as client:
                # the replies stream for as long as the CLI runs (about 0.6 s each)
                chunks = str(int(runs * 0.6 / 0.005))
                for i in range(streams):
                    response = client.post("/-/llm/start", data={
                        "model_id": "steady", "prompt": f"server {i}",
                        "option_chunks": chunks, "option_delay": "0.005",
                    })
                    cids.append(response.headers["location"].rsplit("/", 1)[1])
            failures, errors = 0, []
            started = time.monotonic()
            for i in range(runs):
                result = subprocess.run(
                    [sys.executable, "-m", "llm", "-m", "echo", f"cli prompt {i}"],
                    env=env, capture_output=True, text=True,
                )
                if result.returncode != 0:
                    failures += 1
                    errors.append(result.stderr.strip().splitlines()[-1:])
            cli_seconds = time.monotonic() - started
            # let the server finish its replies
            deadline = time.monotonic() + 300
            conn = sqlite3.connect(user_dir / "logs.db")
            while time.monotonic() < deadline:
                done = conn.execute(
                    "select count(*) from turns where thread_id in (%s)" % ",".join("?" * len(cids)),
                    cids,
                ).fetchone()[0]
                if done == len(cids):
                    break
                time.sleep(0.5)
            cli_logged = conn.execute(
                "select count(*) from turn_search where prompt like 'cli prompt %'"
            ).fetchone()[0]
            server_logged = done
        finally:
            server.stop()
    return {
        "cli runs": runs,
        "cli failures": failures,
        "cli logged": cli_logged,
        "cli lost": runs - cli_logged,
        "server replies": streams,
        "server logged": server_logged,
        "server lost": streams - server_logged,
        "cli seconds": round(cli_seconds, 1),
        "errors": errors[:3],
    }


LOGGER = """
import sqlite3, sys, llm, sqlite_utils
path, count, immediate = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if immediate:
    # what llm could do: take the write lock as the transaction begins, so
    # SQLite's busy handler waits for another writer instead of failing
    import contextlib
    @contextlib.contextmanager
    def atomic(self):
        if self.conn.in_transaction:
            yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()
    sqlite_utils.Database.atomic = atomic
model = llm.get_model("echo")
failures = 0
for i in range(count):
    response = model.prompt(f"writer prompt {i}")
    response.text()
    try:
        response.log_to_db(sqlite_utils.Database(path))
    except sqlite3.OperationalError:
        failures += 1
print(failures)
"""


def llm_writers_alone(writers: int, count: int, immediate: bool) -> dict:
    """``writers`` processes logging with llm's own API at once, no server."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "logs.db"
        subprocess.run([sys.executable, "-c", "import llm.migrations, sqlite_utils, sys; "
                        "llm.migrations.migrate(sqlite_utils.Database(sys.argv[1]))", str(path)],
                       check=True)
        env = {**os.environ, "LLM_USER_PATH": tmp}
        processes = [
            subprocess.Popen([sys.executable, "-c", LOGGER, str(path), str(count), "1" if immediate else "0"],
                             env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(writers)
        ]
        failures = sum(int(p.communicate()[0].strip() or 0) for p in processes)
        logged = sqlite3.connect(path).execute("select count(*) from turns").fetchone()[0]
    return {"writers": writers, "each": count, "begin immediate": immediate,
            "lock failures": failures, "logged": logged}


def stalled_clients(megabytes: float, clients: int) -> dict:
    """Clients that open a stream of a long reply and stop reading."""
    import socket

    with tempfile.TemporaryDirectory() as tmp:
        user_dir = pathlib.Path(tmp) / "llm"
        user_dir.mkdir()
        server = Server(user_dir, env={"LLM_USER_PATH": str(user_dir)},
                        extra_args=["-s", "plugins.datasette-llm-htmx.title_model", "false"]).start()
        try:
            chunks = int(megabytes * 1024 * 1024 / 9)  # "tokenNNN " is about 9 bytes
            with server.client() as client:
                client.get("/-/llm")
                before = rss_mb(server.process.pid)
                # all the text at once, then a pause in which the clients
                # connect, take the snapshot's first bytes and stall
                response = client.post("/-/llm/start", data={
                    "model_id": "steady", "prompt": "long", "option_chunks": str(chunks),
                    "option_hold": "4",
                })
                cid = response.headers["location"].rsplit("/", 1)[1]
                url = STREAM.search(client.get(f"/-/llm/{cid}").text).group(1)
            cookie = "ds_actor=" + server.root_cookies["ds_actor"]
            sockets = []
            for _ in range(clients):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
                sock.recv(1024)  # the headers, then nothing more is read
                sockets.append(sock)
            peak = before
            deadline = time.monotonic() + 180
            conn = sqlite3.connect(user_dir / "logs.db")
            while time.monotonic() < deadline:
                peak = max(peak, rss_mb(server.process.pid))
                if conn.execute("select count(*) from turns").fetchone()[0]:
                    break
                time.sleep(0.2)
            # the page renders the reply's markdown, as the streams' done
            # events would: both runs pay that, only the clients differ
            with server.client() as client:
                client.get(f"/-/llm/{cid}")
            for _ in range(10):
                peak = max(peak, rss_mb(server.process.pid))
                time.sleep(0.2)
            stalled = rss_mb(server.process.pid)
            for sock in sockets:
                sock.close()
            time.sleep(3)
            after = rss_mb(server.process.pid)
        finally:
            server.stop()
    return {
        "reply MB": megabytes,
        "stalled clients": clients,
        "RSS before MB": round(before, 1),
        "RSS peak MB": round(peak, 1),
        "RSS while stalled MB": round(stalled, 1),
        "RSS after clients left MB": round(after, 1),
        "growth MB": round(peak - before, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["cli", "stalled", "llm-alone"])
    parser.add_argument("--writers", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--streams", type=int, default=5)
    parser.add_argument("--megabytes", type=float, default=4)
    parser.add_argument("--clients", type=int, default=5)
    args = parser.parse_args()
    if args.what == "cli":
        print(cli_while_streaming(args.runs, args.streams))
    elif args.what == "llm-alone":
        print(llm_writers_alone(args.writers, args.runs, immediate=False))
        print(llm_writers_alone(args.writers, args.runs, immediate=True))
    else:
        alone = stalled_clients(args.megabytes, 0)
        stalled = stalled_clients(args.megabytes, args.clients)
        print("no client:", alone)
        print(f"{args.clients} stalled clients:", stalled)
        print("cost of the stalled clients, MB:", round(stalled["growth MB"] - alone["growth MB"], 1))


if __name__ == "__main__":
    main()
