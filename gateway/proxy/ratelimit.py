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

Leases: no round trip while no limit is near. When every window a request touches has plenty
left, the script that admits it also counts a slice of each window for this process: a share
(1/8) of what is left, at most 1,024 requests like this one, and only when each window can give
at least 16 of them. The process then admits the next requests of those windows in process,
from the slice, with no Redis call, and corrects their tokens there too. Exactness holds: a slice
is counted in Redis before any request uses it, so across all processes no more than the limit
is ever admitted; as a window fills, each slice is a share of less, and below 16 requests' worth
none is given, so near a limit every request goes to Redis as before. A slice admits for
GOVERNANCE_LEASE_SECONDS (0.5 s) after it was given; then what it did not use goes back to its
window (one script call), so an idle process does not keep capacity others could use for long.
A slice of a process that dies is lost with its window (at most `window_seconds`). A process
that loses its Redis connection stops admitting from its slices at once (it fails closed like
the rest). A refusal first looks at this process's slices (one may have arrived with the same
batch of replies), so a process never refuses what it holds. The x-ratelimit-* headers count
what was admitted: the window's count in Redis less this process's unused slice (other
processes' unused slices count as used until they come back). GOVERNANCE_LEASES=false turns
leases off.

A stream slot is a member of a sorted set per key, scored with the time its lease runs out
(`stream_lease_seconds`, extended by `refresh_stream()`); expired members are pruned on every
check, so a slot leaked by a killed process frees itself when its lease ends. Streams that take
a slot always go to Redis.

Without REDIS_URL (the embedded, single-process profile) the same scripts run in process
(gateway/redis_scripts.py).

Cost: no Redis call when no limit applies or a slice serves the request; otherwise one round
trip per `acquire()`, and one per `adjust()` only when the actual tokens differ from the
reservation and no slice can take the difference. When Redis does not answer, `acquire()` raises
`RateLimiterUnavailable` (a 503: the caller fails closed); `adjust()`, `release_stream()` and
`refresh_stream()` run after the response is committed, so they log the failure and return.
RATELIMIT_REDIS_TIMEOUT bounds connecting and answering (default 1 s); `close()` at shutdown
gives the slices back and closes the connection.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass, field

from django.conf import settings
from redis.exceptions import RedisError

from gateway import installation, redis_scripts
from gateway.proxy.errors import ProxyError, ServiceUnavailable

logger = logging.getLogger(__name__)

_NONE = -1  # "no such limit" in the scripts' arguments
_STREAM_RETRY_MS = 1000  # when a stream slot frees is unknowable: suggest retrying in a second
_LEASE_SHARE = 8  # a slice is at most this fraction of what a window has left ...
_LEASE_MIN = 16  # ... given only when it holds at least this many requests like the one asking
_LEASE_MAX = 1024  # ... and never more than this many
_WINDOW_MARGIN = 0.05  # seconds before its window closes that a slice stops admitting (clock skew)


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


@dataclass(eq=False, slots=True)
class _Lease:
    """This process's slice of one window: requests and tokens counted in Redis, not yet used here."""

    redis_key: str
    start: int  # the window it belongs to (its start, server ms)
    closes: float  # time.monotonic() when that window closes
    fresh_until: float = 0.0  # admits in process until then
    requests: int = 0  # unused
    tokens: int = 0  # unused (corrections of this process's requests land here too)
    seen_requests: int = 0  # the window's counts in Redis at the last reply, our unused slice included
    seen_tokens: int = 0
    returning: bool = False  # a return is scheduled

    def used(self) -> tuple[int, int]:
        return self.seen_requests - self.requests, self.seen_tokens - self.tokens


_leases: dict[str, _Lease] = {}  # per window hash (scope)
_asking: set[tuple[str, ...]] = set()  # scope sets with a request for a slice under way


# --- the public API ---


def acquire_locally(*, limits: Limits, tokens: int, stream: bool) -> Ticket | None:
    """`acquire()` without a round trip when it needs none (no limit applies, or this process's
    slices admit the request); None when Redis must decide. Never refuses."""
    if tokens < 0:
        raise ValueError("tokens must not be negative")
    wants_slot = stream and limits.key_max_streams is not None
    if (namespace := installation.cached_prefix()) is None:
        return None  # this process's first request: acquire() reads the installation id, once
    scopes = _scopes(limits, namespace)
    if not scopes and not wants_slot:
        return Ticket(limits=limits, tokens=tokens)
    if not wants_slot and _leases:
        return _from_leases(limits, scopes, tokens)
    return None


async def acquire(*, limits: Limits, tokens: int, stream: bool) -> Ticket:
    """Count one request reserving `tokens` against every limit, or raise RateLimited and count nothing."""
    try:
        namespace = await installation.aredis_prefix()
    except installation.InstallationUnknown as exc:
        raise RateLimiterUnavailable("The rate limiter is unavailable; please retry shortly.") from exc
    ticket = acquire_locally(limits=limits, tokens=tokens, stream=stream)
    if ticket is not None:
        return ticket
    scopes = _scopes(limits, namespace)
    wants_slot = stream and limits.key_max_streams is not None
    ticket_id = secrets.token_hex(8) if wants_slot else ""
    window_ms = _ms(limits.window_seconds)
    group = tuple(scope.redis_key for scope in scopes)
    want = settings.GOVERNANCE_LEASES and group not in _asking  # one request for a slice at a time
    args: list[int | str] = [window_ms, tokens, len(scopes)]
    for scope in scopes:
        args += [_NONE if scope.rpm is None else scope.rpm, _NONE if scope.tpm is None else scope.tpm]
        lease = _leases.get(scope.redis_key)
        if lease is not None and (lease.requests or lease.tokens):  # goes back with this call
            args += [lease.start, lease.requests, lease.tokens]
            lease.requests = lease.tokens = 0
        else:
            args += [_NONE, 0, 0]
    args += [limits.key_max_streams if wants_slot else _NONE, _ms(limits.stream_lease_seconds), ticket_id]
    args.append(1 if want else 0)
    keys = list(group)
    if wants_slot:
        keys.append(_streams_key(limits, namespace))

    if want:
        _asking.add(group)
    try:
        reply = await redis_scripts.run(_ACQUIRE, keys, args, then=lambda raw: _fold(raw, scopes, window_ms))
    except (RedisError, OSError) as exc:
        _warn_unavailable(exc)
        raise RateLimiterUnavailable("The rate limiter is unavailable; please retry shortly.") from exc
    finally:
        if want:
            _asking.discard(group)

    admitted, refused, wait_ms, starts, requests, counted, resets = reply
    if not admitted:
        if not wants_slot and _leases:  # a slice for these windows may have come with the same replies
            ticket = _from_leases(limits, scopes, tokens)
            if ticket is not None:
                return ticket
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
        _refreshed=time.monotonic(),
    )


def adjust_locally(ticket: Ticket, *, actual_tokens: int) -> bool:
    """`adjust()` without a round trip when it needs none (nothing to correct, or this process's
    slices take the correction); False when Redis must take it (nothing changed then)."""
    if actual_tokens < 0:
        raise ValueError("actual_tokens must not be negative")
    delta = actual_tokens - ticket.tokens
    indexes = [i for i, scope in enumerate(ticket._scopes) if scope.tpm is not None]
    if delta == 0 or not indexes:
        ticket.tokens = actual_tokens
        return True
    leases = [_leases.get(ticket._scopes[i].redis_key) for i in indexes]
    if all(
        lease is not None and lease.start == ticket._starts[i] and (delta < 0 or lease.tokens >= delta)
        for i, lease in zip(indexes, leases, strict=True)
    ):  # the window's slice here takes the correction: tokens given back go back with it
        ticket.tokens = actual_tokens
        for i, lease in zip(indexes, leases, strict=True):
            lease.tokens -= delta  # type: ignore[union-attr]
            ticket._tokens[i] = lease.used()[1]  # type: ignore[union-attr]
            _schedule_return(lease)  # type: ignore[arg-type]
        return True
    return False


async def adjust(ticket: Ticket, *, actual_tokens: int) -> None:
    """Correct the token counters from the reservation to what the request really used."""
    if adjust_locally(ticket, actual_tokens=actual_tokens):
        return
    delta = actual_tokens - ticket.tokens
    ticket.tokens = actual_tokens
    indexes = [i for i, scope in enumerate(ticket._scopes) if scope.tpm is not None]
    keys = [ticket._scopes[i].redis_key for i in indexes]
    args: list[int] = []
    for i in indexes:
        args += [ticket._starts[i], 0, -delta]
    try:
        reply = await redis_scripts.run(_GIVE_BACK, keys, args)
    except (RedisError, OSError) as exc:
        _warn_unavailable(exc)
        return
    for n, i in enumerate(indexes):
        tokens = int(reply[2 * n + 1])
        if tokens >= 0:
            lease = _leases.get(ticket._scopes[i].redis_key)
            mine = lease.tokens if lease is not None and lease.start == ticket._starts[i] else 0
            ticket._tokens[i] = tokens - mine


async def release_stream(ticket: Ticket) -> None:
    """Give back the ticket's stream slot (safe to call twice, or for a ticket without one)."""
    if not ticket.holds_stream:
        return
    ticket.holds_stream = False
    try:
        key = _streams_key(ticket.limits, await installation.aredis_prefix())
        await redis_scripts.command("ZREM", key, ticket.id)
    except (RedisError, OSError, installation.InstallationUnknown) as exc:
        _warn_unavailable(exc)  # the slot frees itself when its lease runs out


async def refresh_stream(ticket: Ticket) -> None:
    """Extend a long stream's lease; cheap to call on every chunk (it writes at most every third of a lease)."""
    lease = ticket.limits.stream_lease_seconds
    clock = time.monotonic()
    if not ticket.holds_stream or clock - ticket._refreshed < lease / 3:
        return
    ticket._refreshed = clock
    try:
        keys, args = [_streams_key(ticket.limits, await installation.aredis_prefix())], [_ms(lease), ticket.id]
        await redis_scripts.run(_REFRESH, keys, args)
    except (RedisError, OSError, installation.InstallationUnknown) as exc:
        _warn_unavailable(exc)


async def close() -> None:
    """Give this process's slices back, then close its Redis connection (on shutdown)."""
    await redis_scripts.close()


def reset() -> None:
    """Forget the in-process counters and this process's slices (tests)."""
    _leases.clear()
    _asking.clear()
    redis_scripts.forget_in_process("i:*:rl:*")


# --- leases ---


def _from_leases(limits: Limits, scopes: tuple[_Scope, ...], tokens: int) -> Ticket | None:
    """Admit the request from this process's slices of its windows, or None (then Redis decides)."""
    clock = time.monotonic()
    leases = []
    for scope in scopes:
        lease = _leases.get(scope.redis_key)
        if (
            lease is None
            or clock >= lease.fresh_until
            or clock >= lease.closes - _WINDOW_MARGIN
            or (scope.rpm is not None and lease.requests < 1)
            or (scope.tpm is not None and lease.tokens < tokens)
        ):
            return None
        leases.append(lease)
    requests, counted, starts, resets = [], [], [], []
    for scope, lease in zip(scopes, leases, strict=True):
        if scope.rpm is not None:
            lease.requests -= 1
        if scope.tpm is not None:
            lease.tokens -= tokens
        used_requests, used_tokens = lease.used()
        requests.append(used_requests)
        counted.append(used_tokens)
        starts.append(lease.start)
        resets.append(lease.closes)
    return Ticket(
        limits=limits,
        tokens=tokens,
        _scopes=scopes,
        _starts=starts,
        _requests=requests,
        _tokens=counted,
        _resets=resets,
        _refreshed=clock,
    )


def _fold(raw: list, scopes: tuple[_Scope, ...], window_ms: int) -> tuple:
    """Read the acquire script's reply and fold any slice it gave into this process's leases.

    Runs as the reply is read (gateway/redis_scripts.py's `then`), before later replies of the
    same batch reach their callers, so a refused caller sees a slice given to an earlier one."""
    clock = time.monotonic()
    admitted, refused, wait_ms, now = int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3])
    starts, requests, counted, resets = [], [], [], []
    lease_seconds = settings.GOVERNANCE_LEASE_SECONDS
    for i, scope in enumerate(scopes):
        j = 4 + 5 * i
        start, seen_requests, seen_tokens = int(raw[j]), int(raw[j + 1]), int(raw[j + 2])
        granted_requests, granted_tokens = int(raw[j + 3]), int(raw[j + 4])
        closes = clock + (start + window_ms - now) / 1000
        lease = _leases.get(scope.redis_key)
        if lease is not None and lease.start != start:  # its window closed: what it held is void
            del _leases[scope.redis_key]
            lease = None
        if lease is None and (granted_requests or granted_tokens):
            lease = _leases[scope.redis_key] = _Lease(scope.redis_key, start, closes)
        if lease is not None:
            lease.seen_requests, lease.seen_tokens = seen_requests, seen_tokens
            if granted_requests or granted_tokens:
                lease.requests += granted_requests
                lease.tokens += granted_tokens
                lease.fresh_until = clock + lease_seconds
                _schedule_return(lease)
            seen_requests, seen_tokens = lease.used()
        starts.append(start)
        requests.append(seen_requests)
        counted.append(seen_tokens)
        resets.append(closes)
    return bool(admitted), refused, wait_ms, starts, requests, counted, resets


def _schedule_return(lease: _Lease) -> None:
    """Give the slice's unused part back once it stops admitting (unless a new slice renews it)."""
    if lease.returning:
        return
    lease.returning = True
    try:
        delay = max(0.0, lease.fresh_until - time.monotonic()) + 0.01
        redis_scripts.defer(delay, lambda: _give_back(lease))
    except RuntimeError:  # no running loop (a synchronous caller): the next call returns it
        lease.returning = False


async def _give_back(lease: _Lease) -> None:
    lease.returning = False
    if _leases.get(lease.redis_key) is not lease:
        return  # forgotten (its window closed, or reset)
    if time.monotonic() < lease.fresh_until:
        _schedule_return(lease)  # renewed meanwhile
        return
    if not (lease.requests or lease.tokens):
        return
    requests, tokens = lease.requests, lease.tokens
    lease.requests = lease.tokens = 0
    try:
        await redis_scripts.run(_GIVE_BACK, [lease.redis_key], [lease.start, requests, tokens])
    except (RedisError, OSError) as exc:  # lost: counted until its window closes (never too loose)
        _warn_unavailable(exc)


def _stop_leasing() -> None:
    """The connection to Redis was lost: admit nothing more from slices until Redis answers again."""
    for lease in _leases.values():
        lease.fresh_until = 0.0


async def _give_all_back() -> None:
    for lease in list(_leases.values()):
        lease.fresh_until = 0.0
        await _give_back(lease)


redis_scripts.on_connection_lost(_stop_leasing)
redis_scripts.before_close(_give_all_back)


# --- limits, refusals and headers ---

_scope_cache: dict[Limits, tuple[_Scope, ...]] = {}


def _scopes(limits: Limits, namespace: str) -> tuple[_Scope, ...]:
    found = _scope_cache.get(limits)
    if found is None:
        if len(_scope_cache) >= 10_000:
            _scope_cache.clear()
        found = _scope_cache[limits] = _make_scopes(limits, namespace)
    return found


installation.on_change(_scope_cache.clear)  # keys made with the old namespace go


def _make_scopes(limits: Limits, namespace: str) -> tuple[_Scope, ...]:
    # One hash tag per project: every key a check touches lives in the same Redis Cluster slot
    # (the installation's namespace, `i:<id>:`, has no braces, so the tag stays the project's).
    tag = f"{namespace}rl:{{p{limits.project_id}}}"
    scopes = []
    if limits.key_rpm is not None or limits.key_tpm is not None:
        scopes.append(_Scope("key", f"{tag}:key:{limits.key_id}", limits.key_rpm, limits.key_tpm))
    if limits.project_rpm is not None or limits.project_tpm is not None:
        scopes.append(_Scope("project", f"{tag}:project", limits.project_rpm, limits.project_tpm))
    return tuple(scopes)


def _streams_key(limits: Limits, namespace: str) -> str:
    return f"{namespace}rl:{{p{limits.project_id}}}:streams:{limits.key_id}"


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
    if not scopes:
        return headers
    clock = time.monotonic()
    # The tightest limit: the fewest remaining; on a tie, the one that resets last.
    tightest_requests = tightest_tokens = None
    for i, scope in enumerate(scopes):
        if scope.rpm is not None:
            candidate = (scope.rpm - requests[i], -resets[i], scope.rpm)
            if tightest_requests is None or candidate < tightest_requests:
                tightest_requests = candidate
        if scope.tpm is not None:
            candidate = (scope.tpm - counted[i], -resets[i], scope.tpm)
            if tightest_tokens is None or candidate < tightest_tokens:
                tightest_tokens = candidate
    for kind, tightest in (("requests", tightest_requests), ("tokens", tightest_tokens)):
        if tightest is not None:
            remaining, reset, limit = tightest
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
# ARGV: window ms, tokens, number of scopes; per scope: rpm, tpm (-1: none), then the window start,
# requests and tokens of this process's unused slice that go back (-1, 0, 0: none); then the
# stream cap (-1: no slot wanted), lease ms, slot member, and 1 when a slice is wanted.
# Returns: admitted (1/0), the refusing limit (2i-1: scope i's rpm, 2i: its tpm, 2n+1: streams),
# ms until it frees, now (ms), then per scope: window start, requests, tokens (the slices given
# included), and the requests and tokens of the slice given to this process (0, 0: none).
_ACQUIRE_LUA = """
local function int(x) return string.format('%d', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window, tokens, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local refused, wait = 0, 0
local starts, requests, counted, back = {}, {}, {}, {}
for i = 1, n do
  local a = 3 + 5 * (i - 1)
  local state = redis.call('HMGET', KEYS[i], 's', 'r', 't')
  local s, r, t = tonumber(state[1]), 0, 0
  if s and now < s + window then
    r, t = tonumber(state[2]) or 0, tonumber(state[3]) or 0
    if ARGV[a + 3] == state[1] then
      r = math.max(0, r - tonumber(ARGV[a + 4]))
      t = math.max(0, t - tonumber(ARGV[a + 5]))
      back[i] = true
    end
  else
    s = now
  end
  starts[i], requests[i], counted[i] = s, r, t
  local reset = s + window - now
  local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if rpm >= 0 and r + 1 > rpm and reset > wait then refused, wait = 2 * i - 1, reset end
  if tpm >= 0 and t + tokens > tpm and reset > wait then refused, wait = 2 * i, reset end
end
local b = 3 + 5 * n
local cap = tonumber(ARGV[b + 1])
local streams = KEYS[n + 1]
if refused == 0 and cap >= 0 then
  redis.call('ZREMRANGEBYSCORE', streams, '-inf', now)
  if redis.call('ZCARD', streams) >= cap then refused, wait = 2 * n + 1, STREAM_RETRY_MS end
end
local grants = {}
if refused == 0 then
  local lease = tonumber(ARGV[b + 4]) == 1
  for i = 1, n do
    requests[i], counted[i] = requests[i] + 1, counted[i] + tokens
    local a = 3 + 5 * (i - 1)
    local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local gr, gt = 0, 0
    if rpm >= 0 then
      gr = math.min(math.floor((rpm - requests[i]) / SHARE), MAX)
      if gr < MIN then lease = false end
    end
    if tpm >= 0 then
      local size = math.max(tokens, 1)  -- whole requests like this one
      gt = math.min(math.floor((tpm - counted[i]) / SHARE / size), MAX) * size
      if gt < MIN * tokens then lease = false end
    end
    grants[i] = {gr, gt}
  end
  for i = 1, n do
    if lease then
      requests[i], counted[i] = requests[i] + grants[i][1], counted[i] + grants[i][2]
    else
      grants[i] = {0, 0}
    end
    redis.call('HSET', KEYS[i], 's', int(starts[i]), 'r', int(requests[i]), 't', int(counted[i]))
    if starts[i] == now then redis.call('PEXPIRE', KEYS[i], window) end
  end
  if cap >= 0 then
    local lease_ms = tonumber(ARGV[b + 2])
    redis.call('ZADD', streams, int(now + lease_ms), ARGV[b + 3])
    if redis.call('PTTL', streams) < lease_ms then redis.call('PEXPIRE', streams, lease_ms) end
  end
else
  for i = 1, n do
    grants[i] = {0, 0}
    if back[i] then redis.call('HSET', KEYS[i], 'r', int(requests[i]), 't', int(counted[i])) end
  end
end
local reply = {refused == 0 and 1 or 0, refused, wait, now}
for i = 1, n do
  local j = 5 * i
  reply[j], reply[j + 1], reply[j + 2] = starts[i], requests[i], counted[i]
  reply[j + 3], reply[j + 4] = grants[i][1], grants[i][2]
end
return reply
"""
_ACQUIRE_LUA = (
    _ACQUIRE_LUA.replace("STREAM_RETRY_MS", str(_STREAM_RETRY_MS))
    .replace("SHARE", str(_LEASE_SHARE))
    .replace("MIN", str(_LEASE_MIN))
    .replace("MAX", str(_LEASE_MAX))
)

# KEYS: window hashes. ARGV per key: the window start the counts belong to, requests and tokens to
# take off (negative: to add; a token correction, or a slice given back). Returns per key the
# requests and tokens after the change, or -1, -1 when that window has closed (nothing changes).
_GIVE_BACK_LUA = """
local reply = {}
for i = 1, #KEYS do
  local state = redis.call('HMGET', KEYS[i], 's', 'r', 't')
  if state[1] == ARGV[3 * i - 2] then
    local r = math.max(0, (tonumber(state[2]) or 0) - tonumber(ARGV[3 * i - 1]))
    local t = math.max(0, (tonumber(state[3]) or 0) - tonumber(ARGV[3 * i]))
    redis.call('HSET', KEYS[i], 'r', string.format('%d', r), 't', string.format('%d', t))
    reply[2 * i - 1], reply[2 * i] = r, t
  else
    reply[2 * i - 1], reply[2 * i] = -1, -1
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
_GIVE_BACK = redis_scripts.script(_GIVE_BACK_LUA)
_REFRESH = redis_scripts.script(_REFRESH_LUA)
_warned_at = -math.inf


def _warn_unavailable(exc: BaseException) -> None:
    global _warned_at
    if time.monotonic() - _warned_at >= 10:  # once per 10 s, not once per request
        _warned_at = time.monotonic()
        logger.warning("rate limiter: Redis did not answer (%s: %s)", type(exc).__name__, exc)
