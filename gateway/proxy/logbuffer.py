"""The request-log buffer: appends return at once; rows are written in batches off the response path.

One flusher task per process writes whatever has gathered every LOG_FLUSH_INTERVAL seconds (or
sooner when LOG_FLUSH_BATCH rows wait), through one `sync_to_async` call to a service. When the
database is down the rows stay buffered and are retried with backoff; past LOG_BUFFER_MAX rows
the oldest are dropped and counted (`dropped`), never silently. The ASGI lifespan shutdown
(SIGTERM) flushes what is left before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from billing import budget

logger = logging.getLogger(__name__)

_rows: deque[dict[str, Any]] = deque()
_wake = asyncio.Event()
_task: asyncio.Task[None] | None = None
dropped = 0  # rows lost to the bound since the process started
_writing = 0  # rows handed to the database and not yet written
_write = sync_to_async(budget.persist, thread_sensitive=False)  # log rows and ledger debits together


def append(row: dict[str, Any]) -> None:
    global dropped
    _rows.append(row)
    while len(_rows) > settings.LOG_BUFFER_MAX:
        _rows.popleft()
        dropped += 1
        if dropped == 1 or dropped % 1000 == 0:
            logger.error("request-log buffer full: %d rows dropped so far", dropped)
    _ensure_flusher()
    if len(_rows) >= settings.LOG_FLUSH_BATCH:
        _wake.set()


def pending() -> int:
    """Rows buffered or being written right now."""
    return len(_rows) + _writing


def _ensure_flusher() -> None:
    global _task
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(_flush_forever())


async def flush() -> bool:
    """Write everything buffered now. False when the database refused (rows stay buffered)."""
    global _writing
    while _rows:
        batch = [_rows.popleft() for _ in range(min(len(_rows), settings.LOG_FLUSH_BATCH))]
        _writing = len(batch)
        try:
            await _write(entries=batch)
        except Exception as exc:
            _rows.extendleft(reversed(batch))
            logger.warning(
                "request-log flush failed (%s: %s); %d rows kept for retry",
                type(exc).__name__,
                str(exc)[:200],
                len(_rows),
            )
            return False
        finally:
            _writing = 0
    return True


async def _flush_forever() -> None:
    delay = settings.LOG_FLUSH_INTERVAL
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await _wake.wait()
        _wake.clear()
        ok = await flush()
        delay = settings.LOG_FLUSH_INTERVAL if ok else min(max(delay * 2, 0.5), 30.0)


async def shutdown() -> None:
    """Flush on a clean shutdown, retrying briefly if the database hiccups."""
    global _task
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await _task
        _task = None
    for attempt in range(5):
        if await flush():
            return
        await asyncio.sleep(0.2 * (attempt + 1))
    logger.error("shutting down with %d request-log rows unwritten (database unavailable)", len(_rows))
