"""Known secrets go through the gateway and come out nowhere: not in a log line (every logger at
DEBUG, the production JSON format included), not in an exported span or metric, and not, for a
project that keeps only metadata, in the database.

The canaries: the provider's API key (tests/factories.py), the virtual key, and an e-mail address
and an IBAN in the prompt. The live gateway runs in this process, so its records are captured too.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from billing.models import LedgerEntry
from gateway.invalidation import publish_catalog_change
from gateway.models import Deployment, RequestLog
from gateway.telemetry.logs import JsonFormatter, ScrubSecrets
from tests.conftest import Setup, logged
from tests.factories import DeploymentFactory
from tests.gateway.telemetry.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDER_KEY = "sk-upstream-test-secret"  # ProviderFactory's
EMAIL, IBAN = "jan.jansen@example.nl", "NL91ABNA0417164300"
PROMPT = f"Please write to {EMAIL} and pay into {IBAN} today."
LOGGERS = (None, "gateway", "billing", "django", "aiohttp", "asyncio", "uvicorn", "uvicorn.error", "opentelemetry")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[list[logging.LogRecord], io.StringIO]]:
    """Every record at DEBUG (raw), and the same records as the production JSON handler writes them."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    collector = _Collector()
    written = io.StringIO()
    json_handler = logging.StreamHandler(written)
    json_handler.setFormatter(JsonFormatter())
    json_handler.addFilter(ScrubSecrets())
    listened = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in listened:
        logger.addHandler(collector)
        logger.addHandler(json_handler)
    yield collector.records, written
    for logger in listened:
        logger.removeHandler(collector)
        logger.removeHandler(json_handler)


def _chat(live_gateway: str, secret: str, **body: object) -> httpx.Response:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": PROMPT}], **body}
    return httpx.post(
        f"{live_gateway}/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )


def test_no_secret_or_prompt_reaches_logs_spans_metrics_or_the_metadata_only_log(
    otel: Receiver, gateway_setup: Setup, live_gateway, upstream, log_lines, settings
):
    project = gateway_setup.project
    project.log_bodies = "metadata"
    project.save(update_fields=["log_bodies"])
    publish_catalog_change()
    records, written = log_lines
    # The first attempt fails and opens its circuit (a warning, logged inside the request); the
    # second deployment answers.
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    upstream.state.scripts["flaky"] = ["500"]
    first = Deployment.objects.get(model__name="gpt-test")
    DeploymentFactory(model=first.model, provider=first.provider, upstream_model="upstream-gpt", priority=1)
    Deployment.objects.filter(pk=first.pk).update(upstream_model="mock-script-flaky")

    answers = [
        _chat(live_gateway, gateway_setup.secret),
        _chat(live_gateway, gateway_setup.secret, stream=True),
        httpx.post(
            f"{live_gateway}/v1/embeddings",
            json={"model": "gpt-test", "input": PROMPT},
            headers={"Authorization": f"Bearer {gateway_setup.secret}"},
            timeout=30,
        ),
        _chat(live_gateway, gateway_setup.secret + "x"),  # a wrong key (it contains the real one)
    ]
    rows = logged(4)
    request_ids = {a.headers["x-request-id"] for a in answers}
    otel.wait_for(lambda: {s.attributes.get("symbiosis.request_id") for s in otel.spans()} >= request_ids)
    otel.wait_for(lambda: otel.points("symbiosis.gateway.requests"))

    assert [a.status_code for a in answers] == [200, 200, 200, 401]
    assert PROMPT in upstream.state.requests[0].body["messages"][0]["content"], "the prompt did go through"
    assert upstream.state.requests[0].headers["Authorization"] == f"Bearer {PROVIDER_KEY}", "the key did too"
    assert any(r.name.startswith("gateway") for r in records), "the gateway's own records were captured"
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    [opened] = [line for line in lines if line["message"].startswith("circuit opened")]
    assert opened["request_id"] == answers[0].headers["x-request-id"] and opened["level"] == "WARNING"
    exported = b"".join(otel.raw)
    assert len(rows) == 4 and all(row.bodies == "metadata" for row in rows)
    database = [str(row) for row in RequestLog.objects.values()] + [str(e) for e in LedgerEntry.objects.values()]

    for canary in (PROVIDER_KEY, gateway_setup.secret, EMAIL, IBAN):
        raw_records = [
            r.name
            for r in records
            if r.threadName != "mock-upstream" and canary in f"{r.getMessage()} {r.exc_text or ''} {r.args!r}"
        ]
        assert raw_records == [], f"{canary!r} in log records"
        assert canary not in written.getvalue(), f"{canary!r} in a JSON log line"
        assert canary.encode() not in exported, f"{canary!r} in exported telemetry"
        assert [text for text in database if canary in text] == [], f"{canary!r} in the database"
