"""What a key holder can send that a well-behaved client would not: each gets a clear error in the
caller's shape (or is made harmless) and leaves its request-log row; none reaches the upstream
when it is refused."""

from __future__ import annotations

import httpx
import pytest

from gateway import services
from gateway.models import Deployment, RequestLog
from tests.conftest import Setup, logged
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)


def _post(url: str, secret: str, body: object, path: str = "/v1/chat/completions", **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", headers={"Authorization": f"Bearer {secret}"}, json=body, timeout=30, **kwargs)


def _openai_error(response: httpx.Response) -> dict:
    assert set(response.json()) == {"error"}, response.text
    return response.json()["error"]


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_wrong_method_gets_the_callers_error_object(live_gateway: str, gateway_setup: Setup):
    response = httpx.get(f"{live_gateway}/v1/chat/completions", headers={"Authorization": "Bearer x"})
    assert response.status_code == 405
    assert _openai_error(response)["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"

    response = httpx.get(f"{live_gateway}/v1/messages")
    assert response.status_code == 405
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"


def test_body_nested_too_deeply_is_refused_before_the_upstream(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream
):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": _nested(300)}]}
    response = _post(live_gateway, gateway_setup.secret, body)
    assert response.status_code == 400
    assert _openai_error(response)["code"] == "invalid_json"

    messages = {"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = _post(live_gateway, gateway_setup.secret, messages | {"metadata": {"x": _nested(300)}}, "/v1/messages")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert upstream.state.requests == []
    assert [row.status_code for row in logged(2)] == [400, 400]


def test_nul_in_the_model_name_is_a_404_whose_row_is_stored(live_gateway: str, gateway_setup: Setup):
    response = _post(live_gateway, gateway_setup.secret, {"model": "x\u0000", "messages": [{"role": "user"}]})
    assert response.status_code == 404
    follow = _post(live_gateway, gateway_setup.secret, {"model": "gpt-test", "messages": [{"role": "user"}]})
    assert follow.status_code == 200

    rows = logged(2)
    assert [(r.model, r.status_code, r.write_error) for r in rows] == [("x\ufffd", 404, ""), ("gpt-test", 200, "")]


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (42, "messages[0].content"),
        ({"text": "no type"}, "messages[0].content"),
        ([[["nested"]]], "messages[0].content[0]"),
        (["bare string"], "messages[0].content[0]"),
        ([{"type": 7}], "messages[0].content[0]"),
    ],
)
def test_content_of_the_wrong_type_is_refused_naming_it(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream, content: object, param: str
):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": content}]}
    response = _post(live_gateway, gateway_setup.secret, body)
    assert response.status_code == 400
    assert _openai_error(response)["param"] == param
    assert upstream.state.requests == []


@pytest.mark.parametrize("value", [-1, 0, 1.5, 3000.0, "ten", True, 2**64 - 1])
def test_output_limit_that_is_not_a_positive_integer_is_refused(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream, value: object
):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": value}
    response = _post(live_gateway, gateway_setup.secret, body)
    assert response.status_code == 400
    assert _openai_error(response)["param"] == "max_tokens"
    assert upstream.state.requests == []


def test_both_output_limits_reach_a_self_hosted_server_as_the_smaller_one(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream
):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    assert _post(live_gateway, gateway_setup.secret, body | {"max_completion_tokens": 1, "max_tokens": 3000}).is_success

    sent = upstream.state.last().body
    assert sent["max_tokens"] == 1 and "max_completion_tokens" not in sent


def test_deep_upstream_answer_is_a_502_charged_with_its_usage(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream
):
    Deployment.objects.update(upstream_model="mock-deep")
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    response = _post(live_gateway, gateway_setup.secret, body)

    assert response.status_code == 502
    assert _openai_error(response)["code"] == "upstream_unreadable"
    assert len(upstream.state.requests) == 1  # an answer that was billed is never retried
    [row] = logged(1)
    billed = upstream.state.billed[-1]
    assert (row.status_code, row.input_tokens, row.output_tokens) == (
        502,
        billed["prompt_tokens"],
        billed["completion_tokens"],
    )
    assert not row.usage_estimated and RequestLog.objects.count() == 1


def test_own_key_in_a_prompt_is_kept_out_of_the_stored_bodies(
    live_gateway: str, gateway_setup: Setup, upstream: MockUpstream, settings
):
    settings.LOG_BODIES = "full"
    services.set_guardrail_policy(project=None, data={"input": {"secrets": "off"}})  # let it reach the echo
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": f"my key is {gateway_setup.secret} ok"}]}
    response = _post(live_gateway, gateway_setup.secret, body)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: my key is [redacted] ok"
    assert gateway_setup.secret in upstream.state.last().body["messages"][0]["content"]  # it was the client's to send
    [row] = logged(1)
    assert row.bodies == "full" and "my key is [redacted] ok" in row.request_body
    assert gateway_setup.secret not in row.request_body + row.response_body
