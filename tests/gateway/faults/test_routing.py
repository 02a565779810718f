"""Where a request goes when deployments fail: retries, failover by priority, weights, fallback
models, retry-after and the total deadline."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import logged
from tests.gateway.faults.conftest import ANSWER_WORDS, PROMPT_TOKENS, Deployed

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "".join(ANSWER_WORDS)


# --- retries and failover inside one model ---


def test_same_deployment_answers_when_it_fails_then_recovers(faults):
    faults.script("a", "500", "503", "ok")
    deployment = faults.serve("m", Deployed("a"))["a"]

    reply = faults.ask("m")

    assert reply.choices[0].message.content == ANSWER
    assert faults.calls("a") == 3
    [row] = logged(1)
    assert (row.status_code, row.deployment_id) == (200, deployment.id)
    assert [(a["deployment"], a["status"]) for a in row.attempts] == [(deployment.id, 500), (deployment.id, 503)]
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)


def test_other_deployment_of_same_priority_answers_when_the_first_fails(faults):
    faults.script("pair", "500", "ok")  # whichever deployment is picked first fails; the next answers
    deployments = faults.serve("m", Deployed("a", script="pair"), Deployed("b", script="pair"))

    reply = faults.ask("m")

    assert reply.choices[0].message.content == ANSWER
    first, second = faults.attempts()
    assert {first, second} == {"a", "b"}, "the failed deployment is not retried while another is untried"
    [row] = logged(1)
    assert row.deployment_id == deployments[second].id
    assert [(a["deployment"], a["status"]) for a in row.attempts] == [(deployments[first].id, 500)]


def test_lower_priority_serves_only_while_the_better_one_fails(faults):
    faults.script("primary", "ok", "500", "ok")
    deployments = faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1))

    for _ in range(3):
        faults.ask("m")

    assert faults.attempts() == ["primary", "primary", "secondary", "primary"]
    rows = logged(3)
    assert [r.deployment_id for r in rows] == [deployments[label].id for label in ("primary", "secondary", "primary")]
    assert [len(r.attempts) for r in rows] == [0, 1, 0]


def test_deployment_with_weight_zero_gets_no_traffic(faults):
    faults.serve("m", Deployed("a", weight=0), Deployed("b"))

    for _ in range(5):
        faults.ask("m")

    assert faults.attempts() == ["b"] * 5


def test_traffic_is_split_by_weight(faults):
    faults.serve("m", Deployed("heavy", weight=9), Deployed("light", weight=1))

    for _ in range(30):
        faults.ask("m")

    assert faults.calls("heavy") >= 20  # 27 expected; fewer than 20 has odds of about 1 in 100,000


# --- fallback models ---


def test_fallback_model_answers_and_is_named_when_every_deployment_fails(faults):
    faults.script("broken", "503")
    backup = faults.serve("backup-model", Deployed("backup"))["backup"]  # a fallback must exist first
    primary = faults.serve("m", Deployed("broken"), fallbacks=("backup-model",))["broken"]

    reply = faults.ask("m")

    assert reply.model == "backup-model"
    assert reply.choices[0].message.content == ANSWER
    assert faults.attempts() == ["broken"] * 3 + ["backup"]
    [row] = logged(1)
    assert (row.model, row.answered_model) == ("m", "backup-model")
    assert row.deployment_id == backup.id
    assert [(a["model"], a["deployment"], a["status"]) for a in row.attempts] == [("m", primary.id, 503)] * 3
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)


def test_stream_from_fallback_model_names_it_in_every_chunk(faults):
    faults.script("broken", "reset")
    faults.serve("backup-model", Deployed("backup"))
    faults.serve("m", Deployed("broken"), fallbacks=("backup-model",))

    stream = faults.stream("m")

    assert stream.done and stream.text == ANSWER
    assert {c["model"] for c in stream.chunks} == {"backup-model"}
    [row] = logged(1)
    assert (row.answered_model, row.stream, row.output_tokens) == ("backup-model", True, 6)


def test_fallback_is_skipped_when_the_key_may_not_use_it(faults):
    faults.script("broken", "500")
    faults.serve("forbidden", Deployed("backup"), allow=False)
    faults.serve("m", Deployed("broken"), fallbacks=("forbidden",))

    with pytest.raises(openai.InternalServerError) as caught:
        faults.ask("m")

    assert caught.value.status_code == 502
    assert faults.calls("backup") == 0


def test_context_length_error_is_neither_retried_nor_failed_over_nor_fallen_back(faults):
    faults.script("primary", "context-length")
    faults.serve("backup-model", Deployed("fallback"))
    faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1), fallbacks=("backup-model",))

    with pytest.raises(openai.BadRequestError) as caught:
        faults.ask("m")

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert "maximum context length" in caught.value.message
    assert faults.attempts() == ["primary"]
    [row] = logged(1)
    assert (row.status_code, row.error_code, row.answered_model) == (400, "context_length_exceeded", "")


# --- retry-after, backoff and the deadline ---


def _timed(ask, *args, **kwargs):
    started = time.monotonic()
    try:
        result = ask(*args, **kwargs)
    except openai.APIError as exc:
        result = exc
    return result, time.monotonic() - started


def test_retry_after_is_waited_for_when_it_is_under_the_cap(faults, settings):
    settings.ROUTER_RETRY_AFTER_CAP = 5.0
    faults.script("a", "429-retry-after=0.4", "ok")
    faults.serve("m", Deployed("a"))

    reply, elapsed = _timed(faults.ask, "m")

    assert reply.choices[0].message.content == ANSWER
    assert 0.4 <= elapsed < 3.0
    first, second = faults.upstream.state.requests
    assert second.at - first.at >= 0.4


def test_retry_after_is_capped_when_it_asks_for_too_long(faults, settings):
    settings.ROUTER_RETRY_AFTER_CAP = 0.3
    faults.script("a", "429-retry-after=3600", "ok")
    faults.serve("m", Deployed("a"))

    reply, elapsed = _timed(faults.ask, "m")

    assert reply.choices[0].message.content == ANSWER
    assert 0.3 <= elapsed < 3.0
    first, second = faults.upstream.state.requests
    assert 0.3 <= second.at - first.at < 3.0


def test_retry_after_is_not_waited_for_when_another_deployment_is_untried(faults, settings):
    settings.ROUTER_RETRY_AFTER_CAP = 10.0
    faults.script("primary", "429-retry-after=10")
    faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1))

    reply, elapsed = _timed(faults.ask, "m")

    assert reply.choices[0].message.content == ANSWER
    assert faults.attempts() == ["primary", "secondary"]
    assert elapsed < 3.0


def test_no_attempt_starts_after_the_deadline(faults, settings):
    settings.ROUTER_DEADLINE = 0.5
    settings.ROUTER_MAX_ATTEMPTS = 100
    settings.CIRCUIT_FAILURE_THRESHOLD = 1000
    settings.ROUTER_BACKOFF_BASE = settings.ROUTER_BACKOFF_MAX = 0.1  # waits of 0.05 to 0.1 s
    faults.script("a", "500")
    faults.serve("m", Deployed("a"))

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        faults.ask("m")
    elapsed = time.monotonic() - started

    assert 2 <= faults.calls("a") <= 11  # 0.5 s holds at most 10 waits of 0.05 s
    first, *_, last = faults.upstream.state.requests
    assert last.at - first.at < 0.5 + 0.05  # the deadline counts from before the first attempt
    assert elapsed < 3.0
    [row] = logged(1)
    assert len(row.attempts) == faults.calls("a")


def test_attempt_in_flight_at_the_deadline_may_finish_but_none_follows(faults, settings):
    settings.ROUTER_DEADLINE = 0.5
    faults.script("a", "hang")
    faults.serve("m", Deployed("a", first_token_timeout=0.3))

    with pytest.raises(openai.APIStatusError) as caught:
        faults.ask("m")

    assert caught.value.status_code == 504
    assert faults.calls("a") == 2  # at 0 s and about 0.3 s; a third would start after 0.6 s


def test_error_is_returned_without_a_last_wait_when_attempts_run_out(faults, settings):
    settings.ROUTER_MAX_ATTEMPTS = 2
    settings.ROUTER_RETRY_AFTER_CAP = 0.5
    faults.script("a", "429-retry-after=0.5")
    faults.serve("m", Deployed("a"))

    error, elapsed = _timed(faults.ask, "m")

    assert isinstance(error, openai.RateLimitError)
    assert faults.calls("a") == 2
    assert elapsed < 0.9  # one wait of 0.5 s between the two attempts, none after the last


def test_fallback_model_is_tried_without_waiting_when_the_primary_runs_out_of_attempts(faults, settings):
    settings.ROUTER_MAX_ATTEMPTS = 1
    settings.ROUTER_RETRY_AFTER_CAP = 1.0
    faults.script("broken", "429-retry-after=1")
    faults.serve("backup-model", Deployed("backup"))
    faults.serve("m", Deployed("broken"), fallbacks=("backup-model",))

    reply, elapsed = _timed(faults.ask, "m")

    assert reply.model == "backup-model"
    assert elapsed < 0.8
