"""A request the upstream answered is never missing from the request log or the ledger, however it
ends: its client gives up at any moment after the answer (which cancels the request's task at
whatever it awaits), the server stops with it in flight, the database is away meanwhile.

Each request is a raw HTTP exchange whose socket the test closes at a random moment within 30 ms
of the mock billing its answer, whose last bytes the mock sends 20 ms after billing it
(`mock-slow-tail`): the cancellations land on the awaits that follow the upstream call (reading
the rest of the answer, the relay waiting for `[DONE]`, settling the budget and the rate limit,
the writes to the client), or after the request ended. Every request the mock billed must have
exactly one row and one debit, with the upstream's usage or an estimate flagged as such.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from decimal import Decimal

import orjson
import pytest
from django.db import connection

from billing.models import LedgerEntry
from gateway import services
from gateway.models import Deployment, RequestLog
from tests.conftest import Setup, _logs_since, wait_for
from tests.gateway_processes import database_url
from tests.mock_upstream import MockUpstream
from tests.tcp_proxy import FlakyTcpProxy

pytestmark = pytest.mark.django_db(transaction=True)


def _request(secret: str, *, stream: bool, n: int) -> bytes:
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": f"cancel me {n} please"}],
        "max_tokens": 20,
        "stream": stream,
    }
    data = orjson.dumps(body)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {secret}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _give_up_after_the_answer(base_url: str, secret: str, upstream: MockUpstream, n: int) -> None:
    """One request whose client hangs up within 30 ms of the mock billing it."""
    host, port = base_url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    billed = len(upstream.state.billed)
    writer.write(_request(secret, stream=n % 2 == 1, n=n))
    await writer.drain()
    deadline = time.monotonic() + 10
    while len(upstream.state.billed) == billed:
        if time.monotonic() > deadline:
            raise AssertionError(f"request {n} was never answered by the mock")
        await asyncio.sleep(0)
    await asyncio.sleep(random.uniform(0, 0.03))
    writer.transport.abort()  # no FIN handshake: gone, as a killed client is


def _debits() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, created_at__gte=_logs_since[0]))


def _rows() -> list[RequestLog]:
    return list(RequestLog.objects.filter(created_at__gte=_logs_since[0]))


def _assert_each_billed_request_is_logged_and_debited(upstream: MockUpstream, requests: int) -> None:
    billed = len(upstream.state.billed)
    assert billed == requests, "every request reached the mock and was answered in full"
    wait_for(lambda: len(_rows()) >= requests and len(_debits()) >= requests, timeout=30)
    rows, debits = _rows(), _debits()
    assert len(rows) == requests and len(debits) == requests, (len(rows), len(debits))
    assert {r.request_id for r in rows} == {d.request_id for d in debits}
    reported = sorted((u["prompt_tokens"], u["completion_tokens"]) for u in upstream.state.billed)
    for debit in debits:
        assert debit.input_tokens + debit.output_tokens > 0
        if not debit.estimated:  # the upstream's own count, as it billed it
            assert (debit.input_tokens, debit.output_tokens) in reported, debit
    assert all(r.status_code in (200, 499) for r in rows), sorted({r.status_code for r in rows})


def _price_and_slow_the_tail() -> None:
    for deployment in Deployment.objects.all():
        services.set_deployment_prices(deployment=deployment, input_price=Decimal(1), output_price=Decimal(2))
    Deployment.objects.update(upstream_model="mock-slow-tail=0.02")


def test_every_billed_request_is_logged_and_debited_when_its_client_gives_up_after_the_answer(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream
):
    _price_and_slow_the_tail()

    async def run() -> None:
        for n in range(60):
            await _give_up_after_the_answer(live_gateway, gateway_setup.secret, upstream, n)

    asyncio.run(run())

    _assert_each_billed_request_is_logged_and_debited(upstream, 60)
    assert {r.status_code for r in _rows()} >= {499}, "some requests were cut before their answer was sent"


@pytest.mark.postgres
@pytest.mark.redis
def test_every_billed_request_is_logged_and_debited_when_clients_give_up_while_the_database_is_away(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn
):
    _price_and_slow_the_tail()
    flaky = FlakyTcpProxy(int(connection.settings_dict["PORT"] or 5432))
    try:
        _proc, url = gunicorn(workers=1, DATABASE_URL=database_url(flaky.port))

        async def run(first: int, count: int) -> None:
            for n in range(first, first + count):
                await _give_up_after_the_answer(url, gateway_setup.secret, upstream, n)

        asyncio.run(run(0, 10))  # keys, models and budgets are read while the database is there
        flaky.cut()
        asyncio.run(run(10, 40))
        flaky.mend()

        _assert_each_billed_request_is_logged_and_debited(upstream, 50)
    finally:
        flaky.close()


@pytest.mark.postgres
@pytest.mark.redis
def test_every_request_the_upstream_received_is_logged_and_debited_when_sigterm_cuts_it_short(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn
):
    """Streams still running when the graceful shutdown's time is up are cancelled by the server."""
    _price_and_slow_the_tail()
    upstream.state.scripts["slow"] = ["stall=3"]  # three chunks, then silence until the client leaves
    Deployment.objects.update(upstream_model="mock-script-slow")
    proc, url = gunicorn(workers=2, graceful=1)

    async def run() -> list[bytes]:
        async def one(n: int) -> bytes:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_request(gateway_setup.secret, stream=True, n=n))
            try:
                return await asyncio.wait_for(reader.read(), timeout=30)
            finally:
                writer.close()

        sending = [asyncio.ensure_future(one(n)) for n in range(12)]
        while len(upstream.state.requests) < 12:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the first chunks have gone out
        os.kill(proc.pid, signal.SIGTERM)
        return await asyncio.gather(*sending)

    asyncio.run(run())
    proc.popen.wait(30)

    wait_for(lambda: len(_rows()) >= 12, timeout=15)
    rows, debits = _rows(), _debits()
    assert len(rows) == 12 and len(debits) == 12, (len(rows), len(debits))
    assert all(d.estimated and d.output_tokens > 0 for d in debits)  # what was streamed, flagged as estimated
    assert "unwritten" not in proc.log.read_text()
