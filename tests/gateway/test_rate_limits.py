"""Rate limits through the live gateway: 429 with OpenAI's headers, counted across keys of a project."""

import time

import httpx
import openai
import pytest

from gateway import services
from gateway.models import Project, Provider, VirtualKey
from gateway.proxy import ratelimit
from tests.conftest import logged
from tests.factories import DeploymentFactory, ModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    ratelimit.reset()  # the in-process twin; Redis windows are per key id, fresh for each test's key
    yield
    ratelimit.reset()


def _ask(live_gateway, secret, **extra):
    return httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, **extra},
    )


def test_key_rpm_admits_exactly_the_limit_then_429_with_headers(live_gateway, gateway_setup, upstream):
    services.set_key_limits(
        key=VirtualKey.objects.get(pk=gateway_setup.key_id), rpm_limit=3, tpm_limit=None, max_streams=None
    )

    responses = [_ask(live_gateway, gateway_setup.secret) for _ in range(5)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert responses[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert responses[2].headers["x-ratelimit-remaining-requests"] == "0"
    refused = responses[3]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-reset-requests"]
    assert len(upstream.state.requests) == 3, "a refused request never reaches the upstream"
    assert [row.status_code for row in logged(5)] == [200, 200, 200, 429, 429]


def test_project_limit_is_shared_by_its_keys(live_gateway, gateway_setup):
    services.update_project(project=Project.objects.get(pk=gateway_setup.project.pk), rpm_limit=2)
    second = services.create_virtual_key(project=gateway_setup.project, name="second")

    statuses = [_ask(live_gateway, s).status_code for s in (gateway_setup.secret, second.secret, second.secret)]

    assert statuses == [200, 200, 429]


def test_tpm_counts_reserved_tokens_and_corrects_to_usage(live_gateway, gateway_setup):
    # Each request reserves its prompt estimate (1 token) + max_tokens (10), then is corrected to
    # the 18 tokens the mock reports, so the third request no longer fits a budget of 40.
    services.set_key_limits(
        key=VirtualKey.objects.get(pk=gateway_setup.key_id), rpm_limit=None, tpm_limit=40, max_streams=None
    )

    statuses = [_ask(live_gateway, gateway_setup.secret).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_openai_sdk_sees_rate_limit_error(live_gateway, gateway_setup):
    services.set_key_limits(
        key=VirtualKey.objects.get(pk=gateway_setup.key_id), rpm_limit=1, tpm_limit=None, max_streams=None
    )
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])


def test_no_rate_limit_headers_when_no_limit_is_set(live_gateway, gateway_setup):
    response = _ask(live_gateway, gateway_setup.secret)

    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("x-ratelimit")]


def test_stream_cap_refuses_a_second_concurrent_stream_and_frees_the_slot(live_gateway, gateway_setup):
    services.set_key_limits(
        key=VirtualKey.objects.get(pk=gateway_setup.key_id), rpm_limit=None, tpm_limit=None, max_streams=1
    )
    mock = Provider.objects.get(name="mock")
    slow = ModelFactory(name="slow")
    DeploymentFactory(model=slow, provider=mock, upstream_model="mock-slow-stream")
    gateway_setup.project.allowed_models.add(slow)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {gateway_setup.secret}"}
    url = f"{live_gateway}/v1/chat/completions"

    with httpx.Client() as http, http.stream("POST", url, headers=headers, json=body | {"model": "slow"}) as first:
        lines = first.iter_lines()
        next(lines)  # the slow stream is under way and holds the key's only slot
        second = http.post(url, headers=headers, json=body)
    time.sleep(0.3)  # leaving the block dropped the slow stream; the gateway frees its slot
    after = httpx.post(url, headers=headers, json=body)

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert after.status_code == 200
