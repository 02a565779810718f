"""Every call through /v1 leaves one request-log row, written off the response path."""

import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import openai
import pytest
from django.conf import settings

from gateway import services
from gateway.models import Deployment, Model, Provider, RequestLog
from tests.conftest import logged
from tests.factories import DeploymentFactory, ModelFactory
from tests.gateway.test_cache_invalidation import _database_url
from tests.mock_upstream import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_gateway, gateway_setup):
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


def _serve(setup, name: str, upstream_model: str) -> None:
    DeploymentFactory(
        model=ModelFactory(name=name), provider=Provider.objects.get(name="mock"), upstream_model=upstream_model
    )
    setup.project.allowed_models.add(Model.objects.get(name=name))


def test_row_has_usage_and_who_when_completion_succeeds(client, gateway_setup):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], extra_headers={"User-Agent": "shop-app/1.0"}
    )

    [row] = logged(1)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.model, row.answered_model, row.status_code) == (
        "chat/completions",
        "gpt-test",
        "gpt-test",
        200,
    )
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (11, 7, False)
    assert row.project_id == gateway_setup.project.id
    assert row.key_id == gateway_setup.key_id
    assert row.key_prefix == gateway_setup.secret[:13]
    assert row.deployment_id == Deployment.objects.get(model__name="gpt-test").id
    assert (row.provider, row.stream, row.user_agent) == ("mock", False, "shop-app/1.0")
    assert row.latency_ms > 0
    assert row.attempts == []


def test_stream_usage_is_recorded_even_when_client_did_not_ask_for_it(client):
    list(client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True))

    [row] = logged(1)
    assert (row.stream, row.input_tokens, row.output_tokens, row.usage_estimated) == (True, 11, 7, False)
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


def test_produced_tokens_are_estimated_when_upstream_dies_mid_stream(client, gateway_setup):
    _serve(gateway_setup, "dies", "mock-die-mid-stream")

    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(model="dies", messages=[{"role": "user", "content": "x" * 40}], stream=True)
        )

    [row] = logged(1)
    assert (row.status_code, row.error_code, row.usage_estimated) == (502, "upstream_error", True)
    assert row.output_tokens == 2  # "partial " is 8 characters
    assert row.input_tokens == 10


def test_row_says_client_disconnected_with_estimated_usage(live_gateway, gateway_setup, upstream):
    _serve(gateway_setup, "slow", "mock-slow-stream")
    payload = b'{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    port = int(live_gateway.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
            + f"Authorization: Bearer {gateway_setup.secret}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        received = b""
        while b"tick2" not in received:
            received += sock.recv(65536)

    [row] = logged(1)
    assert (row.status_code, row.error_code, row.usage_estimated) == (499, "client_disconnected", True)
    assert row.output_tokens >= 3


def test_failed_attempts_are_listed_and_the_answering_deployment_named(client, gateway_setup):
    model, mock = Model.objects.get(name="gpt-test"), Provider.objects.get(name="mock")
    services.update_model(
        model=model,
        deployments=[
            services.DeploymentSpec(provider=mock, upstream_model="mock-status-503", priority=0),
            services.DeploymentSpec(provider=mock, upstream_model="upstream-gpt", priority=1),
        ],
    )
    broken, answering = Deployment.objects.filter(model=model).order_by("priority")

    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    [row] = logged(1)
    assert row.deployment_id == answering.id
    assert [(a["deployment"], a["status"], a["error"]) for a in row.attempts] == [(broken.id, 503, "upstream_error")]


def test_refused_requests_are_logged_too(live_gateway, gateway_setup):
    httpx.post(f"{live_gateway}/v1/chat/completions", json={"model": "gpt-test", "messages": []})
    httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway_setup.secret}"},
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )

    rows = logged(2)
    assert [(r.status_code, r.error_code, r.key_id) for r in rows] == [
        (401, "invalid_api_key", None),
        (404, "model_not_found", gateway_setup.key_id),
    ]
    assert all(r.input_tokens == r.output_tokens == 0 for r in rows)


def test_buffered_rows_are_written_on_sigterm(gateway_setup):
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "SECRETS_ENCRYPTION_KEY": ",".join(settings.SECRETS_ENCRYPTION_KEYS),
        "LOG_FLUSH_INTERVAL": "3600",  # only the shutdown flush can write the rows
        "LOG_FLUSH_BATCH": "100000",
        "UPSTREAM_ALLOW_PRIVATE_NETWORKS": "true",  # the mock upstream listens on 127.0.0.1
    }
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=settings.BASE_DIR,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        for _ in range(3):
            response = httpx.post(
                f"{base}/v1/chat/completions",
                headers={"Authorization": f"Bearer {gateway_setup.secret}"},
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200
        time.sleep(0.3)
        assert RequestLog.objects.count() == 0, "nothing is written before the flush"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)

    assert RequestLog.objects.count() == 3


def test_cost_is_computed_from_usage_and_deployment_prices(client, gateway_setup):
    deployment = Deployment.objects.get(model__name="gpt-test")
    services.set_deployment_prices(
        deployment=deployment, input_price=Decimal("2.50"), output_price=Decimal("10.00"), cached_input_price=None
    )

    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    [row] = logged(1)
    assert row.cost == (11 * Decimal("2.50") + 7 * Decimal("10.00")) / 1_000_000


def test_cost_is_empty_when_deployment_has_no_price(client):
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    [row] = logged(1)
    assert row.cost is None
