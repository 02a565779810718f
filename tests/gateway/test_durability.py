"""No request's log row or ledger debit is lost: not on SIGTERM under load, not when the database
goes away for 30 seconds under load.

The gateway runs as in production: gunicorn managing two uvicorn workers, on the test database
and Redis. The mock upstream (in this process) counts every answer it delivered in full; each of
those must end up as a request-log row and a usage debit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter

import httpx
import pytest
from django.db import connection

from billing.models import LedgerEntry
from gateway.models import RequestLog
from tests.conftest import Setup, _logs_since
from tests.gateway_processes import database_url
from tests.mock_upstream import MockUpstream
from tests.tcp_proxy import FlakyTcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]
CONCURRENCY = 16


async def _load(url: str, secret: str, stop: threading.Event, statuses: Counter[str]) -> None:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello durability"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def loop() -> None:
            while not stop.is_set():
                try:
                    response = await client.post(f"{url}/v1/chat/completions", json=payload, headers=headers)
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))


def _in_background(url: str, secret: str) -> tuple[threading.Event, Counter[str], threading.Thread]:
    stop, statuses = threading.Event(), Counter[str]()
    thread = threading.Thread(target=lambda: asyncio.run(_load(url, secret, stop, statuses)), daemon=True)
    thread.start()
    return stop, statuses, thread


def _rows_and_debits() -> tuple[int, int]:
    answered = RequestLog.objects.filter(created_at__gte=_logs_since[0], deployment__isnull=False).count()
    debits = LedgerEntry.objects.filter(created_at__gte=_logs_since[0], kind=LedgerEntry.Kind.USAGE).count()
    return answered, debits


def _wait_until_all_written(served: int, timeout: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while (found := _rows_and_debits()) != (served, served) and time.monotonic() < deadline:
        time.sleep(0.25)
    return found


def test_every_served_request_is_logged_and_debited_when_gunicorn_is_stopped_under_load(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn
):
    proc, url = gunicorn()
    stop, statuses, thread = _in_background(url, gateway_setup.secret)
    time.sleep(3)

    os.kill(proc.pid, signal.SIGTERM)  # graceful: finish what runs, flush, exit
    proc.popen.wait(60)
    stop.set()
    thread.join(30)

    served = len(upstream.state.billed)
    assert statuses["200"] > 100, statuses  # there was load
    assert served >= statuses["200"]
    assert _wait_until_all_written(served, timeout=10) == (served, served), statuses


def test_no_row_is_missing_after_the_database_was_gone_for_30_seconds_under_load(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn
):
    flaky = FlakyTcpProxy(int(connection.settings_dict["PORT"] or 5432))
    try:
        # Keys and models expire every 5 s and keep serving stale while they cannot be re-read;
        # the log buffer keeps the rows meanwhile.
        _proc, url = gunicorn(DATABASE_URL=database_url(flaky.port), CATALOG_CACHE_TTL="5", BUDGET_CACHE_TTL="5")
        stop, statuses, thread = _in_background(url, gateway_setup.secret)
        time.sleep(2)

        before = statuses["200"]
        flaky.cut()
        time.sleep(30)
        during = statuses["200"] - before
        flaky.mend()
        time.sleep(3)
        stop.set()
        thread.join(30)

        served = len(upstream.state.billed)
        assert during > 100, statuses  # requests were answered while the database was away
        assert _wait_until_all_written(served, timeout=60) == (served, served), statuses
    finally:
        flaky.close()
