"""The request-log buffer: appends return at once; rows are written in batches off the response path.

One flusher task per process writes whatever has gathered every LOG_FLUSH_INTERVAL seconds (or
sooner when LOG_FLUSH_BATCH rows wait), through one `sync_to_async` call to a service. When the
database cannot be reached the rows stay buffered and are retried with backoff; past
LOG_BUFFER_MAX rows the oldest are dropped and counted (`dropped`), never silently. The ASGI
lifespan shutdown (SIGTERM) flushes what is left before the process exits.

A row the database refuses (bad data, whatever slipped past gateway/writable.py) never holds back
the rows behind it: a refused batch is split in halves until the row is isolated, and that row is
written in a minimal form — ids, status, tokens, cost, and `write_error` saying why — so its
request and its ledger debit are never lost. Only when even the minimal form is refused (the
database refuses everything: a missing table, a full disk) do the rows wait, like an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction

from billing import services as billing_services
from gateway import dbstate, scrub, writable
from gateway import services as core_services

logger = logging.getLogger(__name__)

_rows: deque[dict[str, Any]] = deque()
_wake = asyncio.Event()  # made anew with each flusher: an Event belongs to the loop that first waits on it
_task: asyncio.Task[None] | None = None
dropped = 0  # rows lost to the bound since the process started
_writing = 0  # rows handed to the database and not yet written
last_failure = ""  # why the last flush left rows buffered ("" when it wrote everything)
_serving = 0  # requests being served right now (see `serving`)
_UNWIND_SECONDS = 2.0  # how long a shutdown waits for requests still unwinding


def persist(*, entries: list[dict[str, Any]]) -> int:
    """Write a batch of request-log rows (the core's service) and their usage debits (billing's)
    in one transaction. Idempotent: rows and debits already written are skipped. Then ask for the
    budget-alert check of the projects that spent. Runs in a worker thread."""
    logs = [{k: v for k, v in entry.items() if k != "business_unit_id"} for entry in entries]
    try:
        with transaction.atomic():
            written = core_services.record_request_logs(entries=logs)
            debited = billing_services.record_usage(entries=entries)
        if debited:
            billing_services.queue_budget_alert_check(
                project_ids=sorted({e["project_id"] for e in entries if e.get("project_id") is not None}),
                key_ids=sorted({e["key_id"] for e in entries if e.get("key_id") is not None}),
            )
    finally:
        close_old_connections()  # a worker thread of the log buffer: give the connection back
    return written


_write = sync_to_async(persist, thread_sensitive=False)


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
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:  # none yet, or of a loop now gone
        global _wake
        _wake = asyncio.Event()
        # A context of its own: the flusher outlives the request that happened to start it.
        _task = loop.create_task(_flush_forever(), context=contextvars.Context())


class _Unwritable(Exception):
    """The database refuses even a minimal row: nothing can be written now (like an outage)."""


async def flush() -> bool:
    """Write everything buffered now. False when the database could not take it (rows stay buffered)."""
    global _writing, last_failure
    while _rows:
        batch = [_rows.popleft() for _ in range(min(len(_rows), settings.LOG_FLUSH_BATCH))]
        _writing = len(batch)
        try:
            await _write_isolating(batch)
        except Exception as exc:
            _rows.extendleft(reversed(batch))  # rows already written are skipped on the retry
            if _unreachable(exc):
                dbstate.report_failure(exc)
            cause = exc.__cause__ if isinstance(exc, _Unwritable) and exc.__cause__ else exc
            last_failure = _describe(cause, unreachable=not isinstance(exc, _Unwritable))
            logger.warning("request-log flush failed (%s); %d rows kept for retry", last_failure, len(_rows))
            return False
        finally:
            _writing = 0
    last_failure = ""
    return True


async def _write_isolating(batch: list[dict[str, Any]]) -> None:
    """Write the batch; when the database refuses it for its data, split it until the refused row
    is alone and store that row in its minimal form. Raises when the database cannot be reached
    (or refuses even the minimal form): the caller keeps the rows."""
    try:
        await _write(entries=batch)
        return
    except Exception as exc:
        if _unreachable(exc):
            raise
        refused = exc
    if len(batch) > 1:
        middle = len(batch) // 2
        await _write_isolating(batch[:middle])
        await _write_isolating(batch[middle:])
        return
    reason = _describe(refused, unreachable=False)
    try:
        await _write(entries=[minimal(batch[0], reason=reason)])
    except Exception as exc:
        if _unreachable(exc):
            raise
        raise _Unwritable(reason) from exc
    logger.error("request %s: its log row was refused (%s); stored in minimal form", batch[0].get("request_id"), reason)


def minimal(row: dict[str, Any], *, reason: str) -> dict[str, Any]:
    """The part of a row that the database takes whatever the request held: ids, status, tokens
    and cost (so its ledger debit is written too), and why the rest is missing."""
    kept = {name: row.get(name) for name in _MINIMAL}
    return kept | {
        "model": writable.text(row.get("model"), 128),
        "key_prefix": writable.text(row.get("key_prefix"), 20),
        "endpoint": writable.text(row.get("endpoint"), 40),
        "error_code": writable.text(row.get("error_code"), 60),
        "input_tokens": writable.count(row.get("input_tokens")),
        "output_tokens": writable.count(row.get("output_tokens")),
        "cached_tokens": writable.count(row.get("cached_tokens")),
        "cost": writable.money(row.get("cost"), places=8, digits=16),
        "created_at": row["created_at"] if isinstance(row.get("created_at"), datetime) else datetime.now(UTC),
        "status_code": min(max(status, 0), 32_767) if isinstance(status := row.get("status_code"), int) else 0,
        "latency_ms": row["latency_ms"] if isinstance(row.get("latency_ms"), float) else 0.0,
        "ttft_ms": row["ttft_ms"] if isinstance(row.get("ttft_ms"), float) else None,
        "write_error": writable.text(reason, 200),
    }


_MINIMAL = (
    "request_id",
    "key_id",
    "project_id",
    "business_unit_id",
    "member_id",
    "deployment_id",
    "stream",
    "usage_estimated",
)


def _unreachable(exc: BaseException) -> bool:
    """The database is away or busy (connection lost, pool exhausted, locked, deadlock): try again
    later. Anything else is a refusal of the data, which waiting would not change."""
    return isinstance(exc, dbstate.UNREACHABLE)


def _describe(exc: BaseException, *, unreachable: bool) -> str:
    what = "database unavailable" if unreachable else "the database refused it"
    detail = scrub.text(str(exc).splitlines()[0][:120]) if str(exc).strip() else ""
    return f"{what}: {type(exc).__name__}" + (f": {detail}" if detail else "")


async def _flush_forever() -> None:
    delay = settings.LOG_FLUSH_INTERVAL
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await _wake.wait()
        _wake.clear()
        if not dbstate.available():  # its probe says when it is back; until then the rows wait here
            delay = settings.DATABASE_PROBE_INTERVAL
            continue
        ok = await flush()
        delay = settings.LOG_FLUSH_INTERVAL if ok else min(max(delay * 2, 0.5), 30.0)


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """Around serving one request (the proxy's handler): a shutdown waits for it to hand its row over."""
    global _serving
    _serving += 1
    try:
        yield
    finally:
        _serving -= 1


async def shutdown() -> None:
    """Flush on a clean shutdown, retrying briefly if the database hiccups. Requests the server has
    just cancelled hand their rows over as they unwind: the flush waits for them (a moment at most)."""
    global _task
    for _ in range(int(_UNWIND_SECONDS / 0.02)):
        if not _serving:
            break
        await asyncio.sleep(0.02)
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await _task
        _task = None
    for attempt in range(5):
        if not dbstate.available() and await dbstate.aping() is not None:
            break  # known away, and still: waiting on the pool would only delay the exit
        if await flush():
            return
        await asyncio.sleep(0.2 * (attempt + 1))
    logger.error("shutting down with %d request-log rows unwritten (%s)", len(_rows), last_failure or "unknown cause")
