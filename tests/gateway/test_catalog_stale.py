"""Keys and models already read keep serving while the database is away; invalidated ones do not."""

from __future__ import annotations

import pytest

from gateway.proxy.catalog import _TTLCache


class Down(Exception):
    pass


async def _fails() -> str:
    raise Down("database unavailable")


async def _value() -> str:
    return "fresh"


async def test_expired_entry_keeps_serving_when_the_reload_fails(settings):
    cache = _TTLCache(10)
    assert await cache.get("k", _value, lambda _: 0.0) == "fresh"  # expires at once

    assert await cache.get("k", _fails, lambda _: 0.0) == "fresh"


async def test_invalidated_entry_is_never_served_stale():
    cache = _TTLCache(10)
    await cache.get("k", _value, lambda _: 0.0)
    cache.clear()  # a revoked key, a changed model

    with pytest.raises(Down):
        await cache.get("k", _fails, lambda _: 0.0)


async def test_stale_serving_ends_after_the_grace(settings):
    settings.CATALOG_STALE_GRACE = 0.0
    cache = _TTLCache(10)
    await cache.get("k", _value, lambda _: 0.0)

    with pytest.raises(Down):
        await cache.get("k", _fails, lambda _: 0.0)


async def test_nothing_read_before_means_the_failure_is_raised():
    with pytest.raises(Down):
        await _TTLCache(10).get("k", _fails, lambda _: 30.0)
