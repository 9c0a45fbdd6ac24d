"""Faults, against real `datasette serve` processes: models that hang or
will not be stopped, a database locked by another process or on a full
disk, a second worker, stalled clients, shutdown. None may lose a prompt,
wedge a reply or answer a 500."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import helpers
from helpers import calls, read_some, streamed_text, wait_until
from sse_client import read_until_final

HTMX = {"HX-Request": "true"}


def plugin(name, value):
    return ["-s", f"plugins.datasette-llm-htmx.{name}", str(value)]


def start(client, model_id="steady", prompt="Hello", **fields):
    """(cid, stream URL): the odd models take no options."""
    if model_id != "steady":
        fields.setdefault("option_delay", "")
    cid, url, _ = helpers.start(client, model_id=model_id, prompt=prompt, **fields)
    return cid, url


def unlogged_row(path, mid):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "select status, text, error from unlogged_messages where id = ?", [mid]
        ).fetchone()
    finally:
        conn.close()


def textarea(page, name):
    import html

    start_at = page.index(f'name="{name}"')
    opened = page.index(">", start_at) + 1
    return html.unescape(page[opened : page.index("</textarea>", opened)])


class WriteLock:
    """Another process holding logs.db's write lock, as the llm CLI does
    while it logs (for much longer, here)."""

    def __init__(self, path, seconds):
        self.process = subprocess.Popen(
            [sys.executable, "-c", (
                "import sqlite3, sys, time\n"
                f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                "conn.execute('begin immediate')\n"
                "print('locked', flush=True)\n"
                f"time.sleep({seconds})\n"
            )],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked"

    def release(self):
        self.process.kill()
        self.process.wait()


# Models that will not stop


@pytest.mark.parametrize("model_id", ["odd", "odd-sync"])
def test_stop_answers_at_once_whatever_the_model_does(make_server, user_dir, model_id):
    """odd ignores cancellation; odd-sync sits inside a chunk for an hour."""
    server = make_server()
    with server.client() as client:
        cid, url = start(client, model_id, "hang")
        events = read_some(client, url, 2)
        assert "partial" in "".join(e.data for e in events)
        mid = url.rsplit("/", 1)[1]
        began = time.monotonic()
        response = client.post(f"/-/llm/{cid}/stop/{mid}", headers=HTMX)
        assert time.monotonic() - began < 2
        assert response.status_code == 200 and "status-stopped" in response.text
        # the stream ends too, with the stopped message
        assert "status-stopped" in read_until_final(client, url, timeout=5)[-1].data
        # page and database agree on the text
        page = client.get(f"/-/llm/{cid}").text
        assert "status-stopped" in page
        row = wait_until(lambda: (r := unlogged_row(user_dir / "logs.db", mid)) and r[0] == "stopped" and r)
        assert row[1] == "partial "
        # and a stopped model does not hold the conversation: a retry starts
        assert client.post(f"/-/llm/{cid}/retry/{mid}").status_code == 303


def test_a_silent_model_fails_after_the_idle_timeout(make_server):
    server = make_server(extra_args=plugin("idle_timeout", 1))
    with server.client() as client:
        cid, url = start(client, "odd", "hang")
        began = time.monotonic()
        final = read_until_final(client, url, timeout=10)[-1]
    assert final.name == "error"
    assert "The model sent nothing for 1 seconds, so the reply was stopped." in final.data
    assert time.monotonic() - began < 5


def test_a_reply_that_runs_too_long_fails_at_the_overall_timeout(make_server):
    server = make_server(extra_args=plugin("generation_timeout", 1.5))
    with server.client() as client:
        cid, url = start(client, option_chunks="1000", option_delay="0.01")
        events = read_until_final(client, url, timeout=10)
    final = events[-1]
    assert final.name == "error"
    assert "took longer than 1.5 seconds" in final.data
    # the text so far is kept: shown as it streamed, kept by the error event
    assert "token0" in streamed_text(events) and 'hx-preserve="true"' in final.data


# Titles


@pytest.mark.parametrize("title_model", ["odd", "odd-sync"])
def test_a_hanging_title_model_never_holds_up_replies_or_pages(make_server, title_model):
    server = make_server(
        extra_args=plugin("title_model", title_model),
        env={"LLM_HTMX_TEST_SET": "titles.TITLE_TIMEOUT=1"},
    )
    with server.client() as client:
        for i in range(5):  # more than the two title threads
            prompt = f"hang-title number {i} asks a question"
            began = time.monotonic()
            cid, url = start(client, prompt=prompt, option_chunks="3")
            events = read_until_final(client, url, timeout=10)
            # done comes when the text is done, not when the title is
            assert events[-1].name == "done"
            assert time.monotonic() - began < 3
            page_began = time.monotonic()
            assert client.get(f"/-/llm/{cid}").status_code == 200
            assert client.get("/-/llm").status_code == 200
            assert time.monotonic() - page_began < 1
        # the title asked for gives up in time: the first prompt instead
        title = client.get(f"/-/llm/{cid}/title?show=title&wait=1", headers=HTMX, timeout=30)
        assert "<h1>hang-title number 4 asks a question</h1>" in title.text


# The database


def test_a_start_while_another_process_holds_the_write_lock(make_server, user_dir):
    server = make_server(env={"LLM_HTMX_TEST_SET": "generations.START_WAIT=2"})
    lock = WriteLock(user_dir / "logs.db", 60)
    try:
        with server.client() as client:
            began = time.monotonic()
            response = client.post("/-/llm/start", data={
                "model_id": "steady", "prompt": "my precious prompt", "system": "my system",
            }, follow_redirects=True)
            assert time.monotonic() - began < 6
            assert response.status_code == 503
            assert "The log database is busy" in response.text
            assert textarea(response.text, "prompt") == "my precious prompt"
            assert textarea(response.text, "system") == "my system"
            response = client.post(
                "/-/llm/start", data={"model_id": "steady", "prompt": "again"}, headers=HTMX
            )
            assert response.status_code == 503
            assert response.headers["HX-Retarget"] == "#form-error"
    finally:
        lock.release()
    with server.client() as client:
        cid, url = start(client, prompt="after the lock")
        assert read_until_final(client, url)[-1].name == "done"
    conn = sqlite3.connect(user_dir / "logs.db")
    prompts = [row[0] for row in conn.execute("select prompt from initiated")]
    assert prompts == ["after the lock"]


def test_a_reply_that_ends_while_the_lock_is_held_still_ends(make_server, user_dir):
    server = make_server(env={"LLM_HTMX_TEST_SET": "generations.LOG_WAIT=1"})
    with server.client() as client:
        cid, url = start(client, option_chunks="30", option_delay="0.05")
        read_some(client, url, 2)
        lock = WriteLock(user_dir / "logs.db", 60)
        try:
            events = read_until_final(client, url, timeout=15)
            final = events[-1]
            # every stream is told, at once: the reply is kept, not logged
            assert final.name == "error"
            assert "could not be logged" in final.data and "token29" in streamed_text(events)
            page = client.get(f"/-/llm/{cid}").text
            assert "status-failed" in page and "token29" in page
        finally:
            lock.release()
        mid = url.rsplit("/", 1)[1]
        # the last word reaches the database once the lock is gone
        row = wait_until(lambda: (r := unlogged_row(user_dir / "logs.db", mid)) and r[0] == "failed" and r)
        assert "token29" in row[1]
        assert "could not be logged" in row[2]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + result.stderr.decode().strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def fill(directory):
    """Fill the disk to the last byte."""
    try:
        with open(directory / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
    except OSError:
        pass


def test_a_full_disk_keeps_the_prompt_and_the_reply(make_server, small_disk):
    database = small_disk / "logs.db"
    server = make_server(extra_args=plugin("database_path", database))
    with server.client() as client:
        cid, url = start(client, option_chunks="40", option_delay="0.05")
        read_some(client, url, 2)
        fill(small_disk)
        # the reply cannot be logged: it says so, and keeps its text
        events = read_until_final(client, url, timeout=30)
        final = events[-1]
        assert final.name == "error" and "disk is full" in final.data
        assert "token39" in streamed_text(events)
        # a start is refused with the prompt kept
        response = client.post(
            "/-/llm/start", data={"model_id": "steady", "prompt": "kept"}, follow_redirects=True
        )
        assert response.status_code == 507
        assert "the disk is full" in response.text
        assert textarea(response.text, "prompt") == "kept"
        # once there is room again, the reply's last word reaches the database
        (small_disk / "filler").unlink()
        mid = url.rsplit("/", 1)[1]
        row = wait_until(lambda: (r := unlogged_row(database, mid)) and r[0] == "failed" and r, timeout=20)
        assert "token39" in row[1]
        cid, url = start(client, prompt="room again")
        assert read_until_final(client, url)[-1].name == "done"


@pytest.mark.parametrize("damage", ["corrupt", "read-only"])
def test_a_logs_db_that_cannot_be_used_stops_startup_in_one_line(tmp_path, damage, small_disk):
    from conftest import HERE

    database = small_disk / "logs.db"
    if damage == "corrupt":
        database.write_bytes(b"this is not a database" * 100)
        expected = f"Error: datasette-llm-htmx: {database} is not a usable SQLite database"
    else:
        conn = sqlite3.connect(database)
        conn.execute("create table t (x)")
        conn.commit()
        conn.close()
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        expected = f"Error: datasette-llm-htmx: {database} is read-only"
    result = subprocess.run(
        [sys.executable, str(HERE / "serve.py"), "serve", "--get", "/-/llm",
         "-s", "plugins.datasette-llm-htmx.database_path", str(database)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "LLM_USER_PATH": str(tmp_path)},
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr


# Two workers


def test_a_second_worker_never_guesses_a_reply_interrupted(make_server, user_dir):
    """The process generating saves only every 3 s here, and the other would
    call a silent one gone after 1 s if it guessed: it must not."""
    quiet = "generations.SAVE_INTERVAL=3,liveness.SILENT_AFTER=1"
    first = make_server(env={"LLM_HTMX_TEST_SET": quiet})
    second = make_server(env={"LLM_HTMX_TEST_SET": quiet})
    with first.client() as client:
        cid, url = start(client, prompt="only once", option_chunks="60", option_delay="0.1")
    mid = url.rsplit("/", 1)[1]
    with second.client() as client:
        for _ in range(10):
            page = client.get(f"/-/llm/{cid}").text
            assert "status-interrupted" not in page
            assert client.post(f"/-/llm/{cid}/retry/{mid}", follow_redirects=True).status_code == 409
            time.sleep(0.4)
        events = read_until_final(client, url, timeout=30)
    assert events[-1].name == "done" and "token59" in streamed_text(events)
    assert calls(user_dir).count("steady\t'only once'") == 1


def test_a_worker_gone_from_this_host_is_known_to_be_gone(make_server, user_dir):
    first = make_server()
    second = make_server()
    with first.client() as client:
        cid, url = start(client, prompt="cut short", option_chunks="400", option_delay="0.05")
        read_some(client, url, 3)
    wait_until(lambda: (r := unlogged_row(user_dir / "logs.db", url.rsplit("/", 1)[1])) and r[1])
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    with second.client() as client:
        page = client.get(f"/-/llm/{cid}").text
    assert "status-interrupted" in page and "token0" in page


# Streams


def test_many_readers_of_a_long_reply_share_one_render(make_server):
    server = make_server(extra_args=plugin("title_model", "false"))
    text = "A paragraph with **bold** and `code` in it, and more words.\n\n" * 20_000  # 1.2 MB
    with server.client() as client:
        cid, url = start(client, option_text=text, option_chunk_size="65536", option_delay="")
    results = []

    def read():
        with server.client() as reader:
            results.append(read_until_final(reader, url, timeout=60)[-1].name)

    began = time.monotonic()
    readers = [threading.Thread(target=read) for _ in range(10)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(90)
    assert results == ["done"] * 10
    assert time.monotonic() - began < 45


def test_stalled_clients_cost_bounded_memory():
    """Clients that open the stream of a long reply and stop reading cost
    the server next to nothing: sends wait for them, nothing piles up."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent.parent / "bench"))
    from reliability import stalled_clients

    alone = stalled_clients(megabytes=2, clients=0)
    stalled = stalled_clients(megabytes=2, clients=6)
    # RSS once settled, while the clients stall: the passing peak of the
    # page's render of 2 MB of markdown (in both runs) is caught by the
    # 0.2 s sampling or not, which moved the peaks by 100 MB under load
    assert stalled["RSS while stalled MB"] - alone["RSS while stalled MB"] < 30, (alone, stalled)
    assert stalled["RSS after clients left MB"] - alone["RSS after clients left MB"] < 30


def test_the_per_actor_limit(make_server):
    server = make_server(extra_args=plugin("max_generations_per_actor", 2))
    with server.client() as client:
        for i in range(2):
            start(client, prompt=f"long {i}", option_chunks="200", option_delay="0.05")
        response = client.post(
            "/-/llm/start", data={"model_id": "steady", "prompt": "third"}, follow_redirects=True
        )
        assert response.status_code == 429
        assert "You already have 2 replies being written" in response.text
        assert textarea(response.text, "prompt") == "third"


def test_shutdown_ends_streams_and_replies_at_once(make_server, user_dir):
    server = make_server()
    with server.client() as client:
        cid, url = start(client, "odd", "hang")  # a model that ignores cancellation
        others = [start(client, prompt=f"long {i}", option_chunks="2000", option_delay="0.05")
                  for i in range(3)]
    finals = []

    def follow():
        with server.client() as reader:
            finals.append(read_until_final(reader, url, timeout=30)[-1])

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(1)
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)
    assert time.monotonic() - began < 10
    follower.join(10)
    assert finals and "status-interrupted" in finals[0].data
    server.start()
    with server.client() as client:
        for other_cid, _ in [(cid, url), *others]:
            page = client.get(f"/-/llm/{other_cid}").text
            assert "status-interrupted" in page, other_cid


def test_rendering_never_pauses_other_streams(make_server):
    """A reply under 20,000 characters that is slow to render (a wide table
    renders at ~60 KB/s), shown for the first time after a restart, while
    another reply streams to someone else: its events keep coming."""
    table = "|" + "a|" * 60 + "\n|" + "-|" * 60 + "\n" + ("|" + "**b**|" * 60 + "\n") * 45
    assert len(table) < 20_000
    # without the file of rendered replies, which would spare this render
    server = make_server(extra_args=plugin("render_cache_file", "false"))
    with server.client() as client:
        cid, url = start(client, option_text=table, option_delay="")
        read_until_final(client, url)
    server.stop()
    server.start()  # nothing rendered yet in this process
    gaps = []
    with server.client() as client:
        _, paced_url = start(client, prompt="paced", option_chunks="100", option_delay="0.03")

        def follow():
            last = None
            with server.client() as reader:
                with reader.stream("GET", paced_url) as response:
                    for line in response.iter_lines():
                        now = time.monotonic()
                        if line.startswith("event: token"):
                            if last is not None:
                                gaps.append(now - last)
                            last = now
                        if line.startswith("event: done"):
                            return

        follower = threading.Thread(target=follow)
        follower.start()
        time.sleep(0.5)
        began = time.monotonic()
        assert client.get(f"/-/llm/{cid}").status_code == 200
        rendering = time.monotonic() - began
        follower.join(30)
    assert rendering > 0.2  # the page did have markdown to render
    # tokens every 30 ms, batched at most every 50 ms: a pause shows as a gap
    assert max(gaps) < 0.25, (max(gaps), rendering)


def test_the_llm_cli_writing_while_the_server_streams():
    """Real `llm` CLI runs logging to the same logs.db while replies stream.
    The server loses nothing. The CLI logs in a transaction that reads
    before it writes, so SQLite fails it at once (it does not wait) if any
    other writer commits in between: llm's own writers alone lose 4 in 5
    that way (bench/reliability.py llm-alone). The plugin's share is one
    short write a second; measured, 2 CLI runs in 900 failed (0.1.0: 1 in
    150). A bound, not zero, on that side: see docs/reliability.md."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent.parent / "bench"))
    from reliability import cli_while_streaming

    outcome = cli_while_streaming(runs=30, streams=4)
    assert outcome["server lost"] == 0, outcome
    assert outcome["cli lost"] <= 1, outcome


@pytest.mark.asyncio
async def test_a_reply_logged_while_its_page_is_read_is_on_the_page(make_datasette, user_dir):
    """A reply ends its unlogged life and is logged by llm in one write. A
    page that reads the conversation while that write commits must see the
    reply once, as logged or as unlogged, never neither (it showed an empty
    conversation about once in 300 zero-delay starts)."""
    import threading

    import llm
    from datasette_llm_htmx.ids import new_id
    from datasette_llm_htmx.store import conversations, unlogged
    from datasette_llm_htmx.store.database import llm_database, read_at_once
    from datasette_llm_htmx.store.records import Message, utcnow

    ds = make_datasette()
    await ds.invoke_startup()
    db = llm_database(ds)
    cid = new_id()
    message = Message(
        id=new_id(), conversation_id=cid, model_id="steady-sync", prompt="Hello",
        system=None, text="", status="running", datetime_utc=utcnow(),
    )
    await db.execute_write_fn(lambda conn: unlogged.record_start(conn, message, "root", True))
    conversation = llm.get_model("steady-sync").conversation()
    conversation.id = cid
    response = conversation.prompt("Hello")
    response.text()
    response.id = message.id

    def log_it():
        conn = sqlite3.connect(db.path, timeout=5)
        with conn:
            unlogged.log_response(conn, [response], message.id)
        conn.close()

    def read(conn):
        writer = None

        def at(statement):
            nonlocal writer
            # the moment between reading llm's tables and the unlogged row
            if writer is None and "from unlogged_messages" in statement:
                writer = threading.Thread(target=log_it)
                writer.start()
                writer.join(0.5)  # it lands at once, unless this read holds its snapshot

        conn.set_trace_callback(at)
        try:
            return conversations.read(conn, cid), writer
        finally:
            conn.set_trace_callback(None)

    read_back, writer = await read_at_once(db, read)
    writer.join()
    assert [m.id for m in read_back.messages] == [message.id]
    after = await read_at_once(db, lambda conn: conversations.read(conn, cid))
    assert [(m.id, m.status) for m in after.messages] == [(message.id, "done")]


@pytest.mark.asyncio
async def test_writes_that_arrive_together_commit_together(make_datasette, user_dir):
    """Fifty starts at once are a few transactions, not fifty in a queue;
    a write that fails in a group is undone alone, and the rest land."""
    from datasette_llm_htmx.store.database import llm_database, write_within

    ds = make_datasette()
    await ds.invoke_startup()
    db = llm_database(ds)
    begins = []
    await db.execute_write_fn(lambda conn: conn.execute("create table grouped_test (n integer)"))
    await db.execute_write_fn(
        lambda conn: conn.set_trace_callback(
            lambda sql: begins.append(sql) if sql.upper().startswith("BEGIN") else None
        ),
        transaction=False,
    )

    def insert(n):
        def write(conn):
            conn.execute("insert into grouped_test values (?)", [n])
            if n == 7:
                raise ValueError("this one fails after writing")
            if n == 9:  # SQLite's error, but this write's own
                conn.execute("insert into no_such_table values (1)")
            return n
        return write

    outcomes = await asyncio.gather(
        *(write_within(db, insert(n), 5, grouped=True) for n in range(50)), return_exceptions=True
    )
    await db.execute_write_fn(lambda conn: conn.set_trace_callback(None), transaction=False)
    assert isinstance(outcomes[7], ValueError)
    assert "no such table" in str(outcomes[9])
    landed = [n for n in range(50) if n not in (7, 9)]
    assert [o for o in outcomes if not isinstance(o, Exception)] == landed
    rows = await db.execute("select n from grouped_test order by n")
    assert [row[0] for row in rows] == landed
    assert 1 <= len(begins) <= 3, begins


@pytest.mark.asyncio
async def test_a_reply_faster_than_its_record_is_logged_after_it(make_datasette, user_dir):
    """The model starts while its record is written (since starts are
    group-committed, the record is queued by a task of its own). A reply
    that ends at once (zero delay, a few chunks) must still be logged after
    its record: logged first, the record would leave an unlogged row behind
    for a reply that is done. Today the task order keeps it so; the reply
    also waits for its record, so it stays so."""
    from helpers import HTMX, ROOT, cid_from, cookies_for, wait_for_generations

    ds = make_datasette()
    cookies = cookies_for(ds, ROOT)
    fast = {"option_chunks": "3", "option_delay": "0"}
    cid = cid_from(await ds.client.post(
        "/-/llm/start", data={"model_id": "steady", "prompt": "Hello", **fast}, cookies=cookies))
    await wait_for_generations(ds)
    for i in range(5):
        response = await ds.client.post(
            f"/-/llm/{cid}/prompt", data={"prompt": f"more {i}", **fast}, headers=HTMX, cookies=cookies)
        assert response.status_code == 200, response.text
        await wait_for_generations(ds)
    db = ds.get_database("llm")
    assert (await db.execute("select count(*) from unlogged_messages")).first()[0] == 0
    assert (await db.execute("select count(*) from turns where thread_id = ?", [cid])).first()[0] == 6


@pytest.mark.asyncio
async def test_a_read_after_a_failed_statement_sees_the_present(make_datasette, user_dir):
    """A failed write on a pooled read connection leaves a transaction open
    there; a read through read_at_once must not read inside it (an old
    moment, and a lock that refuses every write)."""
    from datasette_llm_htmx.store.database import llm_database, read_at_once, write_within

    ds = make_datasette(config={"settings": {"num_sql_threads": 1}})
    await ds.invoke_startup()
    db = llm_database(ds)
    await db.execute_write_fn(lambda conn: conn.execute("create table seen (n integer)"))
    with pytest.raises(Exception):
        await db.execute("insert into seen values (0)")  # read-only connection
    count = lambda conn: conn.execute("select count(*) from seen").fetchone()[0]
    assert await read_at_once(db, count) == 0
    await write_within(db, lambda conn: conn.execute("insert into seen values (1)"), 2, grouped=True)
    assert await read_at_once(db, count) == 1
