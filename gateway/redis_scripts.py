"""Lua scripts on this process's async Redis connection pool (rate limits, budget reservations).

One client (one connection pool) per process and event loop, made on first use from REDIS_URL.
RATELIMIT_REDIS_TIMEOUT bounds connecting, answering and waiting for a pooled connection;
RATELIMIT_REDIS_MAX_CONNECTIONS bounds the pool. Scripts run by EVALSHA, falling back to EVAL
once after a Redis restart.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str


def script(source: str) -> Script:
    return Script(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


_connection: tuple[str, asyncio.AbstractEventLoop, Redis] | None = None


def client() -> Redis:
    """This process's client: one connection pool, made on first use (and again if the loop changes)."""
    global _connection
    url, loop = settings.REDIS_URL, asyncio.get_running_loop()
    if _connection is None or _connection[0] != url or _connection[1] is not loop:
        timeout = getattr(settings, "RATELIMIT_REDIS_TIMEOUT", 1.0)
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=getattr(settings, "RATELIMIT_REDIS_MAX_CONNECTIONS", 100),
            timeout=timeout,  # waiting for a free connection
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Retry once at once when a pooled connection turns out dead (Redis restarted): the
            # command never reached that server. Never on a timeout: the script may have run.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        _connection = (url, loop, Redis.from_pool(pool))
    return _connection[2]


async def run(lua: Script, keys: list[str], args: list) -> list:
    redis = client()
    try:
        return await redis.evalsha(lua.sha, len(keys), *keys, *args)
    except NoScriptError:  # not run: Redis restarted or was flushed; EVAL runs it and caches it again
        return await redis.eval(lua.source, len(keys), *keys, *args)


async def close() -> None:
    global _connection
    if _connection is not None:
        _, loop, redis = _connection
        _connection = None
        if loop is asyncio.get_running_loop():
            await redis.aclose()


def forget() -> None:
    """Drop the client without closing it (tests that change REDIS_URL or the loop)."""
    global _connection
    _connection = None
