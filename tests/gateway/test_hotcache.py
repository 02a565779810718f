"""The hot path's cache: stale while it revalidates, never waiting for a database that is away,
never serving what was invalidated."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db import OperationalError

from gateway import dbstate
from gateway.hotcache import DatabaseAway, HotCache


class Loads:
    """A loader that counts its calls and returns (or raises) what it is told."""

    def __init__(self, value: object = "fresh", *, delay: float = 0.0) -> None:
        self.value, self.delay, self.calls = value, delay, 0

    async def __call__(self) -> object:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


async def _settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_expired_entry_is_served_at_once_while_one_refresh_runs():
    cache: HotCache[object] = HotCache(10)
    assert await cache.get("k", Loads("old"), lambda _: 0.0) == "old"  # expires at once
    slow = Loads("new", delay=0.05)

    started = time.monotonic()
    assert [await cache.get("k", slow, lambda _: 30.0) for _ in range(3)] == ["old"] * 3
    assert time.monotonic() - started < 0.02
    await _settled()
    assert slow.calls == 1  # one refresh for the three reads
    await asyncio.sleep(0.1)
    assert await cache.get("k", slow, lambda _: 30.0) == "new"


async def test_expired_entry_keeps_serving_when_the_database_is_away_and_no_refresh_is_tried():
    cache: HotCache[object] = HotCache(10)
    await cache.get("k", Loads("old"), lambda _: 0.0)
    down = Loads(OperationalError("connection refused"))

    assert await cache.get("k", down, lambda _: 0.0) == "old"
    await _settled()
    assert not dbstate.available()
    assert [await cache.get("k", down, lambda _: 0.0) for _ in range(5)] == ["old"] * 5
    assert down.calls == 1  # the probe says when to try again, not every request


async def test_invalidated_entry_is_never_served_stale():
    cache: HotCache[object] = HotCache(10)
    await cache.get("k", Loads("revoked key"), lambda _: 0.0)
    cache.clear()

    with pytest.raises(OperationalError):
        await cache.get("k", Loads(OperationalError("down")), lambda _: 0.0)


async def test_stale_serving_ends_after_the_grace(settings):
    settings.CATALOG_STALE_GRACE = 0.0
    cache: HotCache[object] = HotCache(10)
    await cache.get("k", Loads("old"), lambda _: 0.0)
    await asyncio.sleep(0.001)

    with pytest.raises(OperationalError):
        await cache.get("k", Loads(OperationalError("down")), lambda _: 0.0)


async def test_never_read_while_the_database_is_away_fails_at_once_without_trying():
    dbstate.report_failure(OperationalError("down"))
    load = Loads("value")

    with pytest.raises(DatabaseAway):
        await HotCache(10).get("k", load, lambda _: 30.0)
    assert load.calls == 0


async def test_slow_first_read_gives_up_after_the_timeout_and_fills_the_entry_later(settings):
    settings.DATABASE_HOT_PATH_TIMEOUT = 0.05
    cache: HotCache[object] = HotCache(10)
    slow = Loads("late", delay=0.2)

    started = time.monotonic()
    with pytest.raises(DatabaseAway):
        await cache.get("k", slow, lambda _: 30.0)
    assert time.monotonic() - started < 0.15
    assert not dbstate.available()
    await asyncio.sleep(0.25)
    assert dbstate.available()  # the load that went on succeeded: it answers again
    assert await cache.get("k", slow, lambda _: 30.0) == "late" and slow.calls == 1


async def test_concurrent_misses_share_one_load():
    cache: HotCache[object] = HotCache(10)
    load = Loads("value", delay=0.02)

    values = await asyncio.gather(*(cache.get("k", load, lambda _: 30.0) for _ in range(20)))
    assert values == ["value"] * 20 and load.calls == 1


async def test_an_error_that_is_not_the_database_s_is_raised_without_marking_it_away():
    with pytest.raises(ValueError):
        await HotCache(10).get("k", Loads(ValueError("a key no configured secret decrypts")), lambda _: 30.0)
    assert dbstate.available()
