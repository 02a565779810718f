"""Whether the database answers, as this process last saw it, so the hot path never waits for one
that is away.

A read that fails or takes longer than DATABASE_HOT_PATH_TIMEOUT marks the database away
(`report_failure`). From then on the hot path's caches serve what they have without trying
(gateway/hotcache.py), the log writer keeps its rows, and `/readyz` says so at once; one probe per
process pings the database every DATABASE_PROBE_INTERVAL seconds (through the same connection
pool, waiting at most that long) and marks it back the moment it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg
from asgiref.sync import sync_to_async
from django import db
from django.conf import settings
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)

# Errors that mean "the database cannot be reached or is busy" (connection lost, pool exhausted,
# locked), as opposed to a refusal of what was asked, which waiting would not change.
UNREACHABLE = (db.OperationalError, db.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError, OSError)

_away_since: float | None = None  # time.monotonic() when a read last failed; None: it answers
_cause = ""
_probe: asyncio.Task[None] | None = None


def available() -> bool:
    """False while the database is known to be away (a read failed and no probe has seen it since)."""
    return _away_since is None


def problem() -> str:
    """Why it is away, for /readyz ("" when it answers)."""
    return "" if _away_since is None else f"unreachable for {time.monotonic() - _away_since:.0f} s ({_cause})"


def report_failure(exc: BaseException) -> None:
    """A read on the hot path failed or timed out: treat the database as away until a probe sees it."""
    global _away_since, _cause
    if _away_since is None:
        _away_since, _cause = time.monotonic(), type(exc).__name__
        logger.warning("database unreachable (%s): serving from cache until it answers again", _cause)
    _ensure_probe()


def report_success() -> None:
    global _away_since
    if _away_since is not None:
        logger.warning("database reachable again after %.1f s", time.monotonic() - _away_since)
        _away_since = None


def ping(*, timeout: float) -> str | None:
    """SELECT 1 through the connection pool, waiting at most `timeout` seconds for a connection.
    None when it answered, else the error's name. Synchronous (a thread of its own)."""
    pool = getattr(connection, "pool", None)  # psycopg's pool: PostgreSQL under ASGI
    try:
        if pool is not None:
            # Django opens its pool at a process's first query; a readiness probe may come first (a
            # new pod gets no traffic before it is ready), so open it here too (a no-op once open).
            pool.open()
            with pool.connection(timeout=timeout) as conn:
                conn.execute("SELECT 1")
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
    except Exception as exc:  # any driver or pool error means "not answering"
        return type(exc).__name__
    finally:
        if pool is None and not connection.in_atomic_block:  # never inside a caller's transaction (tests)
            close_old_connections()
    return None


_ping = sync_to_async(ping, thread_sensitive=False)


async def aping() -> str | None:
    """`ping` from the event loop, waiting at most DATABASE_PROBE_INTERVAL; a success marks it back."""
    if (failed := await _ping(timeout=settings.DATABASE_PROBE_INTERVAL)) is None:
        report_success()
    return failed


def _ensure_probe() -> None:
    global _probe
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # a thread (a page, a command): the proxy's loop starts the probe on its next failure
    if _probe is None or _probe.done() or _probe.get_loop() is not loop:
        _probe = loop.create_task(_probe_until_back())


async def _probe_until_back() -> None:
    while _away_since is not None:
        await asyncio.sleep(settings.DATABASE_PROBE_INTERVAL)
        await aping()


async def shutdown() -> None:
    global _probe
    if _probe is not None:
        _probe.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await _probe
        _probe = None


def reset() -> None:
    """Forget what was seen (tests)."""
    global _away_since, _cause
    _away_since, _cause = None, ""
