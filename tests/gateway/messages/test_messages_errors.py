"""/v1/messages: keys, checks and every failure in Anthropic's error shape, as the Anthropic SDK raises them."""

import anthropic
import httpx
import pytest

from tests.gateway.messages import wire
from tests.gateway.messages.conftest import UPSTREAM_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def _ask(client, model="claude", **extra):
    return client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}], **extra)


def _raw(client, body):
    """Send a body the SDK's typed methods would not let us build."""
    return client.post("/v1/messages", body=body, cast_to=object)


def _assert_anthropic_error(error: anthropic.APIStatusError, status: int, error_type: str) -> None:
    assert error.status_code == status
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.body["error"]["message"]
    assert error.response.headers["x-request-id"].startswith("req_")
    assert error.request_id == error.response.headers["x-request-id"] == error.body["request_id"]


# --- keys ---


def test_key_in_x_api_key_is_accepted(messages_setup):
    messages_setup.serve("claude", "claude-test", messages_setup.anthropic)
    client = anthropic.Anthropic(
        base_url=messages_setup.gateway,
        api_key="unused",
        default_headers={"Authorization": anthropic.Omit(), "x-api-key": messages_setup.secret},
        max_retries=0,
    )

    message = _ask(client)

    assert message.content[0].text == "echo: hi"


def test_key_as_bearer_token_is_accepted(claude):
    response = claude.messages.with_raw_response.create(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )

    assert response.http_request.headers["authorization"].startswith("Bearer sk-")
    assert "x-api-key" not in response.http_request.headers
    assert response.parse().content[0].text == "echo: hi"
    assert response.headers["x-request-id"].startswith("req_")


def test_401_authentication_error_when_the_key_is_wrong(messages_setup):
    client = anthropic.Anthropic(base_url=messages_setup.gateway, api_key="sk-sym-wrong", max_retries=0)

    with pytest.raises(anthropic.AuthenticationError) as caught:
        _ask(client)

    _assert_anthropic_error(caught.value, 401, "authentication_error")


def test_401_authentication_error_when_no_key_is_sent(messages_setup):
    response = httpx.post(
        f"{messages_setup.gateway}/v1/messages",
        json={"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["type"] == "error"


# --- the model ---


def test_403_permission_error_when_the_model_is_not_allowed(messages_setup, anthropic_upstream):
    messages_setup.serve("claude-secret", "claude-test", messages_setup.anthropic, allow=False)

    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        _ask(messages_setup.client(), model="claude-secret")

    _assert_anthropic_error(caught.value, 403, "permission_error")
    assert anthropic_upstream.state.requests == []


def test_404_not_found_error_when_the_model_is_unknown(messages_setup):
    with pytest.raises(anthropic.NotFoundError) as caught:
        _ask(messages_setup.client(), model="no-such-model")

    _assert_anthropic_error(caught.value, 404, "not_found_error")
    assert "no-such-model" in caught.value.body["error"]["message"]


def test_403_permission_error_when_the_provider_is_not_approved(messages_setup):
    messages_setup.serve("claude-unvetted", "claude-test", messages_setup.anthropic)
    messages_setup.anthropic.approved = False
    messages_setup.anthropic.save()

    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        _ask(messages_setup.client(), model="claude-unvetted")

    _assert_anthropic_error(caught.value, 403, "permission_error")


# --- the request ---


def test_400_naming_max_tokens_when_it_is_missing(claude, anthropic_upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _raw(claude, {"model": "claude", "messages": [{"role": "user", "content": "hi"}]})

    _assert_anthropic_error(caught.value, 400, "invalid_request_error")
    assert "'max_tokens'" in caught.value.body["error"]["message"]
    assert anthropic_upstream.state.requests == []


@pytest.mark.parametrize("max_tokens", [0, -5, "100", 1.5, True])
def test_400_naming_max_tokens_when_it_is_not_a_positive_integer(claude, max_tokens):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _raw(claude, {"model": "claude", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})

    assert "'max_tokens'" in caught.value.body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, "'model'"),
        ({"model": "claude", "max_tokens": 5}, "'messages'"),
        ({"model": "claude", "max_tokens": 5, "messages": []}, "'messages'"),
        ({"model": "claude", "max_tokens": 5, "messages": ["hi"]}, "messages[0]"),
        ({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "system": 7}, "'system'"),
        (
            {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "'stream'",
        ),
    ],
)
def test_400_naming_the_field_when_what_the_gateway_needs_is_malformed(claude, anthropic_upstream, body, named):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _raw(claude, body)

    _assert_anthropic_error(caught.value, 400, "invalid_request_error")
    assert named in caught.value.body["error"]["message"]
    assert anthropic_upstream.state.requests == []


# A malformed field, how the gateway names it, how (the mock) Anthropic does.
_FOR_THE_UPSTREAM = [
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "messages.0.role"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "messages.0.content"),
    ({"messages": [{"role": "user", "content": "x"}], "system": [{"a": 1}]}, "system[0]", "system.0"),
]


@pytest.mark.parametrize(("fields", "ours", "theirs"), _FOR_THE_UPSTREAM)
def test_passed_through_the_upstream_judges_the_rest(claude, anthropic_upstream, fields, ours, theirs):
    """Nothing the gateway does not need is checked on the way to Anthropic: its own 400 comes back."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        _raw(claude, {"model": "claude", "max_tokens": 5} | fields)

    _assert_anthropic_error(caught.value, 400, "invalid_request_error")
    assert len(anthropic_upstream.state.requests) == 1
    assert theirs in caught.value.body["error"]["message"]


@pytest.mark.parametrize(("fields", "ours", "theirs"), _FOR_THE_UPSTREAM)
def test_translated_a_malformed_request_is_refused_naming_the_field(gpt, upstream, fields, ours, theirs):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _raw(gpt, {"model": "gpt", "max_tokens": 5} | fields)

    _assert_anthropic_error(caught.value, 400, "invalid_request_error")
    assert ours in caught.value.body["error"]["message"]
    assert upstream.state.requests == []


@pytest.mark.parametrize("override", ["api_base", "base_url", "api_key", "extra_headers"])
def test_400_when_the_request_tries_to_choose_the_upstream(claude, anthropic_upstream, override):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(claude, extra_body={override: "http://169.254.169.254/latest"})

    _assert_anthropic_error(caught.value, 400, "invalid_request_error")
    assert f"'{override}'" in caught.value.body["error"]["message"]
    assert anthropic_upstream.state.requests == []


def test_400_when_the_body_is_not_json(messages_setup):
    response = httpx.post(
        f"{messages_setup.gateway}/v1/messages",
        headers={"x-api-key": messages_setup.secret, "content-type": "application/json"},
        content=b"{not json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_400_when_anthropic_version_is_not_a_version(claude):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(claude, extra_headers={"anthropic-version": "latest"})

    assert "anthropic-version" in caught.value.body["error"]["message"]


def test_400_naming_the_tool_when_a_server_tool_goes_to_an_openai_deployment(gpt, upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(gpt, model="gpt", tools=[{"type": "web_search_20250305", "name": "web_search"}])

    _assert_anthropic_error(caught.value, 400, "invalid_request_error")
    assert "tools[0]" in caught.value.body["error"]["message"]
    assert upstream.state.requests == []


# --- the upstream ---


def _fails(setup, status: int, provider: str, *, stream: bool = False) -> anthropic.APIStatusError:
    upstream_model = f"claude-status-{status}" if provider == "anthropic" else f"mock-status-{status}"
    name = setup.serve(f"failing-{status}", upstream_model, getattr(setup, provider))
    with pytest.raises(anthropic.APIStatusError) as caught:
        result = _ask(setup.client(), model=name, stream=stream)
        list(result) if stream else None
    return caught.value


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("stream", [False, True])
def test_429_rate_limit_error_with_retry_after_when_upstream_limits(messages_setup, provider, stream):
    error = _fails(messages_setup, 429, provider, stream=stream)

    assert isinstance(error, anthropic.RateLimitError)
    _assert_anthropic_error(error, 429, "rate_limit_error")
    assert error.response.headers["retry-after"] == "7"


def test_upstream_400_passes_through_with_its_message(messages_setup):
    error = _fails(messages_setup, 400, "anthropic")

    _assert_anthropic_error(error, 400, "invalid_request_error")
    assert error.body["error"]["message"] == "mock anthropic error 400"


def test_upstream_404_stays_a_not_found_error(messages_setup):
    error = _fails(messages_setup, 404, "anthropic")

    assert isinstance(error, anthropic.NotFoundError)
    _assert_anthropic_error(error, 404, "not_found_error")


def test_upstream_rejecting_the_gateways_key_is_a_502_that_does_not_echo_it(messages_setup):
    error = _fails(messages_setup, 401, "anthropic")

    _assert_anthropic_error(error, 502, "api_error")
    assert UPSTREAM_SECRET not in error.response.text
    assert "anthropic-mock" in error.body["error"]["message"]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_upstream_500_is_a_502_api_error(messages_setup, provider):
    error = _fails(messages_setup, 500, provider)

    assert isinstance(error, anthropic.InternalServerError)
    _assert_anthropic_error(error, 502, "api_error")


def test_upstream_overloaded_is_a_503_overloaded_error_with_retry_after(messages_setup):
    error = _fails(messages_setup, 529, "anthropic")

    assert isinstance(error, anthropic.InternalServerError)
    _assert_anthropic_error(error, 503, "overloaded_error")
    assert error.response.headers["retry-after"] == "3"


def test_every_answer_carries_a_request_id(messages_setup):
    messages_setup.serve("claude", "claude-test", messages_setup.anthropic)
    body = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}

    answers = [
        wire.post(messages_setup.gateway, messages_setup.secret, body),
        wire.post(messages_setup.gateway, messages_setup.secret, body | {"stream": True}),
        wire.post(messages_setup.gateway, "sk-sym-wrong", body),
        wire.post(messages_setup.gateway, messages_setup.secret, body | {"model": "nope"}),
    ]

    assert [a.status_code for a in answers] == [200, 200, 401, 404]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(i.startswith("req_") for i in ids)
    assert len(set(ids)) == 4


def test_413_is_in_anthropic_shape_when_body_is_too_large_for_messages(messages_setup, settings):
    settings.PROXY_MAX_BODY_BYTES = 2048
    client = messages_setup.client()

    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x" * 5000}])

    assert caught.value.status_code == 413
    assert caught.value.body["error"]["type"] == "request_too_large"


def test_unknown_messages_subpath_is_404_in_anthropic_shape(messages_setup):
    response = httpx.post(f"{messages_setup.gateway}/v1/messages/batches", json={})

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
