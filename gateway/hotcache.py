"""The in-process cache of what the hot path reads from the database (keys, the model catalog,
budgets): stale-while-revalidate, so no request waits for a database that is slow or away.

- A fresh entry is returned.
- An expired one is returned at once too, and one refresh per entry runs in the background (none
  while the database is known to be away: gateway/dbstate.py's probe says when to try again). It
  keeps serving for up to CATALOG_STALE_GRACE seconds past its expiry.
- An entry never read (or too stale) is loaded now, concurrent misses sharing one load, for at
  most DATABASE_HOT_PATH_TIMEOUT seconds; while the database is known to be away it fails at once.
- A load that fails to reach the database, or is slow, marks the database away.
- `clear()` (an invalidation: a revoked key, a changed budget) drops every entry for good: what was
  invalidated is never served stale.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from django.conf import settings

from gateway import dbstate

T = TypeVar("T")


class DatabaseAway(Exception):
    """A value the hot path needs was never read, and the database cannot be read now."""


class HotCache(Generic[T]):
    """An LRU of values read from the database, with per-entry expiry (see the module's docstring)."""

    def __init__(self, max_size: int) -> None:
        self._entries: OrderedDict[Any, tuple[float, T]] = OrderedDict()
        self._loading: dict[Any, asyncio.Future[T]] = {}
        self._refreshing: set[Any] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._max_size = max_size
        self._generation = 0

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1

    async def get(self, key: Any, load: Callable[[], Awaitable[T]], ttl: Callable[[T], float]) -> T:
        entry = self._entries.get(key)
        if entry is not None:
            expires, value = entry
            now = time.monotonic()
            if expires > now:
                return value
            if now - expires <= settings.CATALOG_STALE_GRACE:
                self._refresh(key, load, ttl)
                return value
        return await self._load_now(key, load, ttl)

    async def _load_now(self, key: Any, load: Callable[[], Awaitable[T]], ttl: Callable[[T], float]) -> T:
        future = self._loading.get(key)
        if future is None:
            if not dbstate.available():
                raise DatabaseAway("the database is unreachable")
            future = self._start(key, load, ttl)
        try:
            async with asyncio.timeout(settings.DATABASE_HOT_PATH_TIMEOUT):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            dbstate.report_failure(exc)  # the load goes on, and fills the entry if it succeeds
            raise DatabaseAway("the database did not answer in time") from None

    def _refresh(self, key: Any, load: Callable[[], Awaitable[T]], ttl: Callable[[T], float]) -> None:
        if key in self._loading or not dbstate.available():
            return
        self._start(key, load, ttl)

    def _start(self, key: Any, load: Callable[[], Awaitable[T]], ttl: Callable[[T], float]) -> asyncio.Future[T]:
        """One load of `key`, shared by whoever needs it, storing what it read unless the cache was
        cleared meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._loading[key] = future
        generation = self._generation

        async def run() -> None:
            try:
                value = await load()
            except Exception as exc:
                if isinstance(exc, dbstate.UNREACHABLE):
                    dbstate.report_failure(exc)
                future.set_exception(exc)
            except BaseException as exc:  # cancelled (shutdown)
                future.set_exception(exc)
                raise
            else:
                dbstate.report_success()
                if generation == self._generation:  # not invalidated while loading
                    self._entries[key] = (time.monotonic() + ttl(value), value)
                    self._entries.move_to_end(key)
                    if len(self._entries) > self._max_size:
                        self._entries.popitem(last=False)
                future.set_result(value)
            finally:
                if self._loading.get(key) is future:
                    del self._loading[key]

        task = loop.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        future.add_done_callback(_retrieved)  # a waiter that timed out no longer looks at it
        return future


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A load nobody awaits any more: its failure is known to dbstate; keep asyncio quiet."""
    if not future.cancelled():
        future.exception()
