"""GET /api/v1/models/{id}/health and POST .../health/check: each deployment's state."""

import time

import httpx
import pytest

from gateway import crypto, services
from gateway.models import Model, Provider
from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fail_fast(settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    settings.ROUTER_MAX_ATTEMPTS = 1


def _health_once(api, model_id, state, timeout=3.0):
    """The deployment's health once it reports `state` (the proxy publishes it off the request path)."""
    deadline = time.monotonic() + timeout
    while True:
        health = api.get(f"/models/{model_id}/health").json()["deployments"][0]
        if health["state"] == state or time.monotonic() > deadline:
            return health
        time.sleep(0.02)


def _chat(live_gateway, secret, model):
    return httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )


def test_health_shows_healthy_with_latency_after_traffic(api, live_gateway, gateway_setup):
    assert _chat(live_gateway, gateway_setup.secret, "gpt-test").status_code == 200
    model = Model.objects.get(name="gpt-test")

    deadline = time.monotonic() + 3
    while (body := api.get(f"/models/{model.id}/health").json())["deployments"][0]["latency_ms"] is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)  # the proxy publishes health off the request path

    assert body["model"] == "gpt-test"
    [deployment] = body["deployments"]
    assert deployment["state"] == "healthy"
    assert deployment["latency_ms"] is not None


def test_health_shows_degraded_then_open_circuit_when_deployment_keeps_failing(
    api, live_gateway, gateway_setup, fail_fast
):
    model = Model.objects.get(name="gpt-test")
    provider = model.deployments.get().provider
    services.update_model(
        model=model, deployments=[services.DeploymentSpec(provider=provider, upstream_model="mock-status-500")]
    )

    assert _chat(live_gateway, gateway_setup.secret, "gpt-test").status_code == 502
    degraded = _health_once(api, model.id, "degraded")
    assert _chat(live_gateway, gateway_setup.secret, "gpt-test").status_code == 502
    opened = _health_once(api, model.id, "open")
    refused = _chat(live_gateway, gateway_setup.secret, "gpt-test")

    assert degraded["state"] == "degraded"
    assert "HTTP 500" in degraded["last_error"]
    assert opened["state"] == "open"
    assert refused.status_code == 503, "an open circuit takes the only deployment out"


def test_check_reports_each_deployment_when_asked(api, upstream):
    good = ProviderFactory(name="good", base_url=upstream.url)
    rejected = ProviderFactory(
        name="rejected", base_url=upstream.url, api_key_encrypted=crypto.encrypt_secret("sk-rejected")
    )
    dead = ProviderFactory(name="dead", base_url="http://127.0.0.1:9/v1")
    first = DeploymentFactory(provider=good, model__name="checked")
    DeploymentFactory(provider=rejected, model=first.model, priority=1)
    DeploymentFactory(provider=dead, model=first.model, priority=2)

    body = api.post(f"/models/{first.model_id}/health/check").json()

    states = [(d["provider_name"], d["state"], d["last_error"]) for d in body["deployments"]]
    assert states[0] == ("good", "healthy", "")
    assert states[1][:2] == ("rejected", "degraded") and "credentials rejected" in states[1][2]
    assert states[2][:2] == ("dead", "degraded") and "unreachable" in states[2][2]
    assert "sk-rej" not in str(body)
    assert upstream.state.requests[0].path == "/v1/models"
    assert Provider.objects.count() == 3


def test_health_is_404_when_model_is_unknown(api):
    assert api.get("/models/999999/health").status_code == 404
