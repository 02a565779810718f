"""Guardrails on /v1/responses, as on chat completions: the input (instructions and every input
item) blocked or redacted before the model sees it; the output redacted or blocked, with the
same text and verdicts streamed and not, and nothing of a match in any event of a stream (the
`done` events and `response.completed` repeat the whole text)."""

from __future__ import annotations

import time

import openai
import pytest

from billing.models import LedgerEntry
from gateway import services
from tests.conftest import _logs_since, logged
from tests.gateway.responses.conftest import KINDS, PASSED_THROUGH

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_KEY = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2
EMAIL = "jan.jansen@example.nl"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_secret_in_the_input_is_blocked_before_any_upstream_call_or_cost(responses, kind):
    model = responses.serve(kind, priced=True)

    with pytest.raises(openai.BadRequestError) as refused:
        responses.client().responses.create(
            model=model, input=[{"role": "user", "content": [{"type": "input_text", "text": f"use {OPENAI_KEY}"}]}]
        )

    error = refused.value.body
    assert error["code"] == "guardrail_blocked" and OPENAI_KEY not in str(refused.value)
    assert not responses.upstreams[kind].state.requests
    [row] = logged(1)
    assert (row.endpoint, row.status_code, row.error_code) == ("responses", 400, "guardrail_blocked")
    assert row.guardrails == [
        {"where": "input", "check": "secrets", "action": "block", "count": 1, "kinds": ["openai_key"]}
    ]
    assert not LedgerEntry.objects.filter(created_at__gte=_logs_since[0]).exists()


def test_a_secret_in_a_function_call_output_is_blocked_too(responses):
    model = responses.serve("openai")

    with pytest.raises(openai.BadRequestError) as refused:
        responses.client().responses.create(
            model=model,
            input=[
                {"role": "user", "content": "read the env"},
                {"type": "function_call", "call_id": "c1", "name": "read_env", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": f"KEY={OPENAI_KEY}"},
            ],
        )

    assert refused.value.body["code"] == "guardrail_blocked"


@pytest.mark.parametrize("kind", KINDS)
def test_pii_in_instructions_and_input_is_redacted_before_the_upstream_and_restored(responses, kind):
    services.set_guardrail_policy(
        project=responses.project, data={"input": {"pii": "redact"}, "restore_redactions": True}
    )
    model = responses.serve(kind)

    reply = responses.client().responses.create(model=model, input=f"write to {EMAIL}", instructions=f"cc {EMAIL}")

    sent = responses.sent(kind)
    if kind in PASSED_THROUGH:
        assert (sent["instructions"], sent["input"]) == ("cc <EMAIL_1>", "write to <EMAIL_1>")
    elif kind == "anthropic":
        assert sent["system"] == "cc <EMAIL_1>" and sent["messages"][0]["content"] == "write to <EMAIL_1>"
    else:
        assert [m["content"] for m in sent["messages"]] == ["cc <EMAIL_1>", "write to <EMAIL_1>"]
    assert EMAIL not in str(sent)
    assert reply.output_text == f"echo: write to {EMAIL}"
    [row] = logged(1)
    assert row.guardrails == [{"where": "input", "check": "pii", "action": "redact", "count": 2, "kinds": ["email"]}]


def _output_policy(responses, action: str) -> None:
    # The organisation's floor lets secrets in (off), so the echo carries one out to be checked.
    services.set_guardrail_policy(project=None, data={"input": {"secrets": "off"}})
    services.set_guardrail_policy(project=responses.project, data={"output": {"secrets": action}})


@pytest.mark.parametrize("kind", KINDS)
def test_redacted_output_is_the_same_streamed_and_not_in_every_event(responses, kind):
    _output_policy(responses, "redact")
    model = responses.serve(kind)
    client = responses.client()
    prompt = f"the key is {OPENAI_KEY} ok"

    whole = client.responses.create(model=model, input=prompt).output_text
    events = list(client.responses.create(model=model, input=prompt, stream=True))

    assert OPENAI_KEY not in whole and "<OPENAI_KEY_1>" in whole
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas.rstrip() == whole  # the OpenAI-compatible mock ends a streamed echo with a space
    done = next(e for e in events if e.type == "response.output_text.done")
    part = next(e for e in events if e.type == "response.content_part.done")
    item = next(e for e in events if e.type == "response.output_item.done")
    completed = events[-1]
    assert done.text == part.part.text == item.item.content[0].text == deltas
    assert completed.type == "response.completed" and completed.response.output[0].content[0].text == deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        assert OPENAI_KEY[8:28] not in event.model_dump_json()
    rows = logged(2)
    assert rows[0].guardrails == rows[1].guardrails
    assert rows[0].guardrails[0]["where"] == "output" and rows[0].guardrails[0]["action"] == "redact"


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_blocked_output_ends_the_stream_with_an_error_event_and_nothing_of_the_match(responses, kind):
    _output_policy(responses, "block")
    model = responses.serve(kind)
    received = ""

    with pytest.raises(openai.APIError) as ended:
        for event in responses.client().responses.create(model=model, input=f"the key is {OPENAI_KEY} ok", stream=True):
            if event.type == "response.output_text.delta":
                received += event.delta

    assert "guardrail" in str(ended.value).lower()
    assert "echo: the key is ".startswith(received)  # what came before the match, at most
    deadline = time.monotonic() + 5
    while not (rows := logged(1)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (rows[0].endpoint, rows[0].status_code, rows[0].error_code) == ("responses", 400, "guardrail_blocked")
    assert OPENAI_KEY not in rows[0].response_body


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_blocked_non_streamed_answer_is_a_400_that_never_shows_the_match(responses, kind):
    _output_policy(responses, "block")
    model = responses.serve(kind)

    with pytest.raises(openai.BadRequestError) as refused:
        responses.client().responses.create(model=model, input=f"the key is {OPENAI_KEY} ok")

    assert refused.value.body["code"] == "guardrail_blocked" and OPENAI_KEY not in str(refused.value)


@pytest.mark.parametrize(
    ("kind", "upstream_model"), [("openai_compatible", "mock-echo-auth"), ("anthropic", "claude-echo-key")]
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_key_the_upstream_echoes_never_reaches_the_client(responses, kind, upstream_model, stream):
    import secrets as random

    import httpx

    from gateway.models import Model

    canary = "canary" + random.token_hex(16)  # no known shape: only the gateway's own list catches it
    provider = services.create_provider(
        name=f"echo-{kind}", kind=kind, base_url=responses.upstreams[kind].url, api_key=canary, approved=True
    )
    services.create_model(
        name="echo", deployments=[services.DeploymentSpec(provider=provider, upstream_model=upstream_model)]
    )
    responses.project.allowed_models.add(Model.objects.get(name="echo"))
    body = {"model": "echo", "input": "what key?", "tools": [{"type": "function", "name": "f"}], "stream": stream}

    with httpx.stream(
        "POST",
        f"{responses.gateway}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {responses.secret}"},
        timeout=30,
    ) as answer:
        text = answer.read().decode()

    assert answer.status_code == 200, text
    assert canary not in text and canary[6:] not in text
    if stream:  # split across events, the pieces joined never make it either
        deltas = [line for line in text.splitlines() if line.startswith("data: ") and '"delta"' in line]
        import orjson

        joined = "".join(str(orjson.loads(line[6:]).get("delta", "")) for line in deltas)
        assert deltas and canary not in joined and canary[6:] not in joined
