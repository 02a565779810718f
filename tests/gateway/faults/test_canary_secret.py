"""A provider's API key never leaves the request to the provider: not in logs, responses, errors,
request-log rows or deployment health, whatever fault the upstream throws.

The provider's key is a canary: a unique string that appears nowhere else. Every fault is driven
through it, streaming and not, with every logger at DEBUG (the live gateway runs in this process,
so its records are captured too) and the process's stdout/stderr captured.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from django.core.cache import cache

from gateway import services
from gateway.health_state import HEALTH_KEY
from gateway.models import Deployment, Provider, RequestLog
from tests.conftest import logged
from tests.gateway.faults.conftest import PROMPT, Deployed, Faults

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [
    "ok",
    "429",
    "429-retry-after=0.01",
    "500",
    "503",
    "reset",
    "hang",
    "slow-first-token=1",
    "cut=0",
    "cut=3",
    "stall=3",
    "malformed",
    "malformed=3",
    "error-event=3",
    "no-done",
    "context-length",
    "content-filter",
    "content-filter-400",
]
CLIENT_LIBRARIES = ("httpx", "httpcore", "openai")  # the test's own client: it holds the virtual key


@pytest.fixture
def canary() -> str:
    return "sk-canary-" + secrets.token_hex(16)


@pytest.fixture
def canary_faults(faults: Faults, canary: str, settings) -> Faults:  # type: ignore[no-untyped-def]
    settings.CIRCUIT_FAILURE_THRESHOLD = 2  # circuits open (and say so in the log) during the run
    provider = services.create_provider(
        name="canary", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=faults.upstream.url, api_key=canary, approved=True
    )
    faults.provider = provider
    return faults


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def every_record(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Every log record at DEBUG and above, from every thread (uvicorn's loggers do not propagate)."""
    for name in (None, "gateway", "django", "aiohttp", "asyncio", "uvicorn", "uvicorn.error", "uvicorn.access"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    collector = _Collector()
    listened = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.access")]
    for logger in listened:
        logger.addHandler(collector)
    yield collector.records
    for logger in listened:
        logger.removeHandler(collector)


def _ask(faults: Faults, model: str, *, stream: bool) -> list[str]:
    """Everything the SDK hands the client: headers, body or chunks, and any exception."""
    seen: list[str] = []
    try:
        raw = faults.sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=stream
        )
        seen.append(str(dict(raw.headers)))
        if stream:
            seen.extend(chunk.model_dump_json() for chunk in raw.parse())
        else:
            seen.append(raw.http_response.text)
    except openai.APIError as exc:
        seen += [str(exc), repr(exc), exc.message, repr(exc.body)]
        if isinstance(exc, openai.APIStatusError):
            seen += [str(dict(exc.response.headers)), exc.response.text]
    return seen


def _leaks(secret: str, *, records: list[logging.LogRecord], printed: str, client: list[str]) -> list[str]:
    """Where the secret shows up: each place named, empty when nowhere."""
    found: list[str] = []
    formatter = logging.Formatter("%(name)s %(message)s")
    for record in records:
        if record.threadName == "mock-upstream":
            continue  # the upstream itself: it must see the key
        text = formatter.format(record) + repr(record.args) + str(record.msg)
        if secret in text:
            found.append(f"log record {record.name}: {text[:200]}")
    if secret in printed:
        found.append("stdout/stderr")
    found += [f"client: {text[:200]}" for text in client if secret in text]
    for row in RequestLog.objects.values():
        if secret in str(row):
            found.append(f"request log row {row['request_id']}")
    for deployment_id in Deployment.objects.values_list("id", flat=True):
        if secret in str(cache.get(HEALTH_KEY.format(deployment_id=deployment_id))):
            found.append(f"health of deployment {deployment_id}")
    return found


def test_provider_key_appears_nowhere_when_every_fault_is_injected(canary_faults, canary, every_record, capfd):
    faults = canary_faults
    names: list[tuple[str, bool]] = []
    for index, step in enumerate(STEPS):
        for stream in (False, True):
            name = f"m{index}-{'stream' if stream else 'json'}"
            faults.script(name, step)
            faults.serve(name, Deployed(name, first_token_timeout=0.2, idle_timeout=0.2), allow=False)
            names.append((name, stream))
    faults.script("primary", "500")
    faults.serve("fallback", Deployed("fallback"), allow=False)
    faults.serve("failover", Deployed("primary"), Deployed("secondary", priority=1), fallbacks=("fallback",))
    allowed = ["gpt-test", "fallback", "failover", *(name for name, _ in names)]
    services.update_project(project=faults.setup.project, allowed_models=allowed)

    client: list[str] = []
    for name, stream in names:
        client += _ask(faults, name, stream=stream)
    for _ in range(3):  # fails over, opens the primary's circuit, then skips it
        client += _ask(faults, "failover", stream=False)
    logged(len(names) + 3)
    printed = "".join(capfd.readouterr())

    requests = faults.upstream.state.requests
    assert requests and {r.headers["Authorization"] for r in requests} == {f"Bearer {canary}"}, "the canary was used"
    assert any(r.name == "gateway.proxy.breaker" for r in every_record), "the gateway's own records were captured"
    assert _leaks(canary, records=every_record, printed=printed, client=client) == []
    virtual_key = faults.setup.secret
    gateway_records = [r for r in every_record if not r.name.startswith(CLIENT_LIBRARIES)]
    assert _leaks(virtual_key, records=gateway_records, printed="", client=[]) == []


@pytest.mark.parametrize(
    ("step", "stream"), [("echo-key=400", False), ("echo-key=500", False), ("echo-key-event=2", True)], ids=str
)
def test_provider_key_appears_nowhere_when_the_upstream_quotes_it_in_an_error(
    canary_faults, canary, every_record, capfd, step, stream
):
    canary_faults.script("a", step)
    canary_faults.serve("m", Deployed("a"))

    client: list[Any] = []
    for _ in range(2):
        client += _ask(canary_faults, "m", stream=stream)
    logged(2)
    printed = "".join(capfd.readouterr())

    assert _leaks(canary, records=every_record, printed=printed, client=client) == []
