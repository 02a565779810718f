"""POST /v1/completions (legacy text completions) through the live gateway, driven by the openai
SDK: passed through to OpenAI, Azure OpenAI and OpenAI-compatible deployments, streamed and not,
refused for Anthropic; logged, billed, held against budgets and screened like chat."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from billing import services as billing
from billing.models import LedgerEntry
from gateway import services
from tests.conftest import _logs_since, logged
from tests.gateway.legacy_and_tools.conftest import IN_PRICE, OUT_PRICE, Legacy, debits

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ["openai", "openai_compatible", "azure_openai"]
OPENAI_KEY = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2
EMAIL = "jan.jansen@example.nl"


@pytest.fixture
def mocks(upstream, azure_upstream):  # type: ignore[no-untyped-def]
    return {"openai": upstream, "openai_compatible": upstream, "azure_openai": azure_upstream}


def _instruct(legacy: Legacy, kind: str, **options: bool) -> str:
    upstream_model = "instruct" if kind == "azure_openai" else "upstream-instruct"
    return legacy.serve(f"instruct-{kind}", upstream_model, kind, **options)


@pytest.mark.parametrize("kind", KINDS)
def test_completion_is_passed_through_and_names_the_public_model_when_not_streamed(legacy, mocks, kind):
    model = _instruct(legacy, kind)

    reply = legacy.openai().completions.create(model=model, prompt="say hi", max_tokens=20)

    assert reply.object == "text_completion" and reply.model == model
    assert [c.text for c in reply.choices] == ["echo: say hi"]
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 7)
    sent = mocks[kind].state.last()
    assert sent.path.split("?")[0].endswith("/completions") and not sent.path.endswith("chat/completions")
    assert sent.body["prompt"] == "say hi" and sent.body["max_tokens"] == 20
    [row] = logged(1)
    assert (row.endpoint, row.model, row.status_code, row.stream) == ("completions", model, 200, False)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (5, 7, False)
    assert row.provider == legacy.providers[kind].name


@pytest.mark.parametrize("kind", KINDS)
def test_stream_is_relayed_chunk_by_chunk_without_the_usage_chunk_unless_asked(legacy, mocks, kind):
    model = _instruct(legacy, kind)

    chunks = list(legacy.openai().completions.create(model=model, prompt="one two", max_tokens=20, stream=True))

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: one two "
    assert all(c.usage is None and c.model == model for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert mocks[kind].state.last().body["stream_options"] == {"include_usage": True}  # asked on the client's behalf
    [row] = logged(1)
    assert (row.endpoint, row.stream, row.status_code) == ("completions", True, 200)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (5, 7, False)


def test_stream_ends_with_the_usage_chunk_when_the_client_asks(legacy):
    model = _instruct(legacy, "openai_compatible")

    chunks = list(
        legacy.openai().completions.create(
            model=model, prompt="hi", stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7


def test_several_prompts_with_n_answer_each_prompt_n_times(legacy, upstream):
    model = _instruct(legacy, "openai")

    reply = legacy.openai().completions.create(model=model, prompt=["a", "b"], n=2, max_tokens=5, echo=True)

    assert [c.text for c in reply.choices] == ["aecho: a", "aecho: a", "becho: b", "becho: b"]
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 28)
    sent = upstream.state.last().body
    assert (sent["n"], sent["echo"], sent["model"]) == (2, True, "upstream-instruct")


def test_suffix_logprobs_stop_and_best_of_pass_through_unchanged(legacy, upstream):
    model = _instruct(legacy, "openai_compatible")

    legacy.openai().completions.create(
        model=model, prompt="def f(", suffix="return x", logprobs=2, stop=["\n\n"], best_of=3, max_tokens=9, seed=7
    )

    sent = upstream.state.last().body
    assert (sent["suffix"], sent["logprobs"], sent["stop"], sent["best_of"], sent["seed"]) == (
        "return x",
        2,
        ["\n\n"],
        3,
        7,
    )


def test_anthropic_deployment_is_refused_with_a_clear_400_before_any_upstream_call(legacy, anthropic_upstream):
    model = legacy.serve("claude", "claude-test", "anthropic")

    with pytest.raises(openai.BadRequestError) as refused:
        legacy.openai().completions.create(model=model, prompt="hi", max_tokens=5)

    error = refused.value.body
    assert error["code"] == "unsupported_operation" and error["param"] == "model"
    assert "Anthropic" in error["message"] and "legacy text completions" in error["message"]
    assert anthropic_upstream.state.requests == []
    [row] = logged(1)
    assert (row.endpoint, row.status_code, row.error_code, row.input_tokens) == (
        "completions",
        400,
        "unsupported_operation",
        0,
    )


def test_token_array_prompts_are_refused_naming_the_prompt(legacy, upstream):
    model = _instruct(legacy, "openai")

    for prompt in ([1, 2, 3], [[1, 2], [3]]):
        with pytest.raises(openai.BadRequestError) as refused:
            legacy.openai().completions.create(model=model, prompt=prompt, max_tokens=5)
        assert (refused.value.body["param"], refused.value.body["code"]) == ("prompt", "unsupported_value")
    assert upstream.state.requests == []


def test_budget_hold_covers_max_tokens_times_best_of_and_refuses_what_does_not_fit(legacy, upstream):
    model = _instruct(legacy, "openai_compatible", priced=True)
    # A prompt bound of ~100 tokens (0.1) and 50 tokens out (0.1) fit; best_of 5 holds 250 out (0.5): not.
    billing.set_budget(target=legacy.project, monthly_limit="0.30")
    client = legacy.openai()

    with pytest.raises(openai.RateLimitError) as refused:
        client.completions.create(model=model, prompt="hi", max_tokens=50, best_of=5)
    assert refused.value.body["code"] == "insufficient_quota"
    assert upstream.state.requests == []

    reply = client.completions.create(model=model, prompt="hi", max_tokens=50)

    assert reply.choices[0].text == "echo: hi"
    rows = logged(2)
    [debit] = debits(1)
    assert debit.request_id == rows[-1].request_id
    assert debit.amount == -(5 * IN_PRICE + 7 * OUT_PRICE) / 1_000_000 == -rows[-1].cost


def test_budget_writes_the_held_output_limit_upstream_when_the_request_sets_none(legacy, upstream):
    model = _instruct(legacy, "openai", priced=True)
    billing.set_budget(target=legacy.project, monthly_limit="100.00")

    legacy.openai().completions.create(model=model, prompt="hi")

    assert isinstance(upstream.state.last().body["max_tokens"], int)  # what the hold assumed, not OpenAI's 16


def test_refused_request_leaves_no_debit(legacy, upstream):
    model = _instruct(legacy, "openai", priced=True)

    with pytest.raises(openai.BadRequestError):
        legacy.openai().completions.create(model=model, prompt="hi", max_tokens=0)

    [row] = logged(1)
    assert (row.status_code, row.error_code) == (400, "invalid_value")
    assert not LedgerEntry.objects.filter(created_at__gte=_logs_since[0], kind=LedgerEntry.Kind.USAGE).exists()


# --- guardrails ---


def test_pii_in_the_prompt_and_suffix_is_redacted_before_the_upstream(legacy, upstream):
    services.set_guardrail_policy(project=legacy.project, data={"input": {"pii": "redact"}})
    model = _instruct(legacy, "openai_compatible")

    legacy.openai().completions.create(model=model, prompt=["mail " + EMAIL, "x"], suffix=f"cc {EMAIL}", max_tokens=5)

    sent = upstream.state.last().body
    assert sent["prompt"] == ["mail <EMAIL_1>", "x"] and sent["suffix"] == "cc <EMAIL_1>"
    [row] = logged(1)
    assert row.guardrails == [{"where": "input", "check": "pii", "action": "redact", "count": 2, "kinds": ["email"]}]


def test_secret_in_the_prompt_is_blocked_before_any_upstream_call(legacy, upstream):
    model = _instruct(legacy, "openai")

    with pytest.raises(openai.BadRequestError) as refused:
        legacy.openai().completions.create(model=model, prompt=f"deploy with {OPENAI_KEY}", max_tokens=5)

    assert refused.value.body["code"] == "guardrail_blocked" and OPENAI_KEY not in str(refused.value.body)
    assert upstream.state.requests == []
    [row] = logged(1)
    assert row.guardrails[0]["check"] == "secrets" and row.guardrails[0]["action"] == "block"


@pytest.mark.parametrize("action", ["redact", "flag"])
def test_output_verdicts_and_text_are_the_same_streamed_and_not(legacy, upstream, action):
    services.set_guardrail_policy(project=None, data={"input": {"secrets": "off"}})
    services.set_guardrail_policy(project=legacy.project, data={"output": {"secrets": action}})
    model = _instruct(legacy, "openai_compatible")
    client = legacy.openai()
    prompt = f"the key is {OPENAI_KEY} ok"

    whole = client.completions.create(model=model, prompt=prompt, max_tokens=30).choices[0].text
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(model=model, prompt=prompt, stream=True) if c.choices
    )

    assert streamed.rstrip() == whole
    if action == "redact":
        assert OPENAI_KEY not in whole and "<OPENAI_KEY_1>" in whole
    rows = logged(2)
    assert len(rows) == 2 and rows[0].guardrails == rows[1].guardrails
    assert rows[0].guardrails[0]["where"] == "output" and rows[0].guardrails[0]["action"] == action


def test_blocked_output_ends_the_stream_with_an_error_event(legacy, upstream):
    services.set_guardrail_policy(project=None, data={"input": {"secrets": "off"}})
    services.set_guardrail_policy(project=legacy.project, data={"output": {"secrets": "block"}})
    model = _instruct(legacy, "openai")
    received = ""

    with pytest.raises(openai.APIError) as ended:
        for chunk in legacy.openai().completions.create(model=model, prompt=f"key {OPENAI_KEY} ok", stream=True):
            received += chunk.choices[0].text if chunk.choices else ""

    assert "guardrail" in str(ended.value).lower()
    assert OPENAI_KEY[:6] not in received


def test_provider_key_split_across_stream_chunks_never_reaches_the_client(legacy, upstream):
    model = legacy.serve("echo-auth", "mock-echo-auth", "openai_compatible")

    streamed = "".join(
        c.choices[0].text
        for c in legacy.openai().completions.create(model=model, prompt="hi", stream=True)
        if c.choices
    )
    whole = legacy.openai().completions.create(model=model, prompt="hi").choices[0].text

    assert streamed.startswith("your key is ") and whole.startswith("your key is ")
    assert "sk-upstream-test-secret" not in streamed and "sk-upstream-test-secret" not in whole


# --- hostile input ---

HOSTILE = {
    "prompt a number": ({"prompt": 5}, "prompt", "invalid_type"),
    "prompt missing": ({}, "prompt", "missing_required_parameter"),
    "prompt an empty array": ({"prompt": []}, "prompt", "invalid_type"),
    "prompt an array of objects": ({"prompt": [{"text": "hi"}]}, "prompt", "invalid_type"),
    "prompt mixing text and tokens": ({"prompt": ["hi", 5]}, "prompt", "invalid_type"),
    "too many prompts": ({"prompt": ["x"] * 2049}, "prompt", "invalid_value"),
    "max_tokens a string": ({"prompt": "hi", "max_tokens": "10"}, "max_tokens", "invalid_type"),
    "max_tokens huge": ({"prompt": "hi", "max_tokens": 10**12}, "max_tokens", "invalid_value"),
    "max_tokens past 64 bits": ({"prompt": "hi", "max_tokens": 10**30}, "max_tokens", None),
    "max_tokens a float": ({"prompt": "hi", "max_tokens": 30.0}, "max_tokens", "invalid_type"),
    "n huge": ({"prompt": "hi", "n": 10**9}, "n", "invalid_value"),
    "best_of huge": ({"prompt": "hi", "best_of": 10**12}, "best_of", "invalid_value"),
    "best_of below n": ({"prompt": "hi", "n": 3, "best_of": 2}, "best_of", "invalid_value"),
    "best_of a boolean": ({"prompt": "hi", "best_of": True}, "best_of", "invalid_type"),
    "logprobs negative": ({"prompt": "hi", "logprobs": -1}, "logprobs", "invalid_value"),
    "echo a string": ({"prompt": "hi", "echo": "yes"}, "echo", "invalid_type"),
    "suffix a number": ({"prompt": "hi", "suffix": 3}, "suffix", "invalid_type"),
    "stop a number": ({"prompt": "hi", "stop": 3}, "stop", "invalid_type"),
    "stop too many": ({"prompt": "hi", "stop": ["a"] * 17}, "stop", "invalid_value"),
    "stream a string": ({"prompt": "hi", "stream": "true"}, "stream", "invalid_type"),
    "stream_options a list": ({"prompt": "hi", "stream": True, "stream_options": []}, "stream_options", None),
    "base_url override": ({"prompt": "hi", "base_url": "http://169.254.169.254"}, "base_url", None),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_field_gets_a_400_naming_it_and_never_reaches_the_upstream(legacy, upstream, case):
    model = _instruct(legacy, "openai_compatible")
    body, param, code = HOSTILE[case]

    response = legacy.post("/v1/completions", {"model": model, **body})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert upstream.state.requests == []


def test_deeply_nested_prompt_is_refused_with_invalid_json(legacy, upstream):
    model = _instruct(legacy, "openai")
    nested: object = "hi"
    for _ in range(300):
        nested = [nested]

    response = legacy.post("/v1/completions", {"model": model, "prompt": nested})

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_nul_bytes_in_the_prompt_pass_through_and_are_logged(legacy, upstream):
    model = _instruct(legacy, "openai_compatible")

    reply = legacy.openai().completions.create(model=model, prompt="a\u0000b", max_tokens=5)

    assert reply.choices[0].text == "echo: a\u0000b"
    assert upstream.state.last().body["prompt"] == "a\u0000b"
    [row] = logged(1)
    assert (row.status_code, row.write_error) == (200, "")


def test_unknown_model_and_model_off_the_allow_list_are_refused(legacy, upstream):
    hidden = legacy.serve("hidden", "upstream-instruct", "openai", allow=False)

    with pytest.raises(openai.NotFoundError):
        legacy.openai().completions.create(model="nope", prompt="hi")
    with pytest.raises(openai.PermissionDeniedError):
        legacy.openai().completions.create(model=hidden, prompt="hi")
    assert upstream.state.requests == []


def test_upstream_error_keeps_its_status_and_message(legacy, upstream):
    model = legacy.serve("broken", "mock-status-422", "openai_compatible")

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        legacy.openai().completions.create(model=model, prompt="hi", max_tokens=5)

    assert "mock upstream error 422" in refused.value.body["message"]


def test_cost_is_the_usage_at_the_deployments_prices(legacy, upstream):
    model = _instruct(legacy, "openai", priced=True)

    legacy.openai().completions.create(model=model, prompt=["a", "b"], max_tokens=5)

    [row] = logged(1)
    assert row.cost == (10 * IN_PRICE + 14 * OUT_PRICE) / Decimal(1_000_000)
