"""POST /v1/moderations through the live gateway, driven by the openai SDK: passed through to a
moderation model's OpenAI or OpenAI-compatible deployments, refused for the kinds that have no
moderation endpoint; the default model is the guardrail policy's moderation classifier; logged
(input tokens estimated), rate limited, priced, screened."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from billing import services as billing
from gateway import services
from gateway.models import Deployment, VirtualKey
from tests.conftest import logged
from tests.gateway.legacy_and_tools.conftest import IN_PRICE, debits

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_KEY = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_moderation_is_passed_through_and_names_the_public_model(legacy, upstream, kind):
    model = legacy.serve("moderation", "omni-moderation-latest", kind)

    reply = legacy.openai().moderations.create(model=model, input="a forbidden plan")

    assert reply.model == model
    [result] = reply.results
    assert result.flagged is True and result.categories.violence is True
    sent = upstream.state.last()
    assert sent.path == "/v1/moderations" and sent.body == {
        "model": "omni-moderation-latest",
        "input": "a forbidden plan",
    }


def test_list_and_multimodal_inputs_are_passed_on_as_sent(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai")
    client = legacy.openai()
    parts = [
        {"type": "text", "text": "is this forbidden?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]

    listed = client.moderations.create(model=model, input=["fine", "forbidden"])
    mixed = client.moderations.create(model=model, input=parts)

    assert [r.flagged for r in listed.results] == [False, True]
    assert upstream.state.last().body["input"] == parts and len(mixed.results) == 2


def test_without_a_model_the_policys_moderation_classifier_is_used(legacy, upstream):
    model = legacy.serve("moderator", "omni-moderation-latest", "openai")
    services.set_guardrail_policy(
        project=legacy.project, data={"classifier_model": model, "classifier_kind": "moderation"}
    )

    reply = legacy.openai().moderations.create(input="hello")

    assert reply.model == model and upstream.state.last().body["model"] == "omni-moderation-latest"


def test_without_a_model_or_a_moderation_classifier_it_is_a_400(legacy, upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        legacy.openai().moderations.create(input="hello")

    assert (refused.value.body["param"], refused.value.body["code"]) == ("model", "missing_required_parameter")
    assert "moderation classifier" in refused.value.body["message"]


def test_the_moderation_model_must_be_on_the_allow_list(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai", allow=False)

    with pytest.raises(openai.PermissionDeniedError):
        legacy.openai().moderations.create(model=model, input="hello")
    assert upstream.state.requests == []


@pytest.mark.parametrize(("kind", "named"), [("anthropic", "Anthropic"), ("azure_openai", "Azure OpenAI")])
def test_kinds_without_a_moderation_endpoint_are_refused_clearly(
    legacy, anthropic_upstream, azure_upstream, kind, named
):
    model = legacy.serve("moderation", "some-model", kind)

    with pytest.raises(openai.BadRequestError) as refused:
        legacy.openai().moderations.create(model=model, input="hello")

    assert refused.value.body["code"] == "unsupported_operation" and named in refused.value.body["message"]
    assert anthropic_upstream.state.requests == [] and azure_upstream.state.requests == []


def test_row_estimates_the_input_and_prices_it_and_the_ledger_debits_it(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai", priced=True)

    legacy.openai().moderations.create(model=model, input="some text to check " * 10)

    [row] = logged(1)
    assert (row.endpoint, row.model, row.status_code, row.stream) == ("moderations", model, 200, False)
    assert row.input_tokens > 0 and row.output_tokens == 0 and row.usage_estimated is True
    assert row.cost == row.input_tokens * IN_PRICE / Decimal(1_000_000)
    [debit] = debits(1)
    assert debit.amount == -row.cost and debit.request_id == row.request_id


def test_unpriced_moderation_costs_nothing(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai")

    legacy.openai().moderations.create(model=model, input="hello")

    [row] = logged(1)
    assert row.cost is None


def test_moderation_priced_at_zero_answers_under_a_hard_budget_and_costs_nothing(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai")
    client = legacy.openai()
    billing.set_budget(target=legacy.project, monthly_limit="1.00")

    with pytest.raises(openai.PermissionDeniedError) as unpriced:
        client.moderations.create(model=model, input="hello")
    services.set_deployment_prices(
        deployment=Deployment.objects.get(model__name=model), input_price=Decimal(0), output_price=Decimal(0)
    )
    reply = client.moderations.create(model=model, input="hello")

    assert unpriced.value.body["code"] == "model_not_priced" and reply.results[0].flagged is False
    rows = logged(2)
    assert rows[-1].cost == 0


def test_moderation_counts_against_the_requests_per_minute_limit(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai")
    services.set_key_limits(
        key=VirtualKey.objects.get(project=legacy.project), rpm_limit=1, tpm_limit=None, max_streams=None
    )
    client = legacy.openai()

    client.moderations.create(model=model, input="hello")
    with pytest.raises(openai.RateLimitError) as refused:
        client.moderations.create(model=model, input="hello")

    assert refused.value.body["code"] == "rate_limit_exceeded"


def test_pii_is_redacted_before_the_upstream_with_a_verdict(legacy, upstream):
    services.set_guardrail_policy(project=legacy.project, data={"input": {"pii": "redact"}})
    model = legacy.serve("moderation", "omni-moderation-latest", "openai")

    legacy.openai().moderations.create(model=model, input=["mail jan.jansen@example.nl", "fine"])

    assert upstream.state.last().body["input"] == ["mail <EMAIL_1>", "fine"]
    [row] = logged(1)
    assert row.guardrails == [{"where": "input", "check": "pii", "action": "redact", "count": 1, "kinds": ["email"]}]


def test_secret_in_the_input_is_blocked_before_the_upstream(legacy, upstream):
    model = legacy.serve("moderation", "omni-moderation-latest", "openai")

    with pytest.raises(openai.BadRequestError) as refused:
        legacy.openai().moderations.create(model=model, input=f"key {OPENAI_KEY}")

    assert refused.value.body["code"] == "guardrail_blocked" and upstream.state.requests == []
    [row] = logged(1)
    assert row.guardrails[0]["check"] == "secrets"


def test_upstream_failure_is_a_502_in_openais_shape(legacy, upstream):
    model = legacy.serve("moderation", "mock-moderation-down", "openai")

    with pytest.raises(openai.APIStatusError) as failed:
        legacy.openai().moderations.create(model=model, input="hello")

    assert failed.value.status_code == 502 and "moderation model is down" in failed.value.body["message"]


HOSTILE = {
    "no input": ({}, "input", "missing_required_parameter"),
    "input a number": ({"input": 5}, "input", "invalid_type"),
    "input an empty array": ({"input": []}, "input", "invalid_type"),
    "input an object": ({"input": {"text": "hi"}}, "input", "invalid_type"),
    "a part of an unknown type": ({"input": [{"type": "video", "url": "x"}]}, "input[0]", "invalid_type"),
    "strings and parts mixed": ({"input": ["hi", {"type": "text", "text": "x"}]}, "input[0]", "invalid_type"),
    "an image without a url": ({"input": [{"type": "image_url", "image_url": {}}]}, "input[0]", "invalid_type"),
    "too many inputs": ({"input": ["x"] * 2049}, "input", "invalid_value"),
    "model a number": ({"input": "hi", "model": 7}, "model", "invalid_type"),
    "api_key override": ({"input": "hi", "api_key": "sk-x"}, "api_key", "unsupported_parameter"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_input_gets_a_400_naming_the_field(legacy, upstream, case):
    legacy.serve("moderation", "omni-moderation-latest", "openai")
    body, param, code = HOSTILE[case]

    response = legacy.post("/v1/moderations", {"model": "moderation", **body})

    assert response.status_code == 400, response.text
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
    assert upstream.state.requests == []


def test_nul_bytes_and_deep_nesting_are_answered_not_crashed(legacy, upstream):
    legacy.serve("moderation", "omni-moderation-latest", "openai")
    nested: object = "x"
    for _ in range(300):
        nested = [nested]

    nul = legacy.post("/v1/moderations", {"model": "moderation", "input": "a\u0000b"})
    deep = legacy.post("/v1/moderations", {"model": "moderation", "input": nested})

    assert nul.status_code == 200 and nul.json()["results"][0]["flagged"] is False
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_json"
