"""How the limiter uses Redis: not at all when no limit applies, fails closed when Redis is gone,
and survives a script cache flush or a dropped connection."""

from __future__ import annotations

import time

import pytest
import redis

from gateway.proxy import ratelimit
from gateway.proxy.ratelimit import Limits, RateLimited, RateLimiterUnavailable


async def test_acquire_makes_no_redis_call_when_no_limit_is_set(settings, silent_port):
    settings.REDIS_URL = silent_port.url
    limits = Limits(key_id=1, project_id=1, key_max_streams=None)

    ticket = await ratelimit.acquire(limits=limits, tokens=500, stream=True)
    await ratelimit.adjust(ticket, actual_tokens=20)
    await ratelimit.release_stream(ticket)

    assert ticket.headers() == {}
    assert silent_port.connections() == 0


async def test_acquire_raises_unavailable_when_nothing_listens_at_redis_url(closed_redis):
    limits = Limits(key_id=1, project_id=1, key_rpm=10)
    started = time.monotonic()

    with pytest.raises(RateLimiterUnavailable) as refusal:
        await ratelimit.acquire(limits=limits, tokens=0, stream=False)

    assert time.monotonic() - started < 1.0
    assert refusal.value.status == 503
    assert refusal.value.body()["error"]["code"] == "rate_limiter_unavailable"
    assert not isinstance(refusal.value, RateLimited)


async def test_acquire_raises_unavailable_when_redis_does_not_answer_in_time(settings, silent_port):
    settings.REDIS_URL = silent_port.url
    settings.RATELIMIT_REDIS_TIMEOUT = 0.2
    started = time.monotonic()

    with pytest.raises(RateLimiterUnavailable):
        await ratelimit.acquire(limits=Limits(key_id=1, project_id=1, key_rpm=10), tokens=0, stream=False)

    assert time.monotonic() - started < 1.0


async def test_adjust_and_release_return_quietly_when_redis_is_gone(redis_url, project_id, settings, closed_redis):
    settings.REDIS_URL = redis_url
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000, key_max_streams=1)
    ticket = await ratelimit.acquire(limits=limits, tokens=100, stream=True)
    await ratelimit.close()
    settings.REDIS_URL = closed_redis

    await ratelimit.adjust(ticket, actual_tokens=10)
    await ratelimit.release_stream(ticket)
    await ratelimit.refresh_stream(ticket)

    assert not ticket.holds_stream


async def test_acquire_counts_once_when_redis_forgot_the_script(redis_url, project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=3)
    await ratelimit.acquire(limits=limits, tokens=0, stream=False)
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()

    ticket = await ratelimit.acquire(limits=limits, tokens=0, stream=False)

    assert ticket.headers()["x-ratelimit-remaining-requests"] == "1"


async def test_acquire_succeeds_when_redis_dropped_the_pooled_connection(redis_url, project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=3)
    await ratelimit.acquire(limits=limits, tokens=0, stream=False)
    with redis.Redis.from_url(redis_url) as client:
        db = str(client.connection_pool.connection_kwargs.get("db", 0))
        mine = [c["id"] for c in client.client_list() if c["db"] == db and c["cmd"] in {"evalsha", "eval"}]
        for client_id in mine:
            client.client_kill_filter(_id=client_id)  # as a Redis restart would

    ticket = await ratelimit.acquire(limits=limits, tokens=0, stream=False)

    assert mine
    assert ticket.headers()["x-ratelimit-remaining-requests"] == "1"
