"""POST /v1/messages/count_tokens through the live gateway, driven by the anthropic SDK: passed
through to Anthropic deployments, the gateway's own estimate (marked by a header) for the others;
free (no budget hold, no cost) but a request against the rate limits, logged, errors in
Anthropic's shape."""

from __future__ import annotations

import anthropic
import pytest

from billing import services as billing
from billing.models import LedgerEntry
from gateway import services
from gateway.models import VirtualKey
from gateway.proxy.stages.usage import estimate_prompt
from tests.conftest import _logs_since, logged
from tests.mock_anthropic import counted_tokens

pytestmark = pytest.mark.django_db(transaction=True)

ESTIMATE = "x-symbiosis-estimate"
OPENAI_KEY = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2
MESSAGES = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]
TOOLS = [{"name": "lookup", "description": "Find a city", "input_schema": {"type": "object", "properties": {}}}]


def test_anthropic_deployment_is_passed_through_to_the_upstreams_count(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")

    raw = legacy.anthropic().messages.with_raw_response.count_tokens(
        model=model, system="Be brief.", messages=MESSAGES, tools=TOOLS
    )

    sent = anthropic_upstream.state.last()
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {"model": "claude-test", "system": "Be brief.", "messages": MESSAGES, "tools": TOOLS}
    assert sent.headers["x-api-key"] == "sk-upstream-test-secret" and sent.headers["anthropic-version"]
    assert raw.parse().input_tokens == counted_tokens(sent.body)
    assert ESTIMATE not in raw.headers and raw.headers["request-id"].startswith("req_")


def test_other_deployments_get_the_gateways_estimate_marked_by_a_header(legacy, upstream):
    model = legacy.serve("gpt", "upstream-gpt", "openai_compatible")

    raw = legacy.anthropic().messages.with_raw_response.count_tokens(
        model=model, system="Be brief.", messages=MESSAGES, tools=TOOLS
    )

    assert raw.headers[ESTIMATE] == "true"
    assert raw.parse().input_tokens == estimate_prompt(["Be brief.", MESSAGES, TOOLS]) > 10
    assert upstream.state.requests == []  # nothing to ask an OpenAI-shaped upstream


def test_count_is_logged_with_no_tokens_and_no_cost_or_debit(legacy, anthropic_upstream, upstream):
    claude = legacy.serve("claude", "claude-test", "anthropic", priced=True)
    gpt = legacy.serve("gpt", "upstream-gpt", "openai", priced=True)
    client = legacy.anthropic()

    client.messages.count_tokens(model=claude, messages=MESSAGES)
    client.messages.count_tokens(model=gpt, messages=MESSAGES)

    rows = logged(2)
    assert [(r.endpoint, r.model, r.status_code) for r in rows] == [
        ("messages/count_tokens", claude, 200),
        ("messages/count_tokens", gpt, 200),
    ]
    assert [(r.input_tokens, r.output_tokens, r.usage_estimated) for r in rows] == [(0, 0, False)] * 2
    assert rows[0].provider == "anthropic-mock" and rows[0].cost == 0  # it reached Anthropic, for free
    assert rows[1].provider == "" and rows[1].cost is None  # answered by the gateway itself
    assert not LedgerEntry.objects.filter(created_at__gte=_logs_since[0], kind=LedgerEntry.Kind.USAGE).exists()


def test_count_holds_no_budget_even_when_none_is_left(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")  # unpriced: a budgeted message would be refused
    billing.set_budget(target=legacy.project, monthly_limit="1.00")
    client = legacy.anthropic()

    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model=model, max_tokens=10, messages=MESSAGES)
    counted = client.messages.count_tokens(model=model, messages=MESSAGES)

    assert counted.input_tokens > 0


def test_count_is_one_request_against_the_requests_per_minute_limit(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")
    services.set_key_limits(
        key=VirtualKey.objects.get(project=legacy.project), rpm_limit=1, tpm_limit=None, max_streams=None
    )
    client = legacy.anthropic()

    client.messages.count_tokens(model=model, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.count_tokens(model=model, messages=MESSAGES)

    assert refused.value.body["error"]["type"] == "rate_limit_error"


def test_count_takes_no_tokens_of_the_tokens_per_minute_limit(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")
    services.set_key_limits(
        key=VirtualKey.objects.get(project=legacy.project), rpm_limit=None, tpm_limit=5, max_streams=None
    )
    client = legacy.anthropic()

    counts = [client.messages.count_tokens(model=model, messages=MESSAGES).input_tokens for _ in range(3)]

    assert all(c > 5 for c in counts)  # each counts more than the limit allows a minute, and none is refused


def test_errors_are_in_anthropics_shape(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")
    hidden = legacy.serve("hidden", "claude-test", "anthropic", allow=False)
    client = legacy.anthropic()

    with pytest.raises(anthropic.AuthenticationError) as wrong_key:
        anthropic.Anthropic(base_url=legacy.gateway, api_key="sk-sym-wrong", max_retries=0).messages.count_tokens(
            model=model, messages=MESSAGES
        )
    with pytest.raises(anthropic.PermissionDeniedError) as not_allowed:
        client.messages.count_tokens(model=hidden, messages=MESSAGES)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.count_tokens(model="nope", messages=MESSAGES)

    assert wrong_key.value.body["type"] == "error" and wrong_key.value.body["error"]["type"] == "authentication_error"
    assert not_allowed.value.body["error"]["type"] == "permission_error"
    assert unknown.value.body["error"]["type"] == "not_found_error"
    assert anthropic_upstream.state.requests == []


def test_upstream_refusal_comes_back_in_anthropics_shape(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")

    response = legacy.post(
        "/v1/messages/count_tokens",
        {"model": model, "messages": MESSAGES, "temperature": 0.5},
        **{"anthropic-version": "2023-06-01"},
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "temperature: Extra inputs are not permitted",
    }


HOSTILE = {
    "no model": ({"messages": MESSAGES}, "model"),
    "model a number": ({"model": 5, "messages": MESSAGES}, "model"),
    "no messages": ({"model": "claude"}, "messages"),
    "messages a string": ({"model": "claude", "messages": "hi"}, "messages"),
    "a message a number": ({"model": "claude", "messages": [5]}, "messages[0]"),
    "system a number": ({"model": "claude", "messages": MESSAGES, "system": 5}, "system"),
    "tools an object": ({"model": "claude", "messages": MESSAGES, "tools": {"name": "x"}}, "tools"),
    "stream": ({"model": "claude", "messages": MESSAGES, "stream": True}, "stream"),
    "base_url override": ({"model": "claude", "messages": MESSAGES, "base_url": "http://10.0.0.1"}, "base_url"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_request_gets_an_anthropic_400_and_never_reaches_the_upstream(legacy, anthropic_upstream, case):
    legacy.serve("claude", "claude-test", "anthropic")
    body, param = HOSTILE[case]

    response = legacy.post("/v1/messages/count_tokens", body)

    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param.split("[")[0] in error["error"]["message"]
    assert anthropic_upstream.state.requests == []


def test_nul_bytes_and_deep_nesting_are_answered_not_crashed(legacy, anthropic_upstream):
    legacy.serve("claude", "claude-test", "anthropic")
    nested: object = "x"
    for _ in range(300):
        nested = [nested]

    nul = legacy.post(
        "/v1/messages/count_tokens", {"model": "claude", "messages": [{"role": "user", "content": "a\u0000b"}]}
    )
    deep = legacy.post(
        "/v1/messages/count_tokens", {"model": "claude", "messages": [{"role": "user", "content": nested}]}
    )

    assert nul.status_code == 200 and nul.json()["input_tokens"] > 0
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_json"


def test_secret_in_a_message_is_blocked_with_a_verdict(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")

    with pytest.raises(anthropic.BadRequestError) as refused:
        legacy.anthropic().messages.count_tokens(
            model=model, messages=[{"role": "user", "content": f"deploy with {OPENAI_KEY}"}]
        )

    assert refused.value.body["error"]["code"] == "guardrail_blocked"
    assert anthropic_upstream.state.requests == []
    [row] = logged(1)
    assert row.guardrails == [
        {"where": "input", "check": "secrets", "action": "block", "count": 1, "kinds": ["openai_key"]}
    ]


def test_pii_is_redacted_before_the_upstream_counts(legacy, anthropic_upstream):
    services.set_guardrail_policy(project=legacy.project, data={"input": {"pii": "redact"}})
    model = legacy.serve("claude", "claude-test", "anthropic")

    legacy.anthropic().messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "mail jan.jansen@example.nl"}]
    )

    assert anthropic_upstream.state.last().body["messages"][0]["content"] == "mail <EMAIL_1>"
    [row] = logged(1)
    assert row.guardrails == [{"where": "input", "check": "pii", "action": "redact", "count": 1, "kinds": ["email"]}]
