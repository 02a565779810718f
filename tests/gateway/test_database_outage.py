"""A database (or Redis) outage costs no request more than a moment.

The gateway runs as in production (gunicorn, two uvicorn workers) and reaches PostgreSQL, or
Redis, through a TCP proxy the test cuts for a while under load. Keys, models and budgets expire
every 5 s, so they fall due for a refresh during the cut: they keep serving while one refresh
runs in the background, a failed refresh marks the database away, and nothing on the request
path waits for the connection pool. Afterwards every request the upstream served has its row and
its debit.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.db import connection

from billing import services as billing_services
from gateway import services
from gateway.models import Deployment, VirtualKey
from tests.conftest import Setup, wait_for
from tests.gateway.test_durability import _rows_and_debits
from tests.gateway_processes import database_url
from tests.mock_upstream import MockUpstream
from tests.tcp_proxy import FlakyTcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]
CLIENTS = 8
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello outage"}], "max_tokens": 20}


class Load:
    """CLIENTS clients sending requests in a loop; each answer's status and latency, with when it started."""

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret
        self.samples: list[tuple[float, float, str]] = []  # (started, seconds, status or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=CLIENTS)) as client:

            async def loop() -> None:
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        response = await client.post(f"{self.url}/v1/chat/completions", json=BODY, headers=headers)
                        outcome = str(response.status_code)
                    except httpx.HTTPError as exc:
                        outcome = type(exc).__name__
                    self.samples.append((started, time.monotonic() - started, outcome))

            await asyncio.gather(*(loop() for _ in range(CLIENTS)))

    def between(self, start: float, end: float) -> list[tuple[float, str]]:
        return [(seconds, outcome) for at, seconds, outcome in self.samples if start <= at < end]


def _p99(samples: list[tuple[float, str]]) -> float:
    return statistics.quantiles([seconds for seconds, _ in samples], n=100)[98]


def _warm(url: str, secret: str) -> None:
    """Requests on fresh connections until both workers have read the key, the models and the budget."""
    for _ in range(40):
        with httpx.Client(timeout=10) as client:
            assert client.post(f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {secret}"})


def _status(url: str, path: str) -> int:
    return httpx.get(f"{url}{path}", timeout=10).status_code


def test_requests_stay_fast_and_every_served_one_is_recorded_when_the_database_is_cut_for_30_seconds(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn
):
    for deployment in Deployment.objects.all():
        services.set_deployment_prices(deployment=deployment, input_price=Decimal(1), output_price=Decimal(1))
    billing_services.set_budget(target=gateway_setup.project, monthly_limit="1000.00")  # budgets are read too
    revoked = services.create_virtual_key(project=gateway_setup.project, name="revoked just before")
    flaky = FlakyTcpProxy(int(connection.settings_dict["PORT"] or 5432))
    try:
        _proc, url = gunicorn(DATABASE_URL=database_url(flaky.port), CATALOG_CACHE_TTL="5", BUDGET_CACHE_TTL="5")
        _warm(url, gateway_setup.secret)
        _warm(url, revoked.secret)
        with Load(url, gateway_setup.secret) as load:
            time.sleep(5)
            services.revoke_key(key=VirtualKey.objects.get(pk=revoked.key.id))
            time.sleep(0.5)  # the revocation reaches both workers through Redis
            cut = time.monotonic()
            flaky.cut()
            time.sleep(2)
            assert _status(url, "/readyz") == 503  # a load balancer can prefer a healthy instance
            refused = [
                httpx.post(
                    f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {revoked.secret}"}
                ).status_code
                for _ in range(10)
            ]
            time.sleep(28)
            flaky.mend()
            mended = time.monotonic()
            time.sleep(3)

        assert set(refused) <= {401, 503}, refused  # refused, never served from a stale cache
        before, during = load.between(cut - 5, cut), load.between(cut, mended)
        statuses = Counter(outcome for _, outcome in during)
        assert statuses["200"] > 100 and set(statuses) == {"200"}, statuses  # no timeout, no 503
        assert max(seconds for seconds, _ in during) < 2.0
        assert _p99(during) <= 2 * _p99(before), (_p99(before), _p99(during))
        served = len(upstream.state.billed)
        assert wait_for(lambda: _rows_and_debits() == (served, served), timeout=60), (_rows_and_debits(), served)
        assert wait_for(lambda: _status(url, "/readyz") == 200, timeout=30)
    finally:
        flaky.close()


def test_a_redis_cut_spares_unlimited_projects_and_fails_limited_ones_closed_at_once(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn
):
    unit = gateway_setup.project.business_unit
    limited = services.create_project(name="Limited", business_unit=unit, allowed_models=["gpt-test"], rpm_limit=10**5)
    limited_key = services.create_virtual_key(project=limited, name="limited")
    redis_port = int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    flaky = FlakyTcpProxy(redis_port)
    try:
        database = settings.REDIS_URL.rsplit("/", 1)[1]
        _proc, url = gunicorn(REDIS_URL=f"redis://127.0.0.1:{flaky.port}/{database}")
        _warm(url, gateway_setup.secret)
        _warm(url, limited_key.secret)
        flaky.cut()
        time.sleep(1)

        def timed(secret: str) -> tuple[float, httpx.Response]:
            started = time.monotonic()
            response = httpx.post(
                f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {secret}"}, timeout=30
            )
            return time.monotonic() - started, response

        unlimited = [timed(gateway_setup.secret) for _ in range(20)]
        limited_answers = [timed(limited_key.secret) for _ in range(20)]
    finally:
        flaky.close()

    assert {r.status_code for _, r in unlimited} == {200}
    assert max(seconds for seconds, _ in unlimited) < 0.5
    assert {r.status_code for _, r in limited_answers} == {503}
    assert {r.json()["error"]["code"] for _, r in limited_answers} == {"rate_limiter_unavailable"}
    assert max(seconds for seconds, _ in limited_answers) < 0.5  # at once, not after a timeout
