"""Budgets and rate limits hold across gateway processes that share Postgres and Redis.

Two real gateway processes (uvicorn, as `make run` starts one) serve the test database; a burst
of concurrent requests is spread over both. The mock upstream answers slowly, so every request
is in flight at once: admission is decided while all the others hold their reservations.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings

from billing import budget, services
from billing.models import LedgerEntry
from billing.periods import current_period, label
from gateway import installation
from gateway import services as gateway_services
from gateway.models import Deployment, VirtualKey
from tests.bench.procs import Proc, free_port, wait_for_port
from tests.conftest import Setup, _logs_since, wait_for
from tests.gateway_processes import gateway_environment
from tests.mock_upstream import MockUpstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]
SLOW = 3.0  # seconds the mock takes to answer: longer than it takes to admit the whole burst


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., list[str]]]:
    """Start gateway processes on the test database; returns their base URLs."""
    started: list[Proc] = []

    def start(count: int = 2, **env: str) -> list[str]:
        urls = []
        for index in range(count):
            port = free_port()
            environment = gateway_environment(**env)
            argv = [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port)]
            proc = Proc(f"gateway-{index}", [*argv, "--lifespan", "on"], env=environment, log=tmp_path / f"{index}.log")
            started.append(proc)
            wait_for_port(port, timeout=30, proc=proc)
            urls.append(f"http://127.0.0.1:{port}")
        return urls

    yield start
    for proc in started:
        proc.stop(grace=10)


def _slow(upstream: MockUpstream, *, seconds: float = SLOW) -> None:
    upstream.state.scripts["slow"] = [f"slow-first-token={seconds}"]
    Deployment.objects.update(upstream_model="mock-script-slow")


async def _burst(urls: list[str], secret: str, count: int, **body: object) -> list[httpx.Response]:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **body}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            url = f"{urls[i % len(urls)]}/v1/chat/completions"
            return await client.post(url, json=payload, headers={"Authorization": f"Bearer {secret}"})

        return await asyncio.gather(*(one(i) for i in range(count)))


def _debits() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, created_at__gte=_logs_since[0]))


def _price(output_price: str) -> None:
    for deployment in Deployment.objects.all():
        gateway_services.set_deployment_prices(
            deployment=deployment, input_price=Decimal(0), output_price=Decimal(output_price)
        )


def test_budget_admits_no_more_than_it_holds_when_300_requests_arrive_at_two_processes(
    gateway_setup: Setup, upstream: MockUpstream, gateways
):
    _slow(upstream)
    _price("1000")  # 10 output tokens at most: a worst case of exactly 0.01 a request
    services.set_budget(target=gateway_setup.project, monthly_limit="1.00")
    urls = gateways(2)

    responses = asyncio.run(_burst(urls, gateway_setup.secret, 300, max_tokens=10))

    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 100 and statuses[429] == 200, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"insufficient_quota"}
    assert len(upstream.state.requests) == 100  # the refused never reached the upstream
    assert wait_for(lambda: len(_debits()) == 100)
    debits = _debits()
    assert -sum(d.amount for d in debits) <= Decimal("1.00")
    billed = sum(u["prompt_tokens"] + u["completion_tokens"] for u in upstream.state.billed)
    assert sum(d.input_tokens + d.output_tokens for d in debits) == billed
    assert -sum(d.amount for d in debits) == sum(Decimal(u["completion_tokens"]) for u in upstream.state.billed) / 1000
    scope = budget.project_scope(gateway_setup.project.id)
    assert wait_for(lambda: budget.held_now(scope=scope, period=label(current_period())) == 0)


def test_rpm_admits_exactly_its_limit_when_requests_arrive_at_two_processes(
    gateway_setup: Setup, upstream: MockUpstream, gateways
):
    _slow(upstream, seconds=1.0)
    key = VirtualKey.objects.get(pk=gateway_setup.key_id)
    gateway_services.set_key_limits(key=key, rpm_limit=20, tpm_limit=None, max_streams=None)
    urls = gateways(2)

    responses = asyncio.run(_burst(urls, gateway_setup.secret, 60))

    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 20 and statuses[429] == 40, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit-requests"] == "20"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "retry-after" in refused.headers and "x-ratelimit-reset-requests" in refused.headers
    assert len(upstream.state.requests) == 20


def test_tpm_admits_exactly_what_fits_when_requests_arrive_at_two_processes(
    gateway_setup: Setup, upstream: MockUpstream, gateways
):
    _slow(upstream)
    key = VirtualKey.objects.get(pk=gateway_setup.key_id)
    gateway_services.set_key_limits(key=key, rpm_limit=None, tpm_limit=1000, max_streams=None)
    urls = gateways(2)

    # Each request reserves its prompt's estimate (1 token for "hi") plus max_tokens: 100 tokens.
    responses = asyncio.run(_burst(urls, gateway_setup.secret, 40, max_tokens=99))

    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 10 and statuses[429] == 30, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["x-ratelimit-limit-tokens"] == "1000"
    assert len(upstream.state.requests) == 10


def test_reservation_of_a_killed_process_expires(gateway_setup: Setup, upstream: MockUpstream, gateways):
    Deployment.objects.update(upstream_model="mock-hang")
    _price("1000")
    services.set_budget(target=gateway_setup.project, monthly_limit="1.00")
    [url] = gateways(1, BUDGET_RESERVATION_TTL="2")
    scope, period = budget.project_scope(gateway_setup.project.id), label(current_period())

    def send() -> None:
        payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
        headers = {"Authorization": f"Bearer {gateway_setup.secret}"}
        with contextlib.suppress(httpx.HTTPError):  # the process is killed under it
            httpx.post(f"{url}/v1/chat/completions", json=payload, headers=headers, timeout=30)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert wait_for(lambda: budget.held_now(scope=scope, period=period) == 10_000)  # 0.01 in micro-units
    proc = next(p for p in Proc._all if p.name == "gateway-0")
    os.kill(proc.pid, signal.SIGKILL)
    sender.join(10)

    assert wait_for(lambda: budget.held_now(scope=scope, period=period) == 0, timeout=5)
    # The next request's check drops the dead hold from the counters for good.
    [url] = gateways(1)
    Deployment.objects.update(upstream_model="upstream-gpt")  # a new process reads it afresh
    headers = {"Authorization": f"Bearer {gateway_setup.secret}"}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30).status_code == 200
    counters_key = f"{installation.redis_prefix()}{settings.BUDGET_REDIS_PREFIX}:{{{scope}}}:{period}"
    counters = redis.Redis.from_url(settings.REDIS_URL).hgetall(counters_key)
    assert int(counters[b"reserved"]) == 0
