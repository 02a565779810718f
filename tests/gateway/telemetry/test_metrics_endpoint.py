"""GET /metrics: Prometheus' text format for teams without a collector, behind a bearer token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway import telemetry
from tests.conftest import Setup

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prometheus(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.METRICS_TOKEN = "metrics-token-for-tests"
    telemetry.configure(traces=False, metrics=False, prometheus=True)
    yield
    telemetry.shutdown()


def test_there_is_no_metrics_endpoint_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_bearer_token(client, prometheus):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="metrics-token-for-tests").status_code == 200


def test_metrics_show_requests_tokens_and_durations_in_prometheus_format(
    client, prometheus, gateway_setup: Setup, live_gateway
):
    reply = httpx.post(
        f"{live_gateway}/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway_setup.secret}"},
        timeout=30,
    )
    telemetry.flush()

    page = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-for-tests")

    assert reply.status_code == 200 and page.status_code == 200
    assert page["Content-Type"].startswith("text/plain")
    text = page.content.decode()
    project = gateway_setup.project.id
    [requests] = [line for line in text.splitlines() if line.startswith("symbiosis_gateway_requests_total{")]
    assert requests.endswith("} 1.0")
    for label in (
        'gen_ai_request_model="gpt-test"',
        'http_response_status_code="200"',
        f'symbiosis_project_id="{project}"',
    ):
        assert label in requests
    assert 'gen_ai_client_token_usage_sum{gen_ai_operation_name="chat"' in text
    assert 'gen_ai_token_type="input"' in text and 'gen_ai_token_type="output"' in text
    assert "gen_ai_client_operation_duration_seconds_bucket" in text
