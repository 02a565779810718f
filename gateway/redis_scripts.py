"""Lua scripts (rate limits, budget holds) on one pipelined Redis connection per process.

Why a client of our own: the governed hot path makes a few tiny script calls per request, and
redis-py's asyncio pipeline spent a large share of the governed path's CPU packing, pooling and
parsing them (measured: ~115 µs for a request's four calls at c=32 with
hiredis, ~165 µs without it, against ~50 µs here). This client does only what those calls need:

- One connection per process and event loop, made on first use from REDIS_URL, shared by every
  request: calls made in the same turn of the event loop leave in one write, and calls of later
  turns follow without waiting for earlier replies (Redis answers a connection in order, so
  replies are matched first in, first out). Each call still gets its own reply or error; Redis
  runs each script atomically, exactly as if it had been sent alone.
- Replies are parsed by hiredis (C). Every script is loaded once per connection (SCRIPT LOAD in
  the connection's first write) and then run by EVALSHA; a NOSCRIPT reply (the script cache was
  flushed) makes that one call run again by EVAL, which caches the script again.
- Failure semantics, as before: RATELIMIT_REDIS_TIMEOUT bounds connecting and waiting for a
  reply. A timeout fails every call waiting on the connection (TimeoutError) and drops it: a
  script may have run, so nothing is sent again. A connection found dead (Redis restarted, the
  connection was killed) sends its unanswered calls once more on a new connection, at once; a
  second failure, or a refused connection, fails them (ConnectionError). Callers fail closed.

Without REDIS_URL (the embedded, single-process profile) the same scripts run in process on a
fakeredis server with its Lua engine (lupa): one implementation of each algorithm, not a Python
twin. There a call costs 0.2-0.4 ms, and the hot path rarely makes one (see the leases in
gateway/proxy/ratelimit.py and billing/budget.py).

`defer()` and `before_close()` serve the callers' leases: work to do a little later on the
current loop, and work to do before the connection closes at shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import hiredis
from django.conf import settings
from redis.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str


_scripts: list[Script] = []  # every script made: loaded on each new connection


def script(source: str) -> Script:
    made = Script(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())
    _scripts.append(made)
    return made


Then = Callable[[Any], Any]


async def run(lua: Script, keys: list[str], args: list[Any], *, then: Then | None = None) -> Any:
    """Run a script; its reply (passed through `then`, if given), or the Redis error it raised.

    `then` runs as soon as the reply is read, before any later reply is handed to its caller:
    callers use it to fold a reply into state that the other replies of the same batch read."""
    if not settings.REDIS_URL:
        return _in_process(lua, keys, args, then)
    future = asyncio.get_running_loop().create_future()
    _client().submit(_Call(["EVALSHA", lua.sha, len(keys), *keys, *args], future, then, lua))
    return await future


async def command(*args: Any) -> Any:
    """Run one plain command (ZREM, ...) on the same connection."""
    if not settings.REDIS_URL:
        return _fake().execute_command(*args)
    future = asyncio.get_running_loop().create_future()
    _client().submit(_Call(list(args), future, None, None))
    return await future


async def close() -> None:
    """Run the callers' shutdown work, then close this loop's connection (on shutdown)."""
    for hook in list(_before_close):
        with contextlib.suppress(Exception):  # a hook fails alone (it logs); the connection still closes
            await hook()
    loop = asyncio.get_running_loop()
    for key in [key for key in _clients if key[1] is loop]:
        _clients.pop(key).close()


def forget() -> None:
    """Drop every client without closing it (tests that change REDIS_URL or the loop)."""
    _clients.clear()


_before_close: list[Callable[[], Awaitable[None]]] = []


def before_close(hook: Callable[[], Awaitable[None]]) -> None:
    """Register work to run at `close()`, while the connection still answers (lease returns)."""
    _before_close.append(hook)


def defer(delay: float, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` in `delay` seconds on the running loop, in a task of its own."""
    loop = asyncio.get_running_loop()
    loop.call_later(delay, _start, loop, callback)


_background: set[asyncio.Task[None]] = set()


def _start(loop: asyncio.AbstractEventLoop, callback: Callable[[], Awaitable[None]]) -> None:
    task = loop.create_task(callback())  # type: ignore[arg-type]
    _background.add(task)
    task.add_done_callback(_background.discard)


# --- the connection ---


class _Call:
    __slots__ = ("args", "future", "lua", "resent", "then")

    def __init__(self, args: list[Any], future: asyncio.Future[Any] | None, then: Then | None, lua: Script | None):
        self.args = args
        self.future = future  # None: a reply nobody waits for (the connection's own SCRIPT LOAD)
        self.then = then
        self.lua = lua
        self.resent = False

    def settle(self, reply: Any) -> None:
        future = self.future
        if future is None or future.done():  # ours, or its caller gave up (cancelled)
            return
        if isinstance(reply, Exception):
            future.set_exception(reply)
            return
        if self.then is not None:
            try:
                reply = self.then(reply)
            except Exception as exc:
                future.set_exception(exc)
                return
        future.set_result(reply)

    def fail(self, exc: Exception) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_exception(exc)


def _pack(args: list[Any]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [a if isinstance(a, str) else a.decode() if isinstance(a, bytes) else str(a) for a in args]
    text = f"*{len(parts)}\r\n" + "".join([f"${len(p)}\r\n{p}\r\n" for p in parts])
    if text.isascii():
        return text.encode()
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Client:
    """One Redis connection for one event loop: connects on first use and again after a loss."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.loop = loop
        self.options = parse_url(url)
        self.timeout = float(getattr(settings, "RATELIMIT_REDIS_TIMEOUT", 1.0))
        self.protocol: _Protocol | None = None
        self.waiting: list[_Call] = []  # submitted while connecting
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False

    def submit(self, call: _Call) -> None:
        protocol = self.protocol
        if protocol is not None and protocol.alive:
            protocol.send(call)
            return
        self.waiting.append(call)
        if self.connecting is None:
            self.connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        options = self.options
        try:
            if options.get("connection_class") is UnixDomainSocketConnection:
                opening = self.loop.create_unix_connection(lambda: _Protocol(self), options["path"])
            else:
                ssl = True if options.get("connection_class") is not None else None  # rediss://
                opening = self.loop.create_connection(
                    lambda: _Protocol(self), options.get("host", "localhost"), options.get("port", 6379), ssl=ssl
                )
            _, protocol = await asyncio.wait_for(opening, self.timeout)
        except (TimeoutError, OSError) as exc:
            self.connecting = None
            calls, self.waiting = self.waiting, []
            error = RedisConnectionError(f"cannot connect to Redis: {type(exc).__name__}: {exc}")
            for call in calls:
                call.fail(error)
            return
        self.connecting = None
        if self.closed:
            protocol.abort(RedisConnectionError("the client was closed"))
            return
        if not protocol.alive:  # closed as soon as it opened (a proxy in front of a Redis that is down)
            calls, self.waiting = self.waiting, []
            self.lost(protocol, calls, RedisConnectionError("Redis closed the connection at once"), resend=True)
            return
        self.protocol = protocol
        prelude = []
        if options.get("password"):
            username = options.get("username")
            prelude.append(["AUTH", username, options["password"]] if username else ["AUTH", options["password"]])
        if options.get("db"):
            prelude.append(["SELECT", options["db"]])
        prelude += [["SCRIPT", "LOAD", each.source] for each in _scripts]
        for args in prelude:
            protocol.send(_Call(args, None, None, None))
        calls, self.waiting = self.waiting, []
        for call in calls:
            protocol.send(call)

    def lost(self, protocol: _Protocol, unanswered: list[_Call], exc: Exception, *, resend: bool) -> None:
        """The connection died with calls unanswered: send each once more on a new one, or fail it."""
        if self.protocol is protocol:
            self.protocol = None
        for call in unanswered:
            if resend and not call.resent and not self.closed and not (call.future and call.future.done()):
                call.resent = True
                self.submit(call)
            else:
                call.fail(exc)
        for listener in list(_listeners):
            listener()

    def close(self) -> None:
        self.closed = True
        if self.protocol is not None:
            self.protocol.abort(RedisConnectionError("the client was closed"))
        if self.connecting is not None:
            self.connecting.cancel()


_listeners: list[Callable[[], None]] = []


def on_connection_lost(listener: Callable[[], None]) -> None:
    """Call `listener` whenever a connection to Redis is lost (callers drop what they can no
    longer vouch for, such as leases, and so fail closed at once)."""
    _listeners.append(listener)


class _Protocol(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.loop = client.loop
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.pending: collections.deque[tuple[_Call, float]] = collections.deque()  # sent, in order
        self.out: list[bytes] = []
        self.writing = False
        self.alive = True
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, call: _Call) -> None:
        if not self.alive:
            call.fail(RedisConnectionError("the connection to Redis is closed"))
            return
        self.out.append(_pack(call.args))
        self.pending.append((call, self.loop.time()))
        if not self.writing:
            self.writing = True
            self.loop.call_soon(self._write)
        if self.timer is None:
            self.timer = self.loop.call_at(self.loop.time() + self.client.timeout, self._check_timeout)

    def _write(self) -> None:
        self.writing = False
        if not self.alive or self.transport is None:
            return
        data, self.out = b"".join(self.out), []
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the stream is out of step
                self.abort(RedisConnectionError("Redis sent an unexpected reply"))
                return
            call, _ = pending.popleft()
            if isinstance(reply, ResponseError) and call.lua is not None and str(reply).startswith("NOSCRIPT"):
                retry = _Call(["EVAL", call.lua.source, *call.args[2:]], call.future, call.then, None)
                self.send(retry)  # the cache was flushed: EVAL runs it and caches it again
                continue
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                reply = NoScriptError(str(reply))
            call.settle(reply)
        if not pending and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_timeout(self) -> None:
        self.timer = None
        if not self.pending or not self.alive:
            return
        oldest = self.pending[0][1]
        if self.loop.time() - oldest >= self.client.timeout:
            self.abort(RedisTimeoutError(f"Redis did not answer within {self.client.timeout} s"), resend=False)
        else:
            self.timer = self.loop.call_at(oldest + self.client.timeout, self._check_timeout)

    def abort(self, exc: Exception, *, resend: bool = False) -> None:
        if not self.alive:
            return
        self._die(exc, resend=resend)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.alive:
            self._die(RedisConnectionError(f"Redis closed the connection ({exc or 'end of stream'})"), resend=True)

    def eof_received(self) -> bool:
        return False  # close our end too: connection_lost follows

    def _die(self, exc: Exception, *, resend: bool) -> None:
        self.alive = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        unanswered = [call for call, _ in self.pending if call.future is not None]
        self.pending.clear()
        self.out.clear()
        self.client.lost(self, unanswered, exc, resend=resend)


_clients: dict[tuple[str, asyncio.AbstractEventLoop], _Client] = {}


def _client() -> _Client:
    loop = asyncio.get_running_loop()
    key = (settings.REDIS_URL, loop)
    client = _clients.get(key)
    if client is None:
        for stale in [k for k in _clients if k[1] is loop or k[1].is_closed()]:
            old = _clients.pop(stale)
            if stale[1] is loop:  # REDIS_URL changed (tests): this loop's old connection goes
                old.close()
        client = _clients[key] = _Client(settings.REDIS_URL, loop)
    return client


# --- in process (no REDIS_URL) ---

_fake_server: Any = None
_fake_lock = threading.Lock()


def _fake() -> Any:
    """The process's in-memory Redis (fakeredis, Lua by lupa), made on first use."""
    global _fake_server
    if _fake_server is None:
        with _fake_lock:
            if _fake_server is None:
                import fakeredis  # only the embedded profile needs it

                _fake_server = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return _fake_server


def _in_process(lua: Script, keys: list[str], args: list[Any], then: Then | None) -> Any:
    fake = _fake()
    try:
        reply = fake.evalsha(lua.sha, len(keys), *keys, *args)
    except NoScriptError:
        fake.script_load(lua.source)
        reply = fake.evalsha(lua.sha, len(keys), *keys, *args)
    return then(reply) if then is not None else reply


def forget_in_process(pattern: str) -> None:
    """Delete the in-process keys matching `pattern` (tests start from nothing)."""
    if _fake_server is None:
        return
    keys = list(_fake_server.scan_iter(match=pattern, count=1000))
    if keys:
        _fake_server.delete(*keys)


def in_process_client() -> Any:
    """The in-process server's synchronous client (the budget's balance reads it)."""
    return _fake()
