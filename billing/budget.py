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

Amounts in Redis are whole micro-units of the currency (1e-6), rounded up: admission is never
looser than the ledger, which keeps exact decimals. `spent` starts from the ledger the first time
a month is touched (or after Redis lost its data) and then counts every settlement. A month's
limit comes from the ledger (allowance + credit) through a short in-process cache that every
budget change clears at once (gateway/invalidation.py).

Failure policy: a request that some hard budget governs is refused (503) when Redis does not
answer or the budget cannot be read: spending unchecked money is worse than a short outage.
Requests with no hard budget never touch Redis. Settlement runs after the response; when it
fails, the reservation expires on its own and the ledger (written separately) stays exact.

Without REDIS_URL (the embedded, single-process profile) the same algorithm runs in process.
"""

from __future__ import annotations

import logging
import math
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
from gateway import redis_scripts
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


NO_CAPS = Caps(period="")


# --- which budgets apply (cached per key and month) ---

_cache: HotCache[Caps] = HotCache(100_000)  # per key and month


def _clear_cache() -> None:
    _cache.clear()


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
-- ARGV: now_ms, expires_ms, request id, amount, keep_ms, then per budget: limit, spent from the ledger.
local now, expires, rid, amount, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n = #KEYS / 3
for i = 1, n do
  local counters, expiries, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  if redis.call('HSETNX', counters, 'spent', ARGV[5 + 2*i]) == 1 then
    redis.call('HSET', counters, 'reserved', 0)
  end
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', expiries, '-inf', now)) do
    local held = redis.call('HGET', amounts, gone)
    if held then
      redis.call('HINCRBY', counters, 'reserved', -tonumber(held))
      redis.call('HDEL', amounts, gone)
    end
    redis.call('ZREM', expiries, gone)
  end
  local spent = tonumber(redis.call('HGET', counters, 'spent'))
  local reserved = tonumber(redis.call('HGET', counters, 'reserved') or '0')
  if spent + reserved + amount > tonumber(ARGV[4 + 2*i]) then
    return {i, string.format('%d', spent), string.format('%d', reserved)}
  end
end
for i = 1, n do
  local counters, expiries, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  redis.call('HINCRBY', counters, 'reserved', amount)
  redis.call('HSET', amounts, rid, amount)
  redis.call('ZADD', expiries, expires, rid)
  redis.call('PEXPIRE', counters, keep)
  redis.call('PEXPIRE', expiries, keep)
  redis.call('PEXPIRE', amounts, keep)
end
return {0}
"""

_SETTLE_LUA = """
-- KEYS as for reserve. ARGV: request id, actual amount.
local rid, actual = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS / 3 do
  local counters, expiries, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local held = redis.call('HGET', amounts, rid)
  if held then
    redis.call('HINCRBY', counters, 'reserved', -tonumber(held))
    redis.call('HDEL', amounts, rid)
    redis.call('ZREM', expiries, rid)
  end
  -- A month whose counters are gone (Redis lost them) restarts from the ledger instead.
  if actual > 0 and redis.call('EXISTS', counters) == 1 then
    redis.call('HINCRBY', counters, 'spent', actual)
  end
end
return 0
"""

_RESERVE = redis_scripts.script(_RESERVE_LUA)
_SETTLE = redis_scripts.script(_SETTLE_LUA)


def _keys(period: str, scopes: Iterable[str]) -> list[str]:
    keys = []
    for scope in scopes:
        base = f"{settings.BUDGET_REDIS_PREFIX}:{{{scope}}}:{period}"
        keys += [base, base + ":expiries", base + ":amounts"]
    return keys


async def reserve(caps: Caps, *, request_id: str, amount: Decimal) -> Reservation:
    """Hold `amount` (the request's worst case) against every hard budget in `caps`, or refuse."""
    held = micros(amount)
    now_ms = int(time.time() * 1000)
    args: list[Any] = [now_ms, now_ms + int(settings.BUDGET_RESERVATION_TTL * 1000), request_id, held, _KEEP_MS]
    for cap in caps.caps:
        args += [cap.limit, cap.spent]
    keys = _keys(caps.period, (cap.scope for cap in caps.caps))
    if settings.REDIS_URL:
        try:
            reply = await redis_scripts.run(_RESERVE, keys, args)
        except (TimeoutError, RedisError, OSError) as exc:
            _warn_unavailable(exc)
            raise BudgetUnavailable(
                "The gateway cannot check this project's budget right now (its budget store does not answer); "
                "try again shortly."
            ) from exc
    else:
        reply = _memory.reserve(keys, args)
    refused = int(reply[0])
    if refused:
        cap = caps.caps[refused - 1]
        spent, reserved = int(reply[1]), int(reply[2])
        left = max(cap.limit - spent - reserved, 0)
        raise BudgetExceeded(
            f"You exceeded your current quota: {cap.name} has {_money(left)} {settings.BILLING_CURRENCY} left "
            f"of {_money(cap.limit)} {settings.BILLING_CURRENCY} this month (including requests in flight), "
            f"and this request may cost up to {_money(held)}. {cap.remedy}"
        )
    return Reservation(request_id, caps.period, tuple(cap.scope for cap in caps.caps), held)


async def settle(reservation: Reservation, *, cost: Decimal | None) -> None:
    """Replace the hold with what the request cost (None or zero: it cost nothing). Idempotent."""
    if reservation.settled:
        return
    reservation.settled = True
    keys = _keys(reservation.period, reservation.scopes)
    args = [reservation.request_id, micros(cost) if cost and cost > 0 else 0]
    if not settings.REDIS_URL:
        _memory.settle(keys, args)
        return
    try:
        await redis_scripts.run(_SETTLE, keys, args)
    except (TimeoutError, RedisError, OSError) as exc:
        # After the response: the hold expires by itself; the ledger row is written regardless.
        logger.error(
            "could not settle budget reservation %s (%s); it expires in %.0f s",
            reservation.request_id,
            type(exc).__name__,
            settings.BUDGET_RESERVATION_TTL,
        )


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
    """Micro-units reserved by requests in flight for one budget-month (sync; the balance API)."""
    keys = _keys(period, [scope])
    now_ms = int(time.time() * 1000)
    if not settings.REDIS_URL:
        return _memory.held(keys, now_ms)
    import redis

    with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2) as client:
        amounts = client.hgetall(keys[2])
        if not amounts:
            return 0
        live = {m for m in client.zrangebyscore(keys[1], now_ms, "+inf")}
    return sum(int(v) for k, v in amounts.items() if k in live)


def project_scope(project_id: int) -> str:
    return f"p:{project_id}"


# --- in process (no REDIS_URL) ---


class _Memory:
    def __init__(self) -> None:
        self.counters: dict[str, dict[str, int]] = {}
        self.holds: dict[str, dict[str, tuple[int, int]]] = {}  # amounts key -> rid -> (amount, expires)

    def _purge(self, counters: str, amounts: str, now_ms: int) -> None:
        holds = self.holds.setdefault(amounts, {})
        for rid, (amount, expires) in list(holds.items()):
            if expires <= now_ms:
                del holds[rid]
                self.counters[counters]["reserved"] -= amount

    def reserve(self, keys: list[str], args: list[Any]) -> list[int]:
        now_ms, expires, rid, amount = int(args[0]), int(args[1]), str(args[2]), int(args[3])
        triples = [keys[i : i + 3] for i in range(0, len(keys), 3)]
        for i, (counters, _, amounts) in enumerate(triples, start=1):
            state = self.counters.setdefault(counters, {"spent": int(args[4 + 2 * i]), "reserved": 0})
            self._purge(counters, amounts, now_ms)
            if state["spent"] + state["reserved"] + amount > int(args[3 + 2 * i]):
                return [i, state["spent"], state["reserved"]]
        for counters, _, amounts in triples:
            self.counters[counters]["reserved"] += amount
            self.holds[amounts][rid] = (amount, expires)
        return [0]

    def settle(self, keys: list[str], args: list[Any]) -> None:
        rid, actual = str(args[0]), int(args[1])
        for i in range(0, len(keys), 3):
            counters, _, amounts = keys[i : i + 3]
            held = self.holds.get(amounts, {}).pop(rid, None)
            state = self.counters.get(counters)
            if state is None:
                continue
            if held is not None:
                state["reserved"] -= held[0]
            state["spent"] += actual

    def held(self, keys: list[str], now_ms: int) -> int:
        return sum(amount for amount, expires in self.holds.get(keys[2], {}).values() if expires > now_ms)


_memory = _Memory()


def reset() -> None:
    """Forget the in-process counters and cached budgets (tests)."""
    global _memory
    _memory = _Memory()
    _cache.clear()
