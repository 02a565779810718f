"""Budget leases: far from its limit a process holds and settles requests from a lease it reserved.

What must hold: across processes no budget admits more worst cases than it holds (exactly as many
when every process asks for more), a request a lease covers costs no Redis call, a lease adds what
was spent to the month and gives its free part back, and the lease of a killed process expires.
Real Redis (the test settings' REDIS_URL), or the in-process server where one process is enough.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import redis
from django.conf import settings

from billing import budget
from gateway import installation, invalidation
from tests.conftest import wait_for

WORST = Decimal("0.001")  # 1,000 micro-units


@pytest.fixture(autouse=True)
def _leases_on(settings):  # type: ignore[no-untyped-def]
    settings.GOVERNANCE_LEASES = True
    settings.GOVERNANCE_LEASE_SECONDS = 0.3
    yield
    budget.reset()


@pytest.fixture(autouse=True)
async def _close_the_client() -> Iterator[None]:
    yield
    await budget.redis_scripts.close()


def _caps(scope: str, limit: Decimal) -> budget.Caps:
    cap = budget.Cap(scope=scope, limit=budget.micros(limit), spent=0, name="the budget", remedy="Wait.")
    return budget.Caps(period="2099-01", caps=(cap,), budgeted=True)


def _counters(scope: str) -> dict[bytes, bytes]:
    key = f"{installation.redis_prefix()}{settings.BUDGET_REDIS_PREFIX}:{{{scope}}}:2099-01"
    if not settings.REDIS_URL:
        return budget.redis_scripts.in_process_client().hgetall(key)
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        return client.hgetall(key)


def _held(scope: str) -> int:
    return budget.held_now(scope=scope, period="2099-01")


async def _reserve_in_waves(caps: budget.Caps, *, waves: int, size: int) -> int:
    admitted = 0
    for _ in range(waves):
        results = await asyncio.gather(
            *(budget.reserve(caps, request_id=secrets.token_hex(8), amount=WORST) for _ in range(size)),
            return_exceptions=True,
        )
        assert all(isinstance(r, (budget.Reservation, budget.BudgetExceeded)) for r in results), results
        held = [r for r in results if isinstance(r, budget.Reservation)]
        for reservation in held:
            await budget.settle(reservation, cost=WORST)
        admitted += len(held)
    return admitted


async def test_budget_admits_exactly_what_it_holds_when_one_process_serves_most_requests_from_leases():
    caps = _caps(f"p:{secrets.randbits(40)}", 3000 * WORST)

    admitted = await _reserve_in_waves(caps, waves=70, size=50)
    await asyncio.sleep(0.5)  # the lease's last flush

    assert admitted == 3000
    counters = _counters(caps.caps[0].scope)
    assert (int(counters[b"spent"]), int(counters[b"reserved"])) == (3_000_000, 0)


async def test_reserve_and_settle_make_no_redis_call_when_a_lease_covers_them(settings):
    caps = _caps(f"p:{secrets.randbits(40)}", Decimal(1000))
    first = await budget.reserve(caps, request_id="first", amount=WORST)  # a lease comes with it
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: a call would fail

    held = [await budget.reserve(caps, request_id=f"r{i}", amount=WORST) for i in range(20)]
    for reservation in held:
        await budget.settle(reservation, cost=WORST / 2)

    assert first.leased and all(reservation.leased for reservation in held)


async def test_lease_adds_what_was_spent_and_gives_back_its_free_part_when_it_is_stale():
    scope = f"p:{secrets.randbits(40)}"
    caps = _caps(scope, Decimal(1000))
    held = [await budget.reserve(caps, request_id=f"r{i}", amount=WORST) for i in range(4)]
    assert _held(scope) > 4 * 1000  # the lease is held in Redis before any request uses it

    for reservation in held:
        await budget.settle(reservation, cost=Decimal("0.0004"))
    await asyncio.sleep(0.5)  # GOVERNANCE_LEASE_SECONDS (0.3) and the flush

    counters = _counters(scope)
    assert (int(counters[b"spent"]), int(counters[b"reserved"])) == (1600, 0)
    assert _held(scope) == 0


async def test_lease_keeps_holding_a_request_in_flight_when_it_gives_its_free_part_back():
    scope = f"p:{secrets.randbits(40)}"
    caps = _caps(scope, Decimal(1000))
    reservation = await budget.reserve(caps, request_id="long", amount=WORST)

    await asyncio.sleep(0.5)  # stale: the free part went back

    assert _held(scope) == 1000
    await budget.settle(reservation, cost=WORST)
    await asyncio.sleep(0.5)
    assert _held(scope) == 0
    assert int(_counters(scope)[b"spent"]) == 1000


async def test_no_lease_is_taken_when_the_budget_is_near_its_limit():
    scope = f"p:{secrets.randbits(40)}"
    caps = _caps(scope, 100 * WORST)  # a lease needs room for 8 * 32 worst cases

    reservation = await budget.reserve(caps, request_id="near", amount=WORST)

    assert not reservation.leased
    assert _held(scope) == 1000


async def test_requests_go_to_redis_when_a_budget_changed(settings):
    caps = _caps(f"p:{secrets.randbits(40)}", Decimal(1000))
    await budget.reserve(caps, request_id="first", amount=WORST)

    invalidation.notify_local()  # what an admin's change of any budget does
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    with pytest.raises(budget.BudgetUnavailable):
        await budget.reserve(caps, request_id="second", amount=WORST)


# --- across processes ---

_RESERVE_IN_WAVES = """
import asyncio, secrets, sys
from decimal import Decimal
import django
django.setup()
from billing import budget

async def main():
    scope, limit, waves, size = sys.argv[1], Decimal(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    worst = Decimal("0.001")
    cap = budget.Cap(scope=scope, limit=budget.micros(limit), spent=0, name="the budget", remedy="Wait.")
    caps = budget.Caps(period="2099-01", caps=(cap,), budgeted=True)
    unlimited = budget.Cap(scope=scope + "w", limit=10**12, spent=0, name="w", remedy="w")
    warm = budget.Caps(period="2099-01", caps=(unlimited,))
    await budget.settle(await budget.reserve(warm, request_id="warm", amount=worst), cost=None)
    print("ready", flush=True)
    sys.stdin.readline()
    admitted = 0
    for _ in range(waves):
        results = await asyncio.gather(
            *(budget.reserve(caps, request_id=secrets.token_hex(8), amount=worst) for _ in range(size)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, budget.Reservation):
                admitted += 1
                await budget.settle(result, cost=worst)
            elif not isinstance(result, budget.BudgetExceeded):
                raise result
    if len(sys.argv) > 5:  # "hold": keep the lease until killed
        print(admitted, flush=True)
        await asyncio.sleep(60)
    await budget.redis_scripts.close()  # flushes the leases
    print(admitted, flush=True)

asyncio.run(main())
"""


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start separate Python processes with the gateway's settings and this test's Redis keys."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL=redis://...): processes share budgets through it")
    children: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[str]:
        environment = os.environ | {
            "DJANGO_SETTINGS_MODULE": "gateway.settings",
            "REDIS_URL": settings.REDIS_URL,
            "BUDGET_REDIS_PREFIX": settings.BUDGET_REDIS_PREFIX,
            **env,
        }
        pin = f"from gateway import installation; installation.pin({installation.redis_prefix()!r})\n"
        child = subprocess.Popen(
            [sys.executable, "-c", pin + _RESERVE_IN_WAVES, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=settings.BASE_DIR,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.redis
def test_budget_admits_exactly_what_it_holds_when_two_processes_reserve_from_leases(spawn):
    scope = f"p:{secrets.randbits(40)}"
    children = [spawn(scope, "4.000", "100", "50") for _ in range(2)]  # 4,000 worst cases; each asks 5,000
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()

    admitted = [int(child.stdout.readline()) for child in children]

    assert sum(admitted) == 4000
    counters = _counters(scope)
    assert (int(counters[b"spent"]), int(counters[b"reserved"])) == (4_000_000, 0)


@pytest.mark.redis
def test_lease_of_a_killed_process_expires(spawn, settings):
    scope = f"p:{secrets.randbits(40)}"
    child = spawn(scope, "1000", "1", "1", "hold", BUDGET_LEASE_TTL="1", GOVERNANCE_LEASE_SECONDS="60")
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "1"
    assert _held(scope) > 0  # its lease (the one request was settled in it)
    child.kill()
    child.wait(10)

    assert wait_for(lambda: _held(scope) == 0, timeout=5)
    settings.GOVERNANCE_LEASES = False  # the next check drops the dead lease from the counters for good
    reservation = asyncio.run(budget.reserve(_caps(scope, Decimal(1000)), request_id="next", amount=WORST))
    asyncio.run(budget.settle(reservation, cost=None))
    assert int(_counters(scope)[b"reserved"]) == 0
