"""Redis keys live under the installation's id: two installations sharing one Redis server (or a
database restored next to its original, after `reset_installation_id`) never see each other's
rate-limit windows or budget holds, and the hot path reads the id once per process."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO

import pytest
import redis
from django.core.management import call_command
from django.db import close_old_connections

from billing import budget
from gateway import installation
from gateway.models import Installation
from gateway.proxy import ratelimit
from tests.conftest import INSTALLATION_ID

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _back_to_this_runs_id() -> Iterator[None]:
    """Each test may change the id; the next test reads this run's again."""
    ratelimit.reset()
    budget.reset()
    yield
    Installation.objects.update_or_create(id=1, defaults={"installation_id": INSTALLATION_ID})
    installation.pin(installation.prefix_for(INSTALLATION_ID))
    ratelimit.reset()
    budget.reset()


def _become(installation_id: uuid.UUID) -> None:
    """This process now serves the installation whose database holds `installation_id`."""
    try:
        Installation.objects.update_or_create(id=1, defaults={"installation_id": installation_id})
        installation.forget()
    finally:
        close_old_connections()  # when called in a worker thread


def test_migration_makes_one_row_with_a_random_id() -> None:
    from django.apps import apps

    data_step = importlib.import_module("gateway.migrations.0016_installation").create_installation
    ids = []
    for _ in range(2):
        Installation.objects.all().delete()
        data_step(apps, None)
        ids.append(Installation.objects.get().installation_id)
    data_step(apps, None)  # run again on a database that has its row: keeps it

    assert Installation.objects.count() == 1
    assert Installation.objects.get().installation_id == ids[1]
    assert ids[0] != ids[1] and ids[0].version == 4  # random, not a constant


def test_prefix_is_read_from_the_database_once() -> None:
    _become(uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"))

    assert installation.cached_prefix() is None
    assert installation.redis_prefix() == "i:0011223344556677:"
    Installation.objects.update(installation_id=uuid.uuid4())  # no process notices until it restarts
    assert installation.redis_prefix() == "i:0011223344556677:"


async def test_first_async_use_loads_the_prefix_without_blocking_the_loop() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(_become)(uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100"))

    assert await installation.aredis_prefix() == "i:ffeeddccbbaa9988:"
    assert installation.cached_prefix() == "i:ffeeddccbbaa9988:"


def test_reset_installation_id_command_gives_a_new_id_and_says_to_restart() -> None:
    before = installation.installation_id()
    out, err = StringIO(), StringIO()

    call_command("reset_installation_id", stdout=out, stderr=err)

    after = Installation.objects.get().installation_id
    assert after != before
    assert out.getvalue().strip() == str(after)
    assert "Restart the web processes" in err.getvalue()
    assert installation.redis_prefix() == installation.prefix_for(after)  # this process forgot the old one


def _limits() -> ratelimit.Limits:
    return ratelimit.Limits(key_id=1, project_id=7, key_rpm=2)


async def _admitted(count: int) -> list[bool]:
    results = []
    for _ in range(count):
        try:
            await ratelimit.acquire(limits=_limits(), tokens=0, stream=False)
            results.append(True)
        except ratelimit.RateLimited:
            results.append(False)
    return results


@pytest.mark.parametrize("backend", ["redis-server", "in-process"])
async def test_two_installations_sharing_redis_count_their_own_rate_limit_windows(backend, settings) -> None:
    from asgiref.sync import sync_to_async

    if backend == "in-process":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL=redis://...)")
    first, second = uuid.uuid4(), uuid.uuid4()  # the same ids (project 7, key 1) in both databases

    await sync_to_async(_become)(first)
    assert await _admitted(3) == [True, True, False]
    await sync_to_async(_become)(second)
    assert await _admitted(3) == [True, True, False]  # its own window, not the first's
    await sync_to_async(_become)(first)
    assert await _admitted(1) == [False]  # the first's window is still there, still full
    await ratelimit.close()


async def test_two_installations_sharing_redis_hold_their_own_budgets(settings) -> None:
    from asgiref.sync import sync_to_async

    if not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL=redis://...)")
    settings.GOVERNANCE_LEASES = False
    cap = budget.Cap(scope="p:7", limit=budget.micros(Decimal("1.00")), spent=0, name="project 7", remedy="Wait.")
    caps = budget.Caps(period="2099-01", caps=(cap,), budgeted=True)
    first, second = uuid.uuid4(), uuid.uuid4()

    await sync_to_async(_become)(first)
    await budget.reserve(caps, request_id="a", amount=Decimal("0.80"))
    with pytest.raises(budget.BudgetExceeded):
        await budget.reserve(caps, request_id="b", amount=Decimal("0.80"))
    await sync_to_async(_become)(second)
    await budget.reserve(caps, request_id="c", amount=Decimal("0.80"))  # the first's hold is not here

    assert await sync_to_async(budget.held_now)(scope="p:7", period="2099-01") == budget.micros(Decimal("0.80"))
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        keys = {key.decode() for key in client.scan_iter(match=f"*{settings.BUDGET_REDIS_PREFIX}:{{p:7}}:2099-01")}
    assert keys == {
        f"{installation.prefix_for(first)}{settings.BUDGET_REDIS_PREFIX}:{{p:7}}:2099-01",
        f"{installation.prefix_for(second)}{settings.BUDGET_REDIS_PREFIX}:{{p:7}}:2099-01",
    }
    await budget.redis_scripts.close()


async def test_hot_path_never_reads_the_database_once_the_prefix_is_known(django_db_blocker, settings) -> None:
    settings.REDIS_URL = ""
    settings.GOVERNANCE_LEASES = True
    limits = ratelimit.Limits(key_id=3, project_id=11, key_rpm=10_000)
    await ratelimit.acquire(limits=limits, tokens=0, stream=False)

    with django_db_blocker.block():  # any ORM call would raise here
        for _ in range(200):
            ticket = ratelimit.acquire_locally(limits=limits, tokens=0, stream=False) or await ratelimit.acquire(
                limits=limits, tokens=0, stream=False
            )
            assert isinstance(ticket, ratelimit.Ticket)
    await ratelimit.close()
