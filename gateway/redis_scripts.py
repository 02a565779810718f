"""Lua scripts on this process's async Redis connection pool (rate limits, budget reservations).

One client (one connection pool) per process and event loop, made on first use from REDIS_URL.
RATELIMIT_REDIS_TIMEOUT bounds connecting, answering and waiting for a pooled connection;
RATELIMIT_REDIS_MAX_CONNECTIONS bounds the pool. Scripts run by EVALSHA, falling back to EVAL
once after a Redis restart.

Calls made in the same turn of the event loop travel together in one pipeline (one connection,
one write, one round trip): a request's rate-limit and budget checks, which the proxy starts
together, and the calls of concurrent requests. Each call still gets its own reply or error;
Redis runs each script atomically, exactly as if it had been sent alone.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


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


_Call = tuple[Script, list[str], list, "asyncio.Future[Any]"]
_waiting: list[_Call] = []


async def run(lua: Script, keys: list[str], args: list) -> Any:
    """Run a script; its reply, or the Redis error it raised."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if not _waiting:
        asyncio.get_running_loop().call_soon(_send_waiting)
    _waiting.append((lua, keys, args, future))
    return await future


def _send_waiting() -> None:
    calls = _waiting[:]
    _waiting.clear()
    task = asyncio.get_running_loop().create_task(_send(calls))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


_sending: set[asyncio.Task[None]] = set()


async def _send(calls: list[_Call]) -> None:
    redis = client()
    try:
        if len(calls) == 1:
            try:
                replies: list[Any] = [await _one(redis, *calls[0][:3])]
            except ResponseError as exc:
                replies = [exc]
        else:
            async with redis.pipeline(transaction=False) as pipe:
                for lua, keys, args, _ in calls:
                    pipe.evalsha(lua.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            for index, reply in enumerate(replies):
                if isinstance(reply, NoScriptError):  # not run: Redis restarted or was flushed
                    try:
                        replies[index] = await _one(redis, *calls[index][:3], known=False)
                    except ResponseError as exc:  # the script's own error: its caller's alone
                        replies[index] = exc
    except BaseException as exc:  # the connection failed: every call in it failed
        for *_, future in calls:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
        if not isinstance(exc, Exception):
            raise
        return
    for (*_, future), reply in zip(calls, replies, strict=True):
        if future.done():
            continue  # its caller gave up (cancelled)
        if isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)


async def _one(redis: Redis, lua: Script, keys: list[str], args: list, *, known: bool = True) -> Any:
    try:
        if known:
            return await redis.evalsha(lua.sha, len(keys), *keys, *args)
    except NoScriptError:
        pass
    return await redis.eval(lua.source, len(keys), *keys, *args)  # EVAL runs it and caches it again


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
