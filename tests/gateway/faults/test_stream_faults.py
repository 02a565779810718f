"""Streams: retried only before their first chunk, timed to the first token, guarded against silence."""

from __future__ import annotations

import math
import time

import openai
import pytest

from tests.conftest import logged
from tests.gateway.faults.conftest import ANSWER_WORDS, PROMPT, PROMPT_TOKENS, Deployed

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "".join(ANSWER_WORDS)


def test_stream_is_never_retried_once_its_first_chunk_was_sent(faults):
    faults.script("primary", "cut=4")
    deployments = faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1))
    received: list[str] = []

    with pytest.raises(openai.APIError) as caught:
        for chunk in faults.ask("m", stream=True):
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "echo: tell me "
    assert "broke mid-stream" in caught.value.message
    assert faults.attempts() == ["primary"], "the upstream is called once; the client never sees a chunk twice"
    [row] = logged(1)
    assert (row.deployment_id, row.status_code, row.error_code) == (deployments["primary"].id, 502, "upstream_error")
    assert row.usage_estimated
    assert row.output_tokens == math.ceil(len("echo: tell me ") / 4)


def test_first_token_timeout_fails_over_to_the_next_deployment_when_a_stream_is_slow(faults):
    faults.script("slow", "slow-first-token=5")
    deployments = faults.serve("m", Deployed("slow", first_token_timeout=0.2), Deployed("fast", priority=1))

    started = time.monotonic()
    stream = faults.stream("m", stream_options={"include_usage": True})
    elapsed = time.monotonic() - started

    assert stream.done and stream.text == ANSWER
    assert 0.2 <= elapsed < 3.0
    assert faults.attempts() == ["slow", "fast"]
    assert faults.hung_up_on("slow")
    [row] = logged(1)
    assert row.deployment_id == deployments["fast"].id
    assert [(a["deployment"], a["status"], a["error"]) for a in row.attempts] == [
        (deployments["slow"].id, None, "upstream_timeout")
    ]
    assert row.ttft_ms >= 200
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)


def test_slow_first_token_is_waited_for_when_within_the_timeout(faults):
    faults.script("a", "slow-first-token=0.3")
    faults.serve("m", Deployed("a", first_token_timeout=2))

    stream = faults.stream("m")

    assert stream.done and stream.text == ANSWER
    assert faults.attempts() == ["a"]


def test_idle_timeout_ends_a_stalled_stream_with_an_error_event(faults):
    faults.script("a", "stall=3")
    deployment = faults.serve("m", Deployed("a", idle_timeout=0.3))["a"]

    started = time.monotonic()
    stream = faults.stream("m")
    elapsed = time.monotonic() - started

    assert stream.status == 200
    assert stream.text == "echo: tell "
    assert [(e["code"], e["type"]) for e in stream.errors] == [("upstream_timeout", "api_error")]
    assert not stream.done
    assert 0.3 <= elapsed < 3.0
    assert faults.hung_up_on("a")
    [row] = logged(1)
    assert (row.deployment_id, row.status_code, row.error_code) == (deployment.id, 504, "upstream_timeout")
    assert row.usage_estimated
    assert (row.input_tokens, row.output_tokens) == (math.ceil(len(PROMPT) / 4), math.ceil(len("echo: tell ") / 4))


def test_sdk_raises_with_the_gateways_message_when_the_upstream_reports_an_error_mid_stream(faults):
    faults.script("a", "error-event=2")
    faults.serve("m", Deployed("a"))

    with pytest.raises(openai.APIError) as caught:
        list(faults.ask("m", stream=True))

    assert caught.value.message == "The provider reported an error mid-stream: mock: the model crashed"
    assert faults.attempts() == ["a"]


def test_usage_the_upstream_reported_is_kept_when_its_stream_lacks_done(faults):
    faults.script("a", "no-done")
    faults.serve("m", Deployed("a"))

    stream = faults.stream("m", stream_options={"include_usage": True})

    assert stream.text == ANSWER
    assert stream.chunks[-1]["usage"]["completion_tokens"] == 6
    assert [e["code"] for e in stream.errors] == ["upstream_error"]
    assert not stream.done
    [row] = logged(1)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)
