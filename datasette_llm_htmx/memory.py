"""Giving memory back to the system after a long reply.

A long reply is many small objects while it streams and is logged (llm
keeps an event per chunk); freed, they leave glibc's heap full of holes it
does not return by itself, so the server's RSS stays at its peak. Asking
glibc to trim after such a reply brings it back down (300,000 chunks:
193 MB -> 100 MB, measured). Elsewhere than glibc, this does nothing."""

import asyncio
import ctypes
import ctypes.util

WORTH_IT = 256 * 1024  # characters of a reply, or of a stream, before trimming
BUSY = 16  # replies at once: when the last of them ends, trim

try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None

_pending: asyncio.Task | None = None


def trim_soon() -> None:
    """Trim once the work in hand is done, at most one trim at a time."""
    global _pending
    if _malloc_trim is None or (_pending is not None and not _pending.done()):
        return
    _pending = asyncio.ensure_future(_trim())


async def _trim() -> None:
    await asyncio.sleep(0.5)  # let the last references go first
    await asyncio.to_thread(_malloc_trim, 0)
