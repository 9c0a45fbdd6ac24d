"""Stopping the server promptly, with streams open and models running.

uvicorn runs the shutdown hook only once every connection has closed, and
an event stream does not close by itself: so the plugin learns of SIGTERM
and SIGINT itself, ends every reply (and with it every stream) at once, and
lets the server's own handler go on. A model that ignores cancellation
would keep asyncio (which waits for every task at exit) alive for good: a
last timer ends the process after a grace period.
"""

import asyncio
import logging
import os
import signal
import threading
import time

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # seconds the process waits at exit for models that ignore a stop


def watch_signals(registry) -> None:
    """uvicorn runs the shutdown hook only once every connection has
    closed, and an event stream does not close by itself: learn of
    SIGTERM and SIGINT directly, so that replies (and with them their
    streams) end at once and the server can stop.

    Called as replies and streams begin, not at startup: Datasette runs
    the startup hook before the server has put in its own handlers,
    which are the ones to pass the signal on to."""
    if registry._watching or threading.current_thread() is not threading.main_thread():
        return
    registry._watching = True
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or previous is signal.default_int_handler:
            continue  # no server of ours to chain to (in-process, tests)

        def on_signal(number, frame, previous=previous):
            loop.call_soon_threadsafe(_shut_down, registry)
            previous(number, frame)

        signal.signal(signum, on_signal)

def _shut_down(registry) -> None:
    task = asyncio.ensure_future(registry.shutdown())

    def deadline(_):
        if registry.detached:
            # asyncio waits for every task at exit, and a model that
            # ignores cancellation would keep the process alive for good
            _exit_after(SHUTDOWN_GRACE, len(registry.detached))

    task.add_done_callback(deadline)


def _exit_after(seconds: float, count: int) -> None:
    def wait_then_exit():
        time.sleep(seconds)
        logger.error(
            "%d model call(s) ignored cancellation; exiting without them", count
        )
        os._exit(0)

    threading.Thread(target=wait_then_exit, daemon=True, name="llm-htmx-exit").start()


