"""Budgets on the hot path: reserve a request's worst case before the upstream call, settle it after.

The proxy calls this module on its hot path (see ARCHITECTURE.md): `caps_for()` says which hard budgets a
key's request must fit in, `reserve()` holds its worst-case cost against all of them at once,
and `settle()` turns the hold into what the request actually cost (zero when it failed). The
ledger debits are written with the request-log rows by the proxy's log writer, through
`billing.services.record_usage` (gateway/proxy/logbuffer.py).

Exactness across processes and machines: each budget-month is one Redis hash (`spent`,
`reserved`), with the live reservations in a sorted set (by expiry) and a hash (by amount). One
Lua script checks `spent + reserved + worst case <= limit` for every budget a request touches and,
only when all admit it, adds the reservation to each; Redis runs scripts one at a time, so N
concurrent requests can never hold more than the limit. Settling moves a reservation's amount
from `reserved` to `spent` at its actual cost. A reservation whose process died before settling
expires after BUDGET_RESERVATION_TTL seconds and is dropped at the next check.

Leases: no round trip while no budget is near its limit. When every budget a request touches
has room for far more than its worst case, the script that admits it also reserves a lease for
this process: one more reservation (id `lease:<pid>:<random>`) of a share (1/8) of the room left,
at most 1,024 worst cases like this one, and only when each budget can give at least 32. The
process then holds the next requests' worst cases from its lease in process (`reserve()` makes no
call) and settles them there (`settle()` makes none): the cost moves to the lease's spent part,
the rest of the hold back to its free part. A flush (a background call, every
GOVERNANCE_LEASE_SECONDS while the lease holds anything, and with any call this process makes for
the same budgets) adds what was spent to the month's `spent`, and once the lease has admitted for
GOVERNANCE_LEASE_SECONDS gives its free part back. Nothing is overspent: a lease is reserved in
Redis before a request uses it, a request is held in full before it is sent, and near the limit
leases shrink to nothing (each is a share of less room), so there every request is checked in
Redis as before. A lease's reservation expires BUDGET_LEASE_TTL seconds (10) after its last flush,
so the lease of a process that died frees itself (its unflushed spending, at most one flush
interval's, is lost from Redis as a dead process's settlements always were; the ledger is written
apart). A process that loses Redis, or sees a budget change, stops admitting from its leases at
once. `held_now()` counts leases as held (they are). GOVERNANCE_LEASES=false turns them off.

Amounts in Redis are whole micro-units of the currency (1e-6), rounded up: admission is never
looser than the ledger, which keeps exact decimals. `spent` starts from the ledger the first time
a month is touched (or after Redis lost its data) and then counts every settlement. A month's
limit comes from the ledger (allowance + credit) through a short in-process cache that every
budget change clears at once (gateway/invalidation.py).

Failure policy: a request that some hard budget governs is refused (503) when Redis does not
answer or the budget cannot be read: spending unchecked money is worse than a short outage.
Requests with no hard budget never touch Redis. Settlement runs after the response; when it
fails, the reservation expires on its own and the ledger (written separately) stays exact.

Without REDIS_URL (the embedded, single-process profile) the same scripts run in process
(gateway/redis_scripts.py).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import RedisError

from billing import selectors, services
from billing.models import Budget
from billing.periods import current_period, label
from gateway import installation, redis_scripts
from gateway.hotcache import DatabaseAway, HotCache
from gateway.invalidation import add_local_listener

logger = logging.getLogger(__name__)
_MICRO = Decimal("0.000001")
_KEEP_MS = 40 * 24 * 3600 * 1000  # a month's counters outlive the month by ten days


class BudgetExceeded(Exception):
    """The request's worst case does not fit in a hard budget. The message says which and what to do."""


class BudgetUnavailable(Exception):
    """A hard budget governs the request but cannot be checked now (fail closed)."""


def micros(amount: Decimal) -> int:
    """Whole micro-units, rounded up (so admission is never looser than the ledger)."""
    return int((amount / _MICRO).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Cap:
    scope: str  # "p:<project>", "k:<key>", "b:<business unit>"
    limit: int  # micro-units the month allows
    spent: int  # micro-units the ledger had spent when read (used once, to start the counter)
    name: str  # "project 'Search' monthly budget"
    remedy: str  # what the caller can do about it


@dataclass(frozen=True, slots=True)
class Caps:
    period: str  # "2026-11"
    caps: tuple[Cap, ...] = ()  # hard budgets only: the ones that refuse
    budgeted: bool = False  # any budget at all (soft ones too): unpriced models are refused


@dataclass(slots=True)
class Reservation:
    request_id: str
    period: str
    scopes: tuple[str, ...]
    amount: int
    settled: bool = False
    leased: bool = False  # held by this process's lease: settled in process


NO_CAPS = Caps(period="")


# --- which budgets apply (cached per key and month) ---

_cache: HotCache[Caps] = HotCache(100_000)  # per key and month


def _clear_cache() -> None:
    _cache.clear()
    _stop_leasing()  # a limit may have gone down: the next request asks Redis


add_local_listener(_clear_cache)


def _load_caps(*, project_id: int, key_id: int, business_unit_id: int | None) -> Caps:
    try:
        period = current_period()
        budgets = selectors.budgets_concerning(
            project_id=project_id, key_ids=[key_id], business_unit_id=business_unit_id
        )
        if not budgets:
            return Caps(period=label(period))
        caps = []
        for budget in budgets:
            if budget.scope == Budget.Scope.PROJECT:
                services.open_period(project_id=project_id, period=period)
            if not budget.hard:
                continue
            standing = selectors.standing(budget, period)
            caps.append(
                Cap(
                    scope=_scope_of(budget),
                    limit=int((standing.limit / _MICRO).to_integral_value()),
                    spent=micros(standing.spent),
                    name=_name_of(budget),
                    remedy=_remedy_of(budget),
                )
            )
        return Caps(period=label(period), caps=tuple(caps), budgeted=True)
    finally:
        close_old_connections()


_load = sync_to_async(_load_caps, thread_sensitive=False)


def _scope_of(budget: Budget) -> str:
    if budget.scope == Budget.Scope.PROJECT:
        return f"p:{budget.project_id}"
    if budget.scope == Budget.Scope.KEY:
        return f"k:{budget.key_id}"
    return f"b:{budget.business_unit_id}"


def _name_of(budget: Budget) -> str:
    if budget.scope == Budget.Scope.PROJECT:
        return f"the monthly budget of project '{budget.project}'"  # type: ignore[union-attr]
    if budget.scope == Budget.Scope.KEY:
        return f"the monthly budget of API key {budget.key.prefix}…"  # type: ignore[union-attr]
    return f"the monthly budget of business unit '{budget.business_unit}'"


def _remedy_of(budget: Budget) -> str:
    if budget.scope == Budget.Scope.BUSINESS_UNIT:
        return "Ask a manager of the business unit to raise its budget, or wait for next month."
    if budget.scope == Budget.Scope.KEY:
        return "Ask a project owner to raise this key's budget, or wait for next month."
    link = f"{settings.PUBLIC_URL}/requests/credit/new/?project={budget.project_id}"
    return f"Ask for more credit at {link} (or ask your project owner), or wait for next month."


async def caps_for(*, project_id: int, key_id: int, business_unit_id: int | None) -> Caps:
    """The hard budgets a request with this key must fit in this month.

    Read through the hot path's cache (gateway/hotcache.py): once read, they are refreshed in the
    background and keep serving while the database is away (the money is counted in Redis either
    way, only a change made during the outage waits). With nothing read before and the database
    away, the request is refused (BudgetUnavailable: fail closed)."""
    period = label(current_period())
    try:
        return await _cache.get(
            (key_id, period),
            lambda: _load(project_id=project_id, key_id=key_id, business_unit_id=business_unit_id),
            lambda _: settings.BUDGET_CACHE_TTL,
        )
    except Exception as exc:
        if not isinstance(exc, DatabaseAway):  # that one is logged once, by gateway/dbstate.py
            logger.exception("reading budgets failed")
        raise BudgetUnavailable("The gateway cannot read this project's budget right now; try again shortly.") from exc


# --- reserve and settle ---

_RESERVE_LUA = """
-- KEYS: per budget three keys: counters (hash spent/reserved), expiries (zset), amounts (hash).
-- ARGV: now_ms, expires_ms, request id, amount, keep_ms, this process's lease id, the lease's
-- expiry, 1 when a lease is wanted; then per budget: limit, spent from the ledger, and this
-- process's flush: what its requests spent from its lease, and the lease's unused part it gives back.
local now, expires, rid, amount, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local lid, lease_expires, want = ARGV[6], ARGV[7], tonumber(ARGV[8]) == 1 and amount > 0
local n = #KEYS / 3
for i = 1, n do
  local counters, expiries, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local a = 8 + 4 * (i - 1)
  if redis.call('HSETNX', counters, 'spent', ARGV[a + 2]) == 1 then
    redis.call('HSET', counters, 'reserved', 0)
  end
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', expiries, '-inf', now)) do
    local held = redis.call('HGET', amounts, gone)
    if held then
      redis.call('HINCRBY', counters, 'reserved', string.format('%d', -tonumber(held)))
      redis.call('HDEL', amounts, gone)
    end
    redis.call('ZREM', expiries, gone)
  end
  FLUSH(counters, expiries, amounts, lid, tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), lease_expires)
end
local room = {}
for i = 1, n do
  local counters = KEYS[3*i-2]
  local spent = tonumber(redis.call('HGET', counters, 'spent'))
  local reserved = tonumber(redis.call('HGET', counters, 'reserved') or '0')
  if spent + reserved + amount > tonumber(ARGV[5 + 4*i]) then
    return {i, string.format('%d', spent), string.format('%d', reserved)}
  end
  room[i] = tonumber(ARGV[5 + 4*i]) - spent - reserved - amount
end
local grants = {}
for i = 1, n do
  -- whole worst cases like this one, so that what is left of a lease serves one more
  grants[i] = math.min(math.floor(room[i] / SHARE / math.max(amount, 1)), MAX) * amount
  if grants[i] < MIN * amount then want = false end
end
local reply = {0, want and 1 or 0}
for i = 1, n do
  local counters, expiries, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  if want then
    local taken = string.format('%d', amount + grants[i])
    redis.call('HINCRBY', counters, 'reserved', taken)
    redis.call('HINCRBY', amounts, lid, taken)
    redis.call('ZADD', expiries, lease_expires, lid)
    reply[2 + i] = grants[i]
  else
    redis.call('HINCRBY', counters, 'reserved', ARGV[4])
    redis.call('HSET', amounts, rid, ARGV[4])
    redis.call('ZADD', expiries, expires, rid)
    reply[2 + i] = 0
  end
  redis.call('PEXPIRE', counters, keep)
  redis.call('PEXPIRE', expiries, keep)
  redis.call('PEXPIRE', amounts, keep)
end
return reply
"""

_SETTLE_LUA = """
-- KEYS as for reserve. ARGV: request id, actual amount.
local rid, actual = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS / 3 do
  local counters, expiries, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local held = redis.call('HGET', amounts, rid)
  if held then
    redis.call('HINCRBY', counters, 'reserved', string.format('%d', -tonumber(held)))
    redis.call('HDEL', amounts, rid)
    redis.call('ZREM', expiries, rid)
  end
  -- A month whose counters are gone (Redis lost them) restarts from the ledger instead.
  if actual > 0 and redis.call('EXISTS', counters) == 1 then
    redis.call('HINCRBY', counters, 'spent', ARGV[2])
  end
end
return 0
"""

_FLUSH_LUA = """
-- KEYS as for reserve. ARGV: this process's lease id, the lease's new expiry, then per budget what
-- its requests spent from the lease and the unused part it gives back. Returns 0.
for i = 1, #KEYS / 3 do
  FLUSH(KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i], ARGV[1], tonumber(ARGV[2*i+1]), tonumber(ARGV[2*i+2]), ARGV[2])
end
return 0
"""

# Settles a lease's spending and shrinks it by that and what it gives back; renews its expiry.
_FLUSH_FUNCTION = """
local function FLUSH(counters, expiries, amounts, lid, paid, back, lease_expires)
  if paid == 0 and back == 0 and lease_expires == '' then return end
  local lease = tonumber(redis.call('HGET', amounts, lid) or '')
  if lease then
    local left = math.max(0, lease - paid - back)
    redis.call('HINCRBY', counters, 'reserved', string.format('%d', left - lease))
    if left > 0 then
      redis.call('HSET', amounts, lid, string.format('%d', left))
      redis.call('ZADD', expiries, lease_expires, lid)
    else
      redis.call('HDEL', amounts, lid)
      redis.call('ZREM', expiries, lid)
    end
  end
  if paid > 0 and redis.call('EXISTS', counters) == 1 then
    redis.call('HINCRBY', counters, 'spent', string.format('%d', paid))
  end
end
"""

_LEASE_SHARE = 8  # a lease is at most this fraction of what a budget has left ...
_LEASE_MIN = 32  # ... given only when it holds at least this many worst cases like the one asking
_LEASE_MAX = 1024  # ... and never more than this many


def _with_flush(source: str) -> str:
    return _FLUSH_FUNCTION + source.replace("SHARE", str(_LEASE_SHARE)).replace("MIN", str(_LEASE_MIN)).replace(
        "MAX", str(_LEASE_MAX)
    )


_RESERVE = redis_scripts.script(_with_flush(_RESERVE_LUA))
_SETTLE = redis_scripts.script(_SETTLE_LUA)
_FLUSH = redis_scripts.script(_with_flush(_FLUSH_LUA))


def _keys(period: str, scopes: Iterable[str], namespace: str) -> list[str]:
    """Counters, expiries and amounts of each budget-month: `i:<installation>:<BUDGET_REDIS_PREFIX>:{scope}:<month>`."""
    keys = []
    for scope in scopes:
        base = f"{namespace}{settings.BUDGET_REDIS_PREFIX}:{{{scope}}}:{period}"
        keys += [base, base + ":expiries", base + ":amounts"]
    return keys


@dataclass(eq=False, slots=True)
class _Lease:
    """This process's slice of one budget-month, held in Redis as one reservation (the lease id).

    Redis holds free + held + spent; `reserve()` moves money from free to held, `settle()` from
    held to spent (and the rest back to free); a flush adds spent to the month's `spent` and,
    once the lease is stale, gives free back."""

    keys: list[str]  # counters, expiries, amounts
    fresh_until: float = 0.0  # admits in process until then
    free: int = 0  # micro-units no request here holds
    held: int = 0  # held by this process's requests in flight
    spent: int = 0  # what they cost, not yet added to the month's spent in Redis
    flushing: bool = False  # a flush is scheduled


_leases: dict[str, _Lease] = {}  # per budget-month (its counters key)
_asking: set[tuple[str, ...]] = set()  # budget sets with a request for a lease under way
_lease_owner: tuple[int, str] = (0, "")


def _lease_id() -> str:
    """This process's lease id (a new one in a forked child)."""
    global _lease_owner
    pid = os.getpid()
    if _lease_owner[0] != pid:
        _lease_owner = (pid, f"lease:{pid}:{secrets.token_hex(6)}")
    return _lease_owner[1]


def reserve_locally(caps: Caps, *, request_id: str, amount: Decimal) -> Reservation | None:
    """`reserve()` without a round trip when this process's leases hold the request; None when
    Redis must decide. Never refuses."""
    held = micros(amount)
    scopes = tuple(cap.scope for cap in caps.caps)
    if _leases and (namespace := installation.cached_prefix()) and _from_leases(caps.period, scopes, held, namespace):
        return Reservation(request_id, caps.period, scopes, held, leased=True)
    return None


async def reserve(caps: Caps, *, request_id: str, amount: Decimal) -> Reservation:
    """Hold `amount` (the request's worst case) against every hard budget in `caps`, or refuse."""
    if (local := reserve_locally(caps, request_id=request_id, amount=amount)) is not None:
        return local
    try:
        namespace = await installation.aredis_prefix()
    except installation.InstallationUnknown as exc:
        raise BudgetUnavailable("The gateway cannot check this project's budget right now; try again shortly.") from exc
    held = micros(amount)
    scopes = tuple(cap.scope for cap in caps.caps)
    now_ms = int(time.time() * 1000)
    keys = _keys(caps.period, scopes, namespace)
    group = tuple(keys[::3])
    want = settings.GOVERNANCE_LEASES and group not in _asking  # one request for a lease at a time
    args: list[Any] = [
        now_ms,
        now_ms + int(settings.BUDGET_RESERVATION_TTL * 1000),
        request_id,
        held,
        _KEEP_MS,
        _lease_id(),
        now_ms + int(settings.BUDGET_LEASE_TTL * 1000),
        1 if want else 0,
    ]
    for i, cap in enumerate(caps.caps):
        paid, back = _take_flush(keys[3 * i], stale_only=False)
        args += [cap.limit, cap.spent, paid, back]
    if want:
        _asking.add(group)
    try:
        reply = await redis_scripts.run(_RESERVE, keys, args, then=lambda raw: _fold(raw, keys, held))
    except (TimeoutError, RedisError, OSError) as exc:
        _warn_unavailable(exc)
        raise BudgetUnavailable(
            "The gateway cannot check this project's budget right now (its budget store does not answer); "
            "try again shortly."
        ) from exc
    finally:
        if want:
            _asking.discard(group)
    refused = int(reply[0])
    if refused:
        if _leases and _from_leases(caps.period, scopes, held, namespace):  # a lease came with the same replies
            return Reservation(request_id, caps.period, scopes, held, leased=True)
        cap = caps.caps[refused - 1]
        spent, reserved = int(reply[1]), int(reply[2])
        left = max(cap.limit - spent - reserved, 0)
        raise BudgetExceeded(
            f"You exceeded your current quota: {cap.name} has {_money(left)} {settings.BILLING_CURRENCY} left "
            f"of {_money(cap.limit)} {settings.BILLING_CURRENCY} this month (including requests in flight), "
            f"and this request may cost up to {_money(held)}. {cap.remedy}"
        )
    return Reservation(request_id, caps.period, scopes, held, leased=int(reply[1]) == 1)


def settle_locally(reservation: Reservation, *, cost: Decimal | None) -> bool:
    """`settle()` without a round trip when the hold came from a lease (or was settled already);
    False when Redis must take it (nothing changed then)."""
    if reservation.settled:
        return True
    if not reservation.leased:
        return False
    namespace = installation.cached_prefix()
    if namespace is None:
        return False  # forgotten (tests): settle() reads it again
    reservation.settled = True
    actual = micros(cost) if cost and cost > 0 else 0
    keys = _keys(reservation.period, reservation.scopes, namespace)
    for i in range(0, len(keys), 3):  # the lease's next flush carries it to Redis
        lease = _leases.get(keys[i])
        if lease is None:
            continue  # forgotten (reset)
        lease.held -= reservation.amount
        lease.spent += actual
        lease.free += reservation.amount - actual
        _schedule_flush(lease)
    return True


async def settle(reservation: Reservation, *, cost: Decimal | None) -> None:
    """Replace the hold with what the request cost (None or zero: it cost nothing). Idempotent."""
    if settle_locally(reservation, cost=cost):
        return
    reservation.settled = True
    actual = micros(cost) if cost and cost > 0 else 0
    try:
        keys = _keys(reservation.period, reservation.scopes, await installation.aredis_prefix())
        await redis_scripts.run(_SETTLE, keys, [reservation.request_id, actual])
    except (TimeoutError, RedisError, OSError, installation.InstallationUnknown) as exc:
        # After the response: the hold expires by itself; the ledger row is written regardless.
        logger.error(
            "could not settle budget reservation %s (%s); it expires in %.0f s",
            reservation.request_id,
            type(exc).__name__,
            settings.BUDGET_RESERVATION_TTL,
        )


# --- leases ---


def _from_leases(period: str, scopes: tuple[str, ...], amount: int, namespace: str) -> bool:
    """Hold `amount` from this process's leases of every budget, or do nothing and say False."""
    clock = time.monotonic()
    prefix = namespace + settings.BUDGET_REDIS_PREFIX
    leases = []
    for scope in scopes:
        lease = _leases.get(f"{prefix}:{{{scope}}}:{period}")
        if lease is None or clock >= lease.fresh_until or lease.free < amount:
            return False
        leases.append(lease)
    for lease in leases:
        lease.free -= amount
        lease.held += amount
    return True


def _fold(raw: list, keys: list[str], amount: int) -> list:
    """Fold a lease the reserve script gave into this process's leases (as the reply is read, so
    a refused caller of the same batch can use it)."""
    if int(raw[0]) != 0 or int(raw[1]) != 1:
        return raw
    fresh_until = time.monotonic() + settings.GOVERNANCE_LEASE_SECONDS
    for i in range(0, len(keys), 3):
        lease = _leases.get(keys[i])
        if lease is None:
            lease = _leases[keys[i]] = _Lease(keys[i : i + 3])
        lease.free += int(raw[2 + i // 3])
        lease.held += amount  # the request that asked is held by the lease too
        lease.fresh_until = fresh_until
        _schedule_flush(lease)
    return raw


def _take_flush(counters: str, *, stale_only: bool) -> tuple[int, int]:
    """What a call to Redis carries for this budget-month's lease: its spending, and its free part
    when it no longer admits (or always, unless `stale_only`). Taken off the lease here."""
    lease = _leases.get(counters)
    if lease is None:
        return 0, 0
    paid, lease.spent = lease.spent, 0
    back = 0
    if not stale_only or time.monotonic() >= lease.fresh_until:
        back, lease.free = lease.free, 0
        lease.fresh_until = 0.0
    return paid, back


def _schedule_flush(lease: _Lease) -> None:
    if lease.flushing:
        return
    lease.flushing = True
    try:
        redis_scripts.defer(settings.GOVERNANCE_LEASE_SECONDS + 0.01, lambda: _flush(lease))
    except RuntimeError:  # no running loop (a synchronous caller): the next call flushes it
        lease.flushing = False


async def _flush(lease: _Lease) -> None:
    """Carry the lease's spending to Redis, give back its free part once stale, and renew its
    expiry while requests here still hold some of it; again later while anything is left."""
    lease.flushing = False
    if _leases.get(lease.keys[0]) is not lease:
        return  # forgotten (reset)
    paid, back = _take_flush(lease.keys[0], stale_only=True)
    if paid == 0 and back == 0 and lease.held == 0 and lease.free == 0:
        if lease.fresh_until == 0.0:
            del _leases[lease.keys[0]]
        return
    expires = int(time.time() * 1000) + int(settings.BUDGET_LEASE_TTL * 1000)
    try:
        await redis_scripts.run(_FLUSH, lease.keys, [_lease_id(), expires, paid, back])
    except (TimeoutError, RedisError, OSError) as exc:
        _warn_unavailable(exc)  # the lease expires by itself; the ledger is written regardless
        lease.spent += paid  # tried again with the next flush
    if lease.held or lease.free or lease.spent:
        _schedule_flush(lease)


def _stop_leasing() -> None:
    """Redis was lost, or a budget changed: admit nothing more from leases until Redis answers."""
    for lease in _leases.values():
        lease.fresh_until = 0.0


async def _flush_all() -> None:
    for lease in list(_leases.values()):
        lease.fresh_until = 0.0
        await _flush(lease)


redis_scripts.on_connection_lost(_stop_leasing)
redis_scripts.before_close(_flush_all)


def _money(value: int) -> str:
    return f"{Decimal(value) * _MICRO:.2f}"


_warned_at = -math.inf


def _warn_unavailable(exc: BaseException) -> None:
    global _warned_at
    if time.monotonic() - _warned_at >= 10:
        _warned_at = time.monotonic()
        logger.warning("budgets: Redis did not answer (%s: %s)", type(exc).__name__, exc)


# --- what a month looks like right now (the balance endpoint) ---


def held_now(*, scope: str, period: str) -> int:
    """Micro-units reserved for one budget-month by requests in flight and by the gateway
    processes' leases (sync; the balance API)."""
    keys = _keys(period, [scope], installation.redis_prefix())
    now_ms = int(time.time() * 1000)
    if not settings.REDIS_URL:
        return _held(redis_scripts.in_process_client(), keys, now_ms)
    import redis

    with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2) as client:
        return _held(client, keys, now_ms)


def _held(client: Any, keys: list[str], now_ms: int) -> int:
    amounts = client.hgetall(keys[2])
    if not amounts:
        return 0
    live = set(client.zrangebyscore(keys[1], now_ms, "+inf"))
    return sum(int(v) for k, v in amounts.items() if k in live)


def project_scope(project_id: int) -> str:
    return f"p:{project_id}"


def reset() -> None:
    """Forget the in-process counters and cached budgets (tests)."""
    _leases.clear()
    _asking.clear()
    redis_scripts.forget_in_process(f"i:*:{settings.BUDGET_REDIS_PREFIX}:*")
    _cache.clear()
