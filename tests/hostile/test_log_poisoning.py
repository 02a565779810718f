"""No request can stop a worker writing request logs and ledger debits.

A row that the database refuses (a NUL byte), or a body too deep to serialise (a request or an
upstream answer nested 300 levels), is one request's problem: its sender gets a clean 4xx (a 502
for the upstream's answer), never a 500, and it still gets a row of its own. Each trigger is sent
to a gateway of two workers, then 50 ordinary requests: every one of them, and the trigger's row,
reaches the request log, and every request that used tokens its debit. Then SIGTERM: nothing is
left unwritten.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from gateway import services
from gateway.models import Deployment, RequestLog
from tests.bench.procs import Proc
from tests.conftest import Setup
from tests.factories import DeploymentFactory, ModelFactory
from tests.hostile.conftest import Answer, Rig, price
from tests.mock_upstream import MockUpstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
LEVELS = 300
HI = [{"role": "user", "content": "hi"}]
ORDINARY = {"model": "gpt-test", "messages": [{"role": "user", "content": "an ordinary request"}]}


def nested(levels: int, inner: Any, key: str | None = None) -> Any:
    """`inner` wrapped in `levels` lists (or objects under `key`)."""
    for _ in range(levels):
        inner = {key: inner} if key else [inner]
    return inner


def _request_error(answer: Answer) -> bool:
    return 400 <= answer.status < 500


def _bad_gateway(answer: Answer) -> bool:
    return answer.status == 502


def _clean_stream(answer: Answer) -> bool:
    """Not a 500, and a stream that ends as its SDK expects ([DONE], or an error event), never cut."""
    if answer.status == 502:
        return True
    ended = answer.done or any(isinstance(e, dict) and "error" in e for e in answer.body)
    return answer.status == 200 and not answer.cut and ended


# name: (endpoint, body, what the trigger's own answer must be)
TRIGGERS: dict[str, tuple[str, dict[str, Any], Any]] = {
    "a NUL byte in model": (CHAT, {"model": "x\u0000", "messages": HI}, _request_error),
    "a request nested 300 levels": (
        CHAT,
        {"model": "gpt-test", "messages": [{"role": "user", "content": nested(LEVELS, "hi")}]},
        _request_error,
    ),
    "metadata nested 300 levels on /v1/messages": (
        MESSAGES,
        {"model": "gpt-test", "max_tokens": 10, "messages": HI, "metadata": nested(LEVELS, {"user_id": "u"}, "deeper")},
        _request_error,
    ),
    "an upstream answer nested 300 levels": (CHAT, {"model": "deep", "messages": HI}, _bad_gateway),
    "an upstream stream chunk nested 300 levels": (
        CHAT,
        {"model": "deep", "messages": HI, "stream": True},
        _clean_stream,
    ),
}


@pytest.fixture
def served(gateway_setup: Setup, upstream: MockUpstream, gunicorn) -> Rig:  # type: ignore[no-untyped-def]
    """`gpt-test` answered by the mock's echo, `deep` by its answer nested 300 levels (`mock-deep`),
    both priced; the gateway in gunicorn with two workers."""
    provider = Deployment.objects.get(model__name=gateway_setup.model).provider
    DeploymentFactory(model=ModelFactory(name="deep"), provider=provider, upstream_model="mock-deep")
    services.update_project(project=gateway_setup.project, allowed_models=[gateway_setup.model, "deep"])
    for deployment in Deployment.objects.all():
        price(deployment)
    proc, url = gunicorn(workers=2)
    return Rig(setup=gateway_setup, url=url, proc=proc, upstream=upstream)


def _undebited(request_ids: set[str], served: Rig) -> list[str]:
    """Requests that used tokens and have no usage debit."""
    debited = {d.request_id for d in served.debits()}
    used = RequestLog.objects.filter(request_id__in=request_ids).exclude(input_tokens=0, output_tokens=0)
    return sorted(set(used.values_list("request_id", flat=True)) - debited)


def _stop_gracefully(proc: Proc) -> str:
    """SIGTERM the gunicorn master, wait for it to exit, and return what it wrote."""
    os.kill(proc.pid, signal.SIGTERM)
    proc.popen.wait(60)
    return proc.log.read_text(errors="replace")


@pytest.mark.parametrize("trigger", TRIGGERS, ids=str)
def test_every_row_and_debit_is_written_when_a_request_carries(served: Rig, trigger: str):
    path, body, acceptable = TRIGGERS[trigger]

    [poison] = served.send([(path, body)])
    ordinary = served.burst(50, ORDINARY)

    request_ids = {poison.request_id} | {a.request_id for a in ordinary}
    logged = served.logged(request_ids)
    undebited = _undebited(request_ids, served)
    printed = _stop_gracefully(served.proc)
    logged_after_stop = served.logged(request_ids, timeout=0)

    assert acceptable(poison), f"the trigger was answered {poison!r}"
    assert poison.request_id, "the trigger's answer names its request id"
    assert [a for a in ordinary if a.status != 200] == []
    assert poison.request_id in logged, "the trigger has no request-log row"
    assert len(logged) == 51, f"{51 - len(logged)} of 51 requests have no request-log row"
    assert undebited == [], "requests that used tokens have no usage debit"
    if acceptable is not _clean_stream:  # a stream cut at the deep chunk may settle on an estimate
        assert served.debited_tokens() == served.billed_tokens(), "the ledger is not what the upstream billed"
    assert [line for line in printed.splitlines() if "unwritten" in line] == []
    assert logged_after_stop == request_ids
