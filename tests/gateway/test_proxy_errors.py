"""Every error a /v1 client can meet: OpenAI's shape, the right status, no secrets."""

import logging
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from gateway import services
from gateway.models import Model, Provider, VirtualKey
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_SECRET = "sk-upstream-test-secret"


@pytest.fixture
def client(live_gateway, gateway_setup):
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


def _ask(client, model="gpt-test", **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **extra)


def _post(live_gateway, secret, body, **kwargs):
    return httpx.post(
        f"{live_gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"}, json=body, **kwargs
    )


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert response.headers["x-request-id"].startswith("req_")
    return body["error"]


def _serve(setup, name: str, upstream_model: str, provider: Provider | None = None) -> None:
    provider = provider or Provider.objects.get(name="mock")
    DeploymentFactory(model=ModelFactory(name=name), provider=provider, upstream_model=upstream_model)
    setup.project.allowed_models.add(Model.objects.get(name=name))


# --- keys ---


def test_401_when_no_key_is_sent(live_gateway, gateway_setup):
    response = httpx.post(f"{live_gateway}/v1/chat/completions", json={"model": "gpt-test", "messages": []})

    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"


def test_401_when_key_is_unknown(live_gateway, gateway_setup):
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key="sk-sym-not-a-real-key", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        _ask(client)

    assert caught.value.code == "invalid_api_key"
    assert "sk-sym-not-a-real-key" not in caught.value.message


def test_401_when_key_is_revoked(client, gateway_setup):
    _ask(client)  # cached as valid first: revocation must still take effect
    services.revoke_key(key=VirtualKey.objects.get(pk=gateway_setup.key_id))

    with pytest.raises(openai.AuthenticationError, match="revoked"):
        _ask(client)


def test_401_when_key_has_expired(live_gateway, gateway_setup):
    issued = services.create_virtual_key(
        project=gateway_setup.project, name="short", expires_at=timezone.now() + timedelta(seconds=1)
    )
    VirtualKey.objects.filter(pk=issued.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=issued.secret, max_retries=0)

    with pytest.raises(openai.AuthenticationError, match="expired"):
        _ask(client)


# --- models and providers ---


def test_404_when_model_is_unknown(client):
    with pytest.raises(openai.NotFoundError) as caught:
        _ask(client, model="no-such-model")

    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_404_when_model_is_disabled(client):
    Model.objects.filter(name="gpt-test").update(enabled=False)

    with pytest.raises(openai.NotFoundError):
        _ask(client)


def test_403_when_model_is_outside_project_allow_list(client):
    DeploymentFactory(model=ModelFactory(name="other"), provider=Provider.objects.get(name="mock"))

    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask(client, model="other")

    assert caught.value.code == "model_not_allowed"


def test_403_when_model_is_outside_key_allow_list(live_gateway, gateway_setup):
    _serve(gateway_setup, "second", "upstream-second")
    narrow = services.create_virtual_key(project=gateway_setup.project, name="narrow", allowed_models=["second"])
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=narrow.secret, max_retries=0)

    assert _ask(client, model="second").model == "second"
    with pytest.raises(openai.PermissionDeniedError):
        _ask(client, model="gpt-test")


def test_403_when_provider_is_not_approved(client, gateway_setup, upstream):
    services.update_provider(provider=Provider.objects.get(name="mock"), approved=False)

    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask(client)

    assert caught.value.code == "provider_not_approved"
    assert upstream.state.requests == []


# --- malformed requests ---


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 7, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-test"}, "messages"),
        ({"model": "gpt-test", "messages": []}, "messages"),
        ({"model": "gpt-test", "messages": ["hello"]}, "messages[0]"),
        ({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ],
)
def test_400_names_the_field_when_body_is_malformed(live_gateway, gateway_setup, body, param):
    response = _post(live_gateway, gateway_setup.secret, body)

    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_400_when_body_is_not_json(live_gateway, gateway_setup):
    response = httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway_setup.secret}", "Content-Type": "application/json"},
        content=b'{"model": "gpt-test", "messages": [',
    )

    assert response.status_code == 400
    assert "parse the JSON" in _error(response)["message"]


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key", "custom_llm_provider"])
def test_400_when_body_tries_to_choose_the_upstream(live_gateway, gateway_setup, upstream, field):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], field: "http://169.254.169.254/"}

    response = _post(live_gateway, gateway_setup.secret, body)

    assert response.status_code == 400
    assert _error(response)["param"] == field
    assert upstream.state.requests == []


def test_413_when_body_exceeds_the_cap(live_gateway, gateway_setup, settings, upstream):
    settings.PROXY_MAX_BODY_BYTES = 4096
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 10_000}]}

    response = _post(live_gateway, gateway_setup.secret, body)

    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"
    assert upstream.state.requests == []


def test_404_in_openai_shape_when_endpoint_is_unknown(live_gateway, gateway_setup):
    response = _post(live_gateway, gateway_setup.secret, {}).request.url.copy_with(path="/v1/nothing-here")

    assert _error(httpx.get(str(response)))["code"] == "unknown_url"


# --- upstream failures ---


def test_502_when_upstream_is_unreachable(client, gateway_setup):
    dead = ProviderFactory(name="dead", base_url="http://127.0.0.1:9/v1")
    _serve(gateway_setup, "unreachable", "x", provider=dead)

    with pytest.raises(openai.InternalServerError) as caught:
        _ask(client, model="unreachable")

    assert caught.value.status_code == 502
    assert "could not be reached" in caught.value.message


def test_504_when_upstream_times_out(client, gateway_setup, settings):
    settings.UPSTREAM_TIMEOUT = 0.5
    _serve(gateway_setup, "hangs", "mock-hang")

    with pytest.raises(openai.APIStatusError) as caught:
        _ask(client, model="hangs")

    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"


@pytest.mark.parametrize(("status", "error_class"), [(400, openai.BadRequestError), (404, openai.NotFoundError)])
def test_upstream_client_error_passes_through_in_same_shape(client, gateway_setup, status, error_class):
    _serve(gateway_setup, "refuses", f"mock-status-{status}")

    with pytest.raises(error_class) as caught:
        _ask(client, model="refuses")

    assert caught.value.body["message"] == f"mock upstream error {status}"
    assert caught.value.code == f"mock_{status}"


def test_429_passes_through_with_retry_after(client, gateway_setup):
    _serve(gateway_setup, "busy", "mock-status-429")

    with pytest.raises(openai.RateLimitError) as caught:
        _ask(client, model="busy")

    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("status", [401, 403])
def test_502_without_upstream_text_when_upstream_rejects_our_credentials(client, gateway_setup, status):
    _serve(gateway_setup, "badcreds", f"mock-status-{status}")

    with pytest.raises(openai.InternalServerError) as caught:
        _ask(client, model="badcreds")

    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "mock upstream error" not in caught.value.message


def test_502_when_upstream_fails(client, gateway_setup):
    _serve(gateway_setup, "broken", "mock-status-500")

    with pytest.raises(openai.InternalServerError) as caught:
        _ask(client, model="broken")

    assert caught.value.status_code == 502


def test_502_when_upstream_answers_malformed_json(client, gateway_setup):
    _serve(gateway_setup, "garbled", "mock-bad-json")

    with pytest.raises(openai.InternalServerError, match="malformed JSON"):
        _ask(client, model="garbled")


def test_502_and_redirect_not_followed_when_upstream_redirects(client, gateway_setup, upstream):
    _serve(gateway_setup, "moved", "mock-redirect")

    with pytest.raises(openai.InternalServerError, match="redirect"):
        _ask(client, model="moved")

    assert len(upstream.state.requests) == 1


# --- nothing secret leaks ---


def test_no_secret_reaches_logs_or_responses_when_things_fail(live_gateway, gateway_setup, caplog):
    caplog.set_level(logging.DEBUG)
    _serve(gateway_setup, "badcreds", "mock-status-401")
    texts = [
        _post(live_gateway, gateway_setup.secret, {"model": m, "messages": [{"role": "user", "content": "x"}]}).text
        for m in ("badcreds", "gpt-test", "missing")
    ]
    texts.append(_post(live_gateway, gateway_setup.secret + "x", {"model": "gpt-test"}).text)

    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in [*texts, logged]:
        assert UPSTREAM_SECRET not in text
        assert gateway_setup.secret not in text
        assert "Traceback" not in text
