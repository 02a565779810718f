"""Guardrails on /v1/messages answer in Anthropic's shape, with the code `guardrail_blocked`."""

import anthropic
import pytest

from gateway import services

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_KEY = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2


def test_secret_in_a_message_is_blocked_in_anthropics_shape(claude, anthropic_upstream):
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": f"deploy with {OPENAI_KEY}"}]
        )

    body = refused.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "guardrail_blocked" and OPENAI_KEY not in str(body)


def test_pii_in_the_system_prompt_is_redacted_before_the_upstream(gpt, messages_setup, upstream):
    services.set_guardrail_policy(project=messages_setup.project, data={"input": {"pii": "redact"}})

    gpt.messages.create(
        model="gpt",
        max_tokens=50,
        system="Reply to jan.jansen@example.nl",
        messages=[{"role": "user", "content": "hi"}],
    )

    sent = upstream.state.last().body["messages"]
    assert sent[0]["content"] == "Reply to <EMAIL_1>"
