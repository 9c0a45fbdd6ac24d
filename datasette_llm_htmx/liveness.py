"""Which process generates a reply, and whether it still can.

A reply in flight belongs to the process that started it. Another process
(a second worker sharing logs.db, or this one after a restart) shows it as
interrupted only when that process is known to have ended: it said so at
shutdown, it is gone from this host, or, on another host, its heartbeat
has been silent far longer than it ever is while it runs. Never a guess
from a reply merely being slow.
"""

import datetime
import os
import secrets
import socket

from .store.records import Worker

# A process on another host whose heartbeat (written every second while it
# generates) has been silent this long is taken to have ended.
SILENT_AFTER = 60.0


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, as this host counts it: a later process
    that gets the same pid has another start."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[19]  # starttime, in clock ticks since boot
    except (OSError, IndexError):
        return None


def _this_worker() -> Worker:
    host, pid = socket.gethostname(), os.getpid()
    return Worker(
        id=f"{host}:{pid}:{secrets.token_hex(4)}",
        host=host,
        pid=pid,
        process_start=_process_start(pid),
        heartbeat_utc="",
        stopped_utc=None,
    )


THIS_WORKER = _this_worker()


def has_ended(message, running_here: bool) -> bool:
    """Is the process that was generating ``message`` known to be gone?"""
    if not message.worker:
        return True
    if message.worker == THIS_WORKER.id:
        return not running_here
    record = message.worker_record
    if record is not None:
        if record.stopped_utc:
            return True
        if record.host == THIS_WORKER.host:
            return not _alive(record.pid, record.process_start)
        return _age_seconds(record.heartbeat_utc) > SILENT_AFTER
    # 0.1.0 kept no worker records: its worker ids are host:pid:token
    host, _, rest = message.worker.partition(":")
    pid = rest.partition(":")[0]
    if host == THIS_WORKER.host and pid.isdigit():
        return not _alive(int(pid), None)
    return _age_seconds(message.updated_utc) > SILENT_AFTER


def _alive(pid: int, process_start: str | None) -> bool:
    if pid == THIS_WORKER.pid:
        return False  # this process, yet another worker id: one before it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    if process_start is None:
        return True
    return _process_start(pid) in (process_start, None)


def _age_seconds(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    then = datetime.datetime.fromisoformat(timestamp)
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()
