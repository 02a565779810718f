"""Scale-out past one machine: two gateway instances (gunicorn, each in its own process group, on
its own port) share Postgres and Redis behind a round-robin balancer. One rate limit, one budget
and one key revocation hold across both, and stopping one under load (SIGTERM) loses nothing:
every request is answered or cleanly refused, and every answered request has its log row."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest

from billing import services as billing_services
from billing.models import LedgerEntry
from gateway import services
from gateway.models import Deployment, RequestLog, VirtualKey
from tests.bench.procs import Proc
from tests.conftest import Setup, _logs_since, wait_for
from tests.mock_upstream import MockUpstream
from tests.ops_scale.round_robin import RoundRobin

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def cluster(gunicorn) -> Iterator[Callable[..., tuple[RoundRobin, list[Proc]]]]:  # type: ignore[no-untyped-def]
    """Two gunicorn instances (one worker each) behind a round-robin balancer."""
    balancers: list[RoundRobin] = []

    def start(**env: str) -> tuple[RoundRobin, list[Proc]]:
        instances = [gunicorn(workers=1, **env) for _ in range(2)]
        balancer = RoundRobin([int(url.rsplit(":", 1)[1]) for _, url in instances])
        balancers.append(balancer)
        return balancer, [proc for proc, _ in instances]

    yield start
    for balancer in balancers:
        balancer.close()


def _ask(url: str, secret: str, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **body}
    # A new connection per request: the balancer alternates instances request by request.
    headers = {"Authorization": f"Bearer {secret}", **(headers or {})}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, headers=headers)


def _rows() -> list[RequestLog]:
    return list(RequestLog.objects.filter(created_at__gte=_logs_since[0]))


def _debits() -> int:
    return LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, created_at__gte=_logs_since[0]).count()


def test_one_rate_limit_holds_across_two_instances(gateway_setup: Setup, upstream: MockUpstream, cluster) -> None:
    key = VirtualKey.objects.get(pk=gateway_setup.key_id)
    services.set_key_limits(key=key, rpm_limit=6, tpm_limit=None, max_streams=None)
    balancer, _ = cluster()

    statuses = [_ask(balancer.url, gateway_setup.secret).status_code for _ in range(10)]

    assert Counter(statuses) == {200: 6, 429: 4}, statuses
    assert statuses[:6] == [200] * 6  # the window is one, whichever instance counts
    assert sorted(balancer.served.values()) == [5, 5]  # both instances served
    assert len(upstream.state.requests) == 6


def test_one_budget_holds_across_two_instances(gateway_setup: Setup, upstream: MockUpstream, cluster) -> None:
    for deployment in Deployment.objects.all():
        services.set_deployment_prices(deployment=deployment, input_price=Decimal(0), output_price=Decimal(1000))
    billing_services.set_budget(target=gateway_setup.project, monthly_limit="0.05")  # 5 worst cases of 0.01
    balancer, _ = cluster()

    responses = [_ask(balancer.url, gateway_setup.secret, max_tokens=10) for _ in range(9)]

    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] >= 5 and statuses[200] + statuses[429] == 9, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"insufficient_quota"}
    assert sorted(balancer.served.values()) == [4, 5]
    assert wait_for(lambda: _debits() == statuses[200])
    spent = -sum(
        entry.amount
        for entry in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, created_at__gte=_logs_since[0])
    )
    assert spent <= Decimal("0.05")  # one budget: the two instances together never spend past it


def test_a_revoked_key_stops_working_on_both_instances(gateway_setup: Setup, cluster) -> None:
    balancer, _ = cluster(CATALOG_CACHE_TTL="3600")  # only the Redis invalidation can make them forget
    assert [_ask(balancer.url, gateway_setup.secret).status_code for _ in range(4)] == [200] * 4  # both cached it

    services.revoke_key(key=VirtualKey.objects.get(pk=gateway_setup.key_id))

    assert wait_for(lambda: [_ask(balancer.url, gateway_setup.secret).status_code for _ in range(4)] == [401] * 4, 10)
    assert all(count >= 4 for count in balancer.served.values())


def test_failed_authentications_are_counted_across_both_instances(gateway_setup: Setup, cluster) -> None:
    balancer, _ = cluster(AUTH_FAILURE_LIMIT="4", TRUSTED_PROXY_COUNT="1")
    bad = "sk-sym-" + "y" * 43
    client = {"X-Forwarded-For": "198.51.100.77"}  # not the balancer's 127.0.0.1, which other tests used

    statuses = [_ask(balancer.url, bad, headers=client).status_code for _ in range(6)]

    assert statuses == [401, 401, 401, 401, 429, 429]  # two failures each, then both refuse
    assert sorted(balancer.served.values()) == [3, 3]


async def _load(url: str, secret: str, stop: threading.Event, outcomes: Counter[str]) -> None:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "scale out"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)  # a connection each: both instances
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def loop() -> None:
            while not stop.is_set():
                try:
                    response = await client.post(f"{url}/v1/chat/completions", json=payload, headers=headers)
                    outcomes[str(response.status_code)] += 1
                except httpx.TransportError as exc:
                    # No answer: no instance took the connection, or the stopping one closed it
                    # unread. Whether it was really left undone is what the test checks below.
                    outcomes[f"unanswered:{type(exc).__name__}"] += 1
                    await asyncio.sleep(0.02)

        await asyncio.gather(*(loop() for _ in range(8)))


def test_stopping_one_instance_under_load_loses_nothing(gateway_setup: Setup, upstream: MockUpstream, cluster) -> None:
    balancer, (first, second) = cluster()
    stop, outcomes = threading.Event(), Counter[str]()
    thread = threading.Thread(
        target=lambda: asyncio.run(_load(balancer.url, gateway_setup.secret, stop, outcomes)), daemon=True
    )
    thread.start()
    assert wait_for(lambda: outcomes["200"] >= 20, 30), outcomes  # both instances warm and serving

    os.kill(first.pid, signal.SIGTERM)  # graceful: finish what runs, flush the log buffer, exit
    first.popen.wait(60)
    before_stop = sum(outcomes.values())
    time.sleep(3)  # the other instance carries the load alone
    stop.set()
    thread.join(60)

    answered = sum(count for outcome, count in outcomes.items() if outcome.isdigit())
    unanswered = sum(count for outcome, count in outcomes.items() if outcome.startswith("unanswered:"))
    assert answered == outcomes["200"], outcomes  # every answer a success: no 5xx while one stops
    assert unanswered <= 8, outcomes  # at most the connections in flight to it when it stopped
    assert sum(outcomes.values()) > before_stop + 10, outcomes  # the second instance kept serving
    assert first.popen.returncode == 0 and second.alive()
    # Cleanly refused, not lost: a request without an answer never reached an upstream, and every
    # answered one has its log row and its debit (the stopped instance flushed its buffer).
    served = len(upstream.state.billed)
    assert served == outcomes["200"], outcomes
    assert wait_for(lambda: len(_rows()) == answered and _debits() == served, 30), (len(_rows()), answered, outcomes)
