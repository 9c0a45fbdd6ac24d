"""A sync-only model (llm-markov, SmolLM2) runs in a thread of its own; its
chunks cross to the event loop in batches, one wake-up per batch however
fast the model is.

Stopping sets a flag the thread reads between chunks. A chunk the model is
still computing cannot be interrupted from outside: the thread finishes it
and then ends, and what it produced after the stop is dropped. The loop
never waits for it.
"""

import asyncio
import threading

# Threads of models that were told to stop but are still inside a chunk.
# Counted so that a model that hangs cannot pile up threads without limit.
_alive = 0
_alive_lock = threading.Lock()


def threads_alive() -> int:
    return _alive


async def batches_from_thread(produce, *, name: str, stop: threading.Event):
    """Yield lists of the items ``produce()`` iterates, run in a thread."""
    global _alive
    loop = asyncio.get_running_loop()
    lock = threading.Lock()
    wake = asyncio.Event()
    pending: list = []
    ended: list = []  # [error or None] once the thread is done

    def wake_loop():
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:
            pass  # the loop closed (shutdown) while the model ran on

    def work():
        global _alive
        error = None
        try:
            iterator = iter(produce())
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    with lock:
                        pending.append(item)
                        first = len(pending) == 1
                    if first:
                        wake_loop()
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as e:  # handed to the event loop
            error = e
        finally:
            with lock:
                ended.append(error)
            with _alive_lock:
                _alive -= 1
            wake_loop()

    with _alive_lock:
        _alive += 1
    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        while True:
            await wake.wait()
            wake.clear()
            with lock:
                items, pending[:] = pending[:], []
                done = bool(ended)
            if items:
                yield items
            if done:
                if ended[0] is not None:
                    raise ended[0]
                return
    finally:
        stop.set()
