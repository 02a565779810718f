"""Requests and tokens per minute, per key and per project, and a cap on concurrent streams per key.

The algorithm is a fixed window aligned to the first request: a limit's window opens with the
first request that finds no open window and closes `window_seconds` later (60 s: "per minute").
Inside a window at most `rpm` requests and at most `tpm` tokens are admitted; the next window
opens with the next request after it closes. A key's requests and tokens share one window, and
so do a project's, so each scope is one small Redis hash (`s` start, `r` requests, `t` tokens)
that expires with its window: O(1) memory and work per limit, however high the limit.

It is exact: one Lua script reads and writes every window a request touches (the key's, the
project's and the key's stream slots), and Redis runs scripts one at a time, so concurrent
requests from any number of processes and machines see each other's counts. Either every limit
admits the request and all are counted, or nothing is counted and the script names the limit
that refused and when its window closes (`Retry-After`). The script reads the clock with Redis's
TIME, so the web servers' clocks don't matter (Redis >= 5, which replicates a script's effects).
A sliding log (a sorted set per limit) would also be exact, and smoother at window edges, but
costs memory in proportion to the limit and cannot carry tokens that are corrected afterwards;
the price of the fixed window is that a client may spend two windows' worth around an edge.

Tokens are reserved up front (the caller's estimate: prompt plus `max_tokens`) and corrected by
`adjust()` once the response's usage is known; a correction never takes a counter below zero and
is dropped when its window has already closed.

A stream slot is a member of a sorted set per key, scored with the time its lease runs out
(`stream_lease_seconds`, extended by `refresh_stream()`); expired members are pruned on every
check, so a slot leaked by a killed process frees itself when its lease ends.

Without REDIS_URL (the embedded, single-process profile) the same algorithm runs in process and
returns the same answers; it counts per process, so it is exact only with one process.

Cost: no Redis call when no limit applies; one round trip per `acquire()` (EVALSHA, falling back
to EVAL once after a Redis restart); one per `adjust()` only when the actual tokens differ from
the reservation. When Redis does not answer, `acquire()` raises `RateLimiterUnavailable` (a 503:
the caller fails closed); `adjust()`, `release_stream()` and `refresh_stream()` run after the
response is committed, so they log the failure and return. One client (one connection pool) per
process and event loop, made on first use from REDIS_URL; `close()` at shutdown. Optional
settings: RATELIMIT_REDIS_TIMEOUT (seconds to connect, to answer and to wait for a pooled
connection; default 1) and RATELIMIT_REDIS_MAX_CONNECTIONS (per process; default 100).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from redis.exceptions import RedisError

from gateway import redis_scripts
from gateway.proxy.errors import ProxyError, ServiceUnavailable

logger = logging.getLogger(__name__)

_NONE = -1  # "no such limit" in the scripts' arguments
_STREAM_RETRY_MS = 1000  # when a stream slot frees is unknowable: suggest retrying in a second


@dataclass(frozen=True, slots=True)
class Limits:
    """What a key and its project allow. None means no limit of that kind."""

    key_id: int
    project_id: int
    key_rpm: int | None = None
    key_tpm: int | None = None
    project_rpm: int | None = None
    project_tpm: int | None = None
    key_max_streams: int | None = None
    window_seconds: float = 60.0
    stream_lease_seconds: float = 300.0


class RateLimited(ProxyError):
    """429: a limit refused the request. `retry_after` is None when the request can never fit."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, limit_name: str, retry_after: float | None, headers: dict[str, str], *, message: str) -> None:
        super().__init__(message, headers=headers)
        self.limit_name = limit_name  # "key_rpm", "key_tpm", "project_rpm", "project_tpm" or "key_max_streams"
        self.retry_after = retry_after
        self.type = "tokens" if limit_name.endswith("tpm") else "requests"  # as OpenAI names them


class RateLimiterUnavailable(ServiceUnavailable):
    """503: Redis did not answer, so no limit can be checked; the request is refused."""

    code = "rate_limiter_unavailable"


@dataclass(frozen=True, slots=True)
class _Scope:
    """One window: the key's or the project's."""

    name: str
    redis_key: str
    rpm: int | None
    tpm: int | None


@dataclass(eq=False)
class Ticket:
    """An admitted request: what it counted, for `adjust()`, `release_stream()` and its headers."""

    limits: Limits
    tokens: int  # tokens now counted for this request (the reservation, then the adjusted amount)
    id: str = ""
    holds_stream: bool = False
    _scopes: tuple[_Scope, ...] = ()
    _starts: list[int] = field(default_factory=list)  # window start per scope (server ms)
    _requests: list[int] = field(default_factory=list)  # requests counted per scope, this one included
    _tokens: list[int] = field(default_factory=list)
    _resets: list[float] = field(default_factory=list)  # time.monotonic() when each window closes
    _refreshed: float = 0.0

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the tightest request and token limits that apply."""
        return _headers(self._scopes, self._requests, self._tokens, self._resets)


# --- the public API ---


async def acquire(*, limits: Limits, tokens: int, stream: bool) -> Ticket:
    """Count one request reserving `tokens` against every limit, or raise RateLimited and count nothing."""
    if tokens < 0:
        raise ValueError("tokens must not be negative")
    scopes = _scopes(limits)
    wants_slot = stream and limits.key_max_streams is not None
    if not scopes and not wants_slot:
        return Ticket(limits=limits, tokens=tokens)
    ticket_id = secrets.token_hex(8) if wants_slot else ""
    window_ms = _ms(limits.window_seconds)
    args: list[int | str] = [window_ms, tokens, len(scopes)]
    for scope in scopes:
        args += [_NONE if scope.rpm is None else scope.rpm, _NONE if scope.tpm is None else scope.tpm]
    args += [limits.key_max_streams if wants_slot else _NONE, _ms(limits.stream_lease_seconds), ticket_id]
    keys = [scope.redis_key for scope in scopes]
    if wants_slot:
        keys.append(_streams_key(limits))

    if settings.REDIS_URL:
        try:
            reply = await redis_scripts.run(_ACQUIRE, keys, args)
        except (RedisError, OSError) as exc:
            _warn_unavailable(exc)
            raise RateLimiterUnavailable("The rate limiter is unavailable; please retry shortly.") from exc
    else:
        reply = _memory.acquire(keys, args)

    clock = time.monotonic()
    admitted, refused, wait_ms, now = (int(value) for value in reply[:4])
    starts = [int(value) for value in reply[4::3]]
    requests = [int(value) for value in reply[5::3]]
    counted = [int(value) for value in reply[6::3]]
    resets = [clock + (start + window_ms - now) / 1000 for start in starts]
    if not admitted:
        raise _refusal(limits, scopes, tokens, refused, wait_ms, requests, counted, resets)
    return Ticket(
        limits=limits,
        tokens=tokens,
        id=ticket_id,
        holds_stream=wants_slot,
        _scopes=scopes,
        _starts=starts,
        _requests=requests,
        _tokens=counted,
        _resets=resets,
        _refreshed=clock,
    )


async def adjust(ticket: Ticket, *, actual_tokens: int) -> None:
    """Correct the token counters from the reservation to what the request really used."""
    if actual_tokens < 0:
        raise ValueError("actual_tokens must not be negative")
    delta = actual_tokens - ticket.tokens
    ticket.tokens = actual_tokens
    indexes = [i for i, scope in enumerate(ticket._scopes) if scope.tpm is not None]
    if delta == 0 or not indexes:
        return
    keys = [ticket._scopes[i].redis_key for i in indexes]
    args = [delta, *(ticket._starts[i] for i in indexes)]
    if settings.REDIS_URL:
        try:
            reply = await redis_scripts.run(_ADJUST, keys, args)
        except (RedisError, OSError) as exc:
            _warn_unavailable(exc)
            return
    else:
        reply = _memory.adjust(keys, args)
    for i, value in zip(indexes, reply, strict=True):
        if int(value) >= 0:
            ticket._tokens[i] = int(value)


async def release_stream(ticket: Ticket) -> None:
    """Give back the ticket's stream slot (safe to call twice, or for a ticket without one)."""
    if not ticket.holds_stream:
        return
    ticket.holds_stream = False
    key = _streams_key(ticket.limits)
    if settings.REDIS_URL:
        try:
            await redis_scripts.client().zrem(key, ticket.id)
        except (RedisError, OSError) as exc:
            _warn_unavailable(exc)  # the slot frees itself when its lease runs out
    else:
        _memory.release(key, ticket.id)


async def refresh_stream(ticket: Ticket) -> None:
    """Extend a long stream's lease; cheap to call on every chunk (it writes at most every third of a lease)."""
    lease = ticket.limits.stream_lease_seconds
    clock = time.monotonic()
    if not ticket.holds_stream or clock - ticket._refreshed < lease / 3:
        return
    ticket._refreshed = clock
    keys, args = [_streams_key(ticket.limits)], [_ms(lease), ticket.id]
    if settings.REDIS_URL:
        try:
            await redis_scripts.run(_REFRESH, keys, args)
        except (RedisError, OSError) as exc:
            _warn_unavailable(exc)
    else:
        _memory.refresh(keys, args)


async def close() -> None:
    """Close this process's Redis connections (on shutdown)."""
    await redis_scripts.close()


def reset() -> None:
    """Forget the in-process counters (tests)."""
    global _memory
    _memory = _Memory()


# --- limits, refusals and headers ---


def _scopes(limits: Limits) -> tuple[_Scope, ...]:
    # One hash tag per project: every key a check touches lives in the same Redis Cluster slot.
    tag = f"rl:{{p{limits.project_id}}}"
    scopes = []
    if limits.key_rpm is not None or limits.key_tpm is not None:
        scopes.append(_Scope("key", f"{tag}:key:{limits.key_id}", limits.key_rpm, limits.key_tpm))
    if limits.project_rpm is not None or limits.project_tpm is not None:
        scopes.append(_Scope("project", f"{tag}:project", limits.project_rpm, limits.project_tpm))
    return tuple(scopes)


def _streams_key(limits: Limits) -> str:
    return f"rl:{{p{limits.project_id}}}:streams:{limits.key_id}"


def _refusal(
    limits: Limits,
    scopes: tuple[_Scope, ...],
    tokens: int,
    refused: int,
    wait_ms: int,
    requests: list[int],
    counted: list[int],
    resets: list[float],
) -> RateLimited:
    headers = _headers(scopes, requests, counted, resets)
    per = "minute" if limits.window_seconds == 60 else f"{_duration(limits.window_seconds)}"
    too_large = next((s for s in scopes if s.tpm is not None and tokens > s.tpm), None)
    if too_large is not None:
        return RateLimited(
            f"{too_large.name}_tpm",
            None,
            headers,
            message=(
                f"Request too large for tokens per {per} on this {too_large.name}: "
                f"limit {too_large.tpm}, requested {tokens}. Reduce the prompt or max_tokens."
            ),
        )
    retry = _duration(wait_ms / 1000)
    headers = {"retry-after": str(max(1, math.ceil(wait_ms / 1000))), "retry-after-ms": str(wait_ms), **headers}
    if refused == 2 * len(scopes) + 1:
        return RateLimited(
            "key_max_streams",
            wait_ms / 1000,
            headers,
            message=f"Too many concurrent streams on this key: limit {limits.key_max_streams}. "
            f"Please try again in {retry}.",
        )
    index = (refused - 1) // 2
    scope = scopes[index]
    if refused % 2:
        kind, limit, used, asked = "requests", scope.rpm, requests[index], 1
    else:
        kind, limit, used, asked = "tokens", scope.tpm, counted[index], tokens
    return RateLimited(
        f"{scope.name}_{'rpm' if kind == 'requests' else 'tpm'}",
        wait_ms / 1000,
        headers,
        message=f"Rate limit reached for {kind} per {per} on this {scope.name}: "
        f"limit {limit}, used {used}, requested {asked}. Please try again in {retry}.",
    )


def _headers(
    scopes: tuple[_Scope, ...], requests: list[int], counted: list[int], resets: list[float]
) -> dict[str, str]:
    headers: dict[str, str] = {}
    clock = time.monotonic()
    for kind, attr, used in (("requests", "rpm", requests), ("tokens", "tpm", counted)):
        # The tightest limit: the fewest remaining; on a tie, the one that resets last.
        candidates = [
            (getattr(scope, attr) - used[i], -resets[i], getattr(scope, attr))
            for i, scope in enumerate(scopes)
            if getattr(scope, attr) is not None
        ]
        if candidates:
            remaining, reset, limit = min(candidates)
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, remaining))
            headers[f"x-ratelimit-reset-{kind}"] = _duration(-reset - clock)
    return headers


def _duration(seconds: float) -> str:
    """A duration as OpenAI writes it (Go's style): "20ms", "1s", "1.5s", "6m0s", "1h0m0s". Rounds up."""
    ms = max(0, math.ceil(round(seconds * 1000, 6)))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0") + "s" if fraction else f"{whole}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# --- Redis ---

# KEYS: the scopes' window hashes, then the key's stream set when a slot is wanted.
# ARGV: window ms, tokens, number of scopes, (rpm, tpm) per scope (-1: none), stream cap (-1: no
# slot wanted), lease ms, slot member.
# Returns: admitted (1/0), the refusing limit (2i-1: scope i's rpm, 2i: its tpm, 2n+1: streams),
# ms until it frees, now (ms), then (window start, requests, tokens) per scope.
_ACQUIRE_LUA = """
local function int(x) return string.format('%d', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window, tokens, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local refused, wait = 0, 0
local starts, requests, counted = {}, {}, {}
for i = 1, n do
  local state = redis.call('HMGET', KEYS[i], 's', 'r', 't')
  local s, r, t = tonumber(state[1]), 0, 0
  if s and now < s + window then
    r, t = tonumber(state[2]) or 0, tonumber(state[3]) or 0
  else
    s = now
  end
  starts[i], requests[i], counted[i] = s, r, t
  local reset = s + window - now
  local rpm, tpm = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  if rpm >= 0 and r + 1 > rpm and reset > wait then refused, wait = 2 * i - 1, reset end
  if tpm >= 0 and t + tokens > tpm and reset > wait then refused, wait = 2 * i, reset end
end
local cap = tonumber(ARGV[4 + 2 * n])
local streams = KEYS[n + 1]
if refused == 0 and cap >= 0 then
  redis.call('ZREMRANGEBYSCORE', streams, '-inf', now)
  if redis.call('ZCARD', streams) >= cap then refused, wait = 2 * n + 1, STREAM_RETRY_MS end
end
if refused == 0 then
  for i = 1, n do
    requests[i], counted[i] = requests[i] + 1, counted[i] + tokens
    redis.call('HSET', KEYS[i], 's', int(starts[i]), 'r', int(requests[i]), 't', int(counted[i]))
    if starts[i] == now then redis.call('PEXPIRE', KEYS[i], window) end
  end
  if cap >= 0 then
    local lease = tonumber(ARGV[5 + 2 * n])
    redis.call('ZADD', streams, int(now + lease), ARGV[6 + 2 * n])
    if redis.call('PTTL', streams) < lease then redis.call('PEXPIRE', streams, lease) end
  end
end
local reply = {refused == 0 and 1 or 0, refused, wait, now}
for i = 1, n do
  local j = 2 + 3 * i
  reply[j], reply[j + 1], reply[j + 2] = starts[i], requests[i], counted[i]
end
return reply
""".replace("STREAM_RETRY_MS", str(_STREAM_RETRY_MS))

# KEYS: window hashes. ARGV: token delta, then the window start the reservation was counted in,
# per key. Returns each key's tokens after the correction, or -1 when that window has closed.
_ADJUST_LUA = """
local delta = tonumber(ARGV[1])
local reply = {}
for i = 1, #KEYS do
  local state = redis.call('HMGET', KEYS[i], 's', 't')
  if state[1] == ARGV[1 + i] then
    local t = math.max(0, (tonumber(state[2]) or 0) + delta)
    redis.call('HSET', KEYS[i], 't', string.format('%d', t))
    reply[i] = t
  else
    reply[i] = -1
  end
end
return reply
"""

# KEYS: the stream set. ARGV: lease ms, member. Extends the member's lease if it still holds one.
_REFRESH_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[1])
local changed = redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%d', now + lease), ARGV[2])
if changed > 0 and redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return changed
"""


_ACQUIRE = redis_scripts.script(_ACQUIRE_LUA)
_ADJUST = redis_scripts.script(_ADJUST_LUA)
_REFRESH = redis_scripts.script(_REFRESH_LUA)
_warned_at = -math.inf


def _warn_unavailable(exc: BaseException) -> None:
    global _warned_at
    if time.monotonic() - _warned_at >= 10:  # once per 10 s, not once per request
        _warned_at = time.monotonic()
        logger.warning("rate limiter: Redis did not answer (%s: %s)", type(exc).__name__, exc)


# --- in process (no REDIS_URL) ---


class _Memory:
    """The scripts' algorithm over dicts, for one process. Same arguments and replies as the scripts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one event loop needs none; an async_to_sync thread would
        self._windows: dict[str, list[int]] = {}  # key -> [start, requests, tokens, closes at]
        self._streams: dict[str, dict[str, int]] = {}  # key -> {member: lease ends at}
        self._swept = 0

    @staticmethod
    def _now() -> int:
        return time.monotonic_ns() // 1_000_000

    def acquire(self, keys: list[str], args: list) -> list[int]:
        with self._lock:
            now = self._now()
            self._sweep(now)
            window, tokens, n = int(args[0]), int(args[1]), int(args[2])
            refused, wait, state = 0, 0, []
            for i in range(n):
                entry = self._windows.get(keys[i])
                start, requests, counted = (entry[0], entry[1], entry[2]) if entry and now < entry[3] else (now, 0, 0)
                state.append([start, requests, counted])
                reset = start + window - now
                rpm, tpm = int(args[3 + 2 * i]), int(args[4 + 2 * i])
                if rpm >= 0 and requests + 1 > rpm and reset > wait:
                    refused, wait = 2 * i + 1, reset
                if tpm >= 0 and counted + tokens > tpm and reset > wait:
                    refused, wait = 2 * i + 2, reset
            cap = int(args[3 + 2 * n])
            if refused == 0 and cap >= 0:
                slots = self._live_slots(keys[n], now)
                if len(slots) >= cap:
                    refused, wait = 2 * n + 1, _STREAM_RETRY_MS
            if refused == 0:
                for i, item in enumerate(state):
                    item[1] += 1
                    item[2] += tokens
                    self._windows[keys[i]] = [*item, item[0] + window]
                if cap >= 0:
                    self._streams.setdefault(keys[n], {})[str(args[5 + 2 * n])] = now + int(args[4 + 2 * n])
            return [1 if refused == 0 else 0, refused, wait, now, *(value for item in state for value in item)]

    def adjust(self, keys: list[str], args: list) -> list[int]:
        with self._lock:
            now, delta, reply = self._now(), int(args[0]), []
            for key, start in zip(keys, args[1:], strict=True):
                entry = self._windows.get(key)
                if entry and entry[0] == int(start) and now < entry[3]:
                    entry[2] = max(0, entry[2] + delta)
                    reply.append(entry[2])
                else:
                    reply.append(-1)
            return reply

    def release(self, key: str, member: str) -> None:
        with self._lock:
            self._streams.get(key, {}).pop(member, None)

    def refresh(self, keys: list[str], args: list) -> None:
        with self._lock:
            slots = self._live_slots(keys[0], self._now())
            if args[1] in slots:
                slots[args[1]] = self._now() + int(args[0])

    def _live_slots(self, key: str, now: int) -> dict[str, int]:
        slots = self._streams.get(key, {})
        for member in [member for member, ends in slots.items() if ends <= now]:
            del slots[member]
        return slots

    def _sweep(self, now: int) -> None:
        """Drop closed windows and empty stream sets, at most once a minute."""
        if now - self._swept < 60_000:
            return
        self._swept = now
        self._windows = {key: entry for key, entry in self._windows.items() if now < entry[3]}
        self._streams = {key: slots for key, slots in self._streams.items() if self._live_slots(key, now)}


_memory = _Memory()
