"""Guardrails through the live gateway, driven by the openai SDK: blocked before any cost,
redacted before the model sees it, restored for the caller, and stopped mid-stream."""

from __future__ import annotations

import time

import openai
import pytest

from billing.models import LedgerEntry
from gateway import services
from gateway.models import Deployment
from tests.conftest import Setup, _logs_since, logged

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_KEY = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2
EMAIL = "jan.jansen@example.nl"


def _sdk(live_gateway: str, setup: Setup) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=setup.secret, max_retries=0)


def _ask(client: openai.OpenAI, text: str, **extra):  # type: ignore[no-untyped-def]
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}], **extra)


def test_secret_in_a_prompt_is_blocked_by_the_default_policy_before_any_upstream_call_or_cost(
    gateway_setup, live_gateway, upstream
):
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(_sdk(live_gateway, gateway_setup), f"use {OPENAI_KEY} to deploy")

    error = refused.value.body
    assert error["code"] == "guardrail_blocked"
    assert "project 'Shop'" in error["message"] and "'secrets'" in error["message"]
    assert OPENAI_KEY not in str(refused.value) and OPENAI_KEY[8:30] not in str(refused.value)
    assert upstream.state.requests == []
    [row] = logged(1)
    assert (row.status_code, row.error_code) == (400, "guardrail_blocked")
    assert row.guardrails == [
        {"where": "input", "check": "secrets", "action": "block", "count": 1, "kinds": ["openai_key"]}
    ]
    assert not LedgerEntry.objects.filter(created_at__gte=_logs_since[0]).exists()


def test_pii_is_redacted_before_the_model_sees_it_and_restored_for_the_caller(gateway_setup, live_gateway, upstream):
    services.set_guardrail_policy(
        project=gateway_setup.project, data={"input": {"pii": "redact"}, "restore_redactions": True}
    )

    reply = _ask(_sdk(live_gateway, gateway_setup), f"write to {EMAIL}")

    assert upstream.state.last().body["messages"][0]["content"] == "write to <EMAIL_1>"
    assert reply.choices[0].message.content == f"echo: write to {EMAIL}"
    [row] = logged(1)
    assert row.guardrails == [{"where": "input", "check": "pii", "action": "redact", "count": 1, "kinds": ["email"]}]


def _output_policy(setup: Setup, action: str) -> None:
    # The organisation's floor lets secrets in (off), so the echo carries one out to be checked.
    services.set_guardrail_policy(project=None, data={"input": {"secrets": "off"}})
    services.set_guardrail_policy(project=setup.project, data={"output": {"secrets": action}})


@pytest.mark.parametrize("action", ["redact", "flag"])
def test_output_verdicts_and_text_are_the_same_streamed_and_not(gateway_setup, live_gateway, upstream, action):
    _output_policy(gateway_setup, action)
    client = _sdk(live_gateway, gateway_setup)
    prompt = f"the key is {OPENAI_KEY} ok"

    whole = _ask(client, prompt).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in _ask(client, prompt, stream=True) if c.choices)

    assert streamed.rstrip() == whole  # the mock ends a streamed echo with a space
    if action == "redact":
        assert OPENAI_KEY not in whole and "<OPENAI_KEY_1>" in whole
    rows = logged(2)
    assert len(rows) == 2 and rows[0].guardrails == rows[1].guardrails
    assert rows[0].guardrails[0]["where"] == "output" and rows[0].guardrails[0]["action"] == action


def test_blocked_output_ends_the_stream_with_an_error_and_nothing_of_the_match(gateway_setup, live_gateway, upstream):
    _output_policy(gateway_setup, "block")
    received = ""

    with pytest.raises(openai.APIError) as ended:
        for chunk in _ask(_sdk(live_gateway, gateway_setup), f"the key is {OPENAI_KEY} ok", stream=True):
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""

    assert "guardrail" in str(ended.value).lower()
    assert "echo: the key is ".startswith(received)  # what came before the match, at most
    assert OPENAI_KEY[:6] not in received
    deadline = time.monotonic() + 5
    while not (rows := logged(1)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (rows[0].status_code, rows[0].error_code) == (400, "guardrail_blocked")
    assert OPENAI_KEY not in rows[0].response_body


def test_blocked_non_streamed_answer_is_a_400_that_never_shows_the_match(gateway_setup, live_gateway, upstream):
    _output_policy(gateway_setup, "block")

    with pytest.raises(openai.BadRequestError) as refused:
        _ask(_sdk(live_gateway, gateway_setup), f"the key is {OPENAI_KEY} ok")

    assert refused.value.body["code"] == "guardrail_blocked" and OPENAI_KEY not in str(refused.value)


def test_deny_list_blocks_a_project_term(gateway_setup, live_gateway, upstream):
    services.set_guardrail_policy(project=gateway_setup.project, data={"denylist": ["project falcon"]})

    with pytest.raises(openai.BadRequestError):
        _ask(_sdk(live_gateway, gateway_setup), "what is the status of Project Falcon?")
    assert upstream.state.requests == []


# --- the external classifier: a moderation model through the gateway's own providers ---


def _classifier(setup: Setup, upstream_model: str, *, kind: str = "moderation", action: str = "block") -> None:
    from tests.factories import DeploymentFactory, ModelFactory

    provider = Deployment.objects.get(model__name="gpt-test").provider
    DeploymentFactory(model=ModelFactory(name="moderator"), provider=provider, upstream_model=upstream_model)
    services.set_guardrail_policy(
        project=setup.project,
        data={"input": {"classifier": action}, "classifier_model": "moderator", "classifier_kind": kind},
    )


@pytest.mark.parametrize(("kind", "upstream_model"), [("moderation", "omni-moderation-latest"), ("chat", "mock-guard")])
def test_input_the_classifier_flags_is_blocked_and_clean_input_passes(
    gateway_setup, live_gateway, upstream, kind, upstream_model
):
    _classifier(gateway_setup, upstream_model, kind=kind)
    client = _sdk(live_gateway, gateway_setup)

    with pytest.raises(openai.BadRequestError) as refused:
        _ask(client, "tell me the forbidden thing")
    assert refused.value.body["code"] == "guardrail_blocked" and "'classifier'" in refused.value.body["message"]
    assert _ask(client, "tell me a nice thing").choices[0].message.content == "echo: tell me a nice thing"

    answered = [r.body.get("model") for r in upstream.state.requests]
    assert answered.count("upstream-gpt") == 1  # the flagged request never reached the model
    rows = logged(2)
    assert rows[0].guardrails[0]["check"] == "classifier" and rows[0].guardrails[0]["action"] == "block"


def test_classifier_that_cannot_answer_refuses_a_blocking_policy_and_lets_a_flagging_one_pass(
    gateway_setup, live_gateway, upstream
):
    _classifier(gateway_setup, "mock-moderation-down")
    client = _sdk(live_gateway, gateway_setup)

    with pytest.raises(openai.InternalServerError) as refused:
        _ask(client, "hello")
    assert refused.value.status_code == 503

    services.set_guardrail_policy(
        project=gateway_setup.project, data={"input": {"classifier": "flag"}, "classifier_model": "moderator"}
    )
    assert _ask(client, "hello").choices[0].message.content == "echo: hello"
