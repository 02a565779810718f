"""Every upstream fault, streaming and not: what the client gets, how many attempts the upstream
saw, which deployment answered, and the usage recorded for what the upstream produced.

Deployments time out fast here (first token 0.2 s, stream silence 0.2 s); the gateway makes
ROUTER_MAX_ATTEMPTS (3) attempts per model.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import openai
import pytest

from tests.conftest import logged
from tests.gateway.faults.conftest import ANSWER_WORDS, PROMPT, PROMPT_TOKENS, Deployed

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPTS = 3  # settings.ROUTER_MAX_ATTEMPTS
TIMEOUTS = {"first_token_timeout": 0.2, "idle_timeout": 0.2}
ANSWER = "".join(ANSWER_WORDS)


def estimated(text: str) -> int:
    """The gateway's estimate when the upstream reports no usage: about four characters a token."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Fault:
    step: str  # the mock's script step (tests/mock_upstream.py)
    status: int  # the HTTP status the client gets
    code: str | None  # the OpenAI error code the client gets (None: an answer)
    retried: bool = True  # retryable, and nothing reached the client yet
    upstream_status: int | None = None  # the status a failed attempt records (None: no HTTP answer)
    mid_stream: bool = False  # a stream that already started: 200, then an error event

    def __str__(self) -> str:
        return self.step


BEFORE_ANY_ANSWER = [
    Fault("429", 429, "rate_limit_exceeded", upstream_status=429),
    Fault("429-retry-after=0.01", 429, "rate_limit_exceeded", upstream_status=429),
    Fault("500", 502, "upstream_error", upstream_status=500),
    Fault("503", 502, "upstream_error", upstream_status=503),
    Fault("reset", 502, "upstream_error"),
    Fault("hang", 504, "upstream_timeout"),
    Fault("slow-first-token=1", 504, "upstream_timeout"),
]
REFUSED = [
    Fault("context-length", 400, "context_length_exceeded", retried=False),
    Fault("content-filter-400", 400, "content_filter", retried=False),
]
FILTERED = Fault("content-filter", 200, None, retried=False)

NOT_STREAMING = [
    *BEFORE_ANY_ANSWER,
    Fault("cut=3", 502, "upstream_error"),  # the body breaks off halfway
    Fault("stall=3", 504, "upstream_timeout"),  # the body stops halfway
    Fault("malformed", 502, "upstream_error"),  # 200 with a body that is not JSON
    *REFUSED,
    FILTERED,
]
STREAMING = [
    *BEFORE_ANY_ANSWER,
    Fault("cut=0", 502, "upstream_error"),  # headers, then the connection breaks: no chunk yet
    Fault("malformed=0", 502, "upstream_error"),  # the first event is not JSON
    Fault("cut=3", 502, "upstream_error", retried=False, mid_stream=True),
    Fault("stall=3", 504, "upstream_timeout", retried=False, mid_stream=True),
    Fault("malformed=3", 502, "upstream_error", retried=False, mid_stream=True),
    Fault("error-event=3", 502, "upstream_error", retried=False, mid_stream=True),
    Fault("no-done", 502, "upstream_error", retried=False, mid_stream=True),
    *REFUSED,
    FILTERED,
]


def _some(faults: list[Fault], *steps: str) -> list[Fault]:
    """One fault of each kind, where every fault of a kind takes the same path through the router."""
    return [f for f in faults if f.step in steps]


# HTTP error, broken connection, timeout, bad body, refused request, filtered answer
FAILOVER = _some(
    NOT_STREAMING, "429-retry-after=0.01", "reset", "hang", "malformed", "context-length", "content-filter"
)
FAILOVER_STREAMING = _some(
    STREAMING, "503", "slow-first-token=1", "cut=0", "cut=3", "no-done", "content-filter-400", "content-filter"
)
RETRIED = _some(NOT_STREAMING, "429", "500", "reset", "hang", "cut=3")
RETRIED_STREAMING = _some(STREAMING, "503", "slow-first-token=1", "malformed=0")


SILENT = ("hang", "slow-first-token", "stall")  # faults the gateway must end by hanging up


def _answer_in_stream(stream) -> None:
    assert stream.status == 200
    assert stream.done and stream.errors == []
    assert stream.text == ANSWER
    assert [c for c in stream.chunks if c["choices"]][-1]["choices"][0]["finish_reason"] == "stop"
    assert {c["model"] for c in stream.chunks} == {"m"}


def _error_response(response, fault: Fault) -> None:
    assert response.status_code == fault.status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == fault.code
    assert set(error) == {"message", "type", "param", "code"}


# --- the fault hits the only deployment, on every attempt ---


@pytest.mark.parametrize("fault", NOT_STREAMING, ids=str)
def test_client_gets_the_fault_in_openai_shape_when_the_only_deployment_keeps_failing(faults, fault):
    faults.script("a", fault.step)
    deployment = faults.serve("m", Deployed("a", **TIMEOUTS))["a"]

    if fault.code is None:
        reply = faults.ask("m")
        assert reply.choices[0].finish_reason == "content_filter"
        assert reply.choices[0].message.content == "echo: tell "
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (PROMPT_TOKENS, 2)
    else:
        with pytest.raises(openai.APIStatusError) as caught:
            faults.ask("m")
        assert caught.value.status_code == fault.status
        assert caught.value.code == fault.code
        if "retry-after" in fault.step:
            assert caught.value.response.headers["retry-after"] == "0.01"

    assert faults.calls("a") == (ATTEMPTS if fault.retried else 1)
    if fault.step.startswith(SILENT):
        assert faults.hung_up_on("a")
    [row] = logged(1)
    assert (row.status_code, row.error_code) == (fault.status, fault.code or "")
    if fault.retried:
        assert row.deployment_id is None
        assert [(a["status"], a["error"]) for a in row.attempts] == [(fault.upstream_status, fault.code)] * ATTEMPTS
        assert (row.input_tokens, row.output_tokens) == (0, 0), "no upstream produced anything"
    elif fault.code is None:
        assert row.deployment_id == deployment.id
        assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 2, False)
    else:
        assert row.attempts == []
        assert (row.input_tokens, row.output_tokens) == (0, 0)


@pytest.mark.parametrize("fault", STREAMING, ids=str)
def test_stream_client_gets_the_fault_when_the_only_deployment_keeps_failing(faults, fault):
    faults.script("a", fault.step)
    deployment = faults.serve("m", Deployed("a", **TIMEOUTS))["a"]

    stream = faults.stream("m")

    if fault.step.startswith(SILENT):
        assert faults.hung_up_on("a")
    [row] = logged(1)
    if fault.mid_stream:
        # The stream had started: no retry, an error event, never [DONE].
        assert stream.status == 200
        assert [e["code"] for e in stream.errors] == [fault.code]
        assert isinstance(stream.events[-1], dict) and "error" in stream.events[-1]
        assert not stream.done
        assert faults.calls("a") == 1
        assert (row.deployment_id, row.attempts) == (deployment.id, [])
        assert (row.status_code, row.error_code) == (fault.status, fault.code)
        if fault.step == "no-done":
            assert stream.text == ANSWER
            assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)
        else:
            assert stream.text == "echo: tell "  # the role chunk and two words came before the fault
            assert row.usage_estimated
            assert (row.input_tokens, row.output_tokens) == (estimated(PROMPT), estimated(stream.text))
    elif fault.code is None:
        assert stream.status == 200
        assert stream.done
        assert stream.text == "echo: tell "
        assert stream.chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
        assert faults.calls("a") == 1
        assert row.deployment_id == deployment.id
        assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 2, False)
    else:
        # Nothing was streamed yet: a plain JSON error, after the retries.
        _error_response(stream.response, fault)
        assert faults.calls("a") == (ATTEMPTS if fault.retried else 1)
        assert (row.status_code, row.error_code) == (fault.status, fault.code)
        assert len(row.attempts) == (ATTEMPTS if fault.retried else 0)
        if fault.retried:
            assert row.deployment_id is None
        assert (row.input_tokens, row.output_tokens) == (0, 0)


# --- the fault hits the primary; a deployment of lower priority is there ---


@pytest.mark.parametrize("fault", FAILOVER, ids=str)
def test_backup_answers_unless_the_request_is_at_fault_when_the_primary_fails(faults, fault):
    faults.script("primary", fault.step)
    deployments = faults.serve("m", Deployed("primary", **TIMEOUTS), Deployed("backup", priority=1))

    if fault.retried:
        reply = faults.ask("m")
        assert (reply.model, reply.choices[0].message.content) == ("m", ANSWER)
    else:
        with pytest.raises(openai.BadRequestError) if fault.code else contextlib.nullcontext():
            faults.ask("m")

    assert faults.calls("primary") == 1
    assert faults.calls("backup") == (1 if fault.retried else 0)
    [row] = logged(1)
    if fault.retried:
        assert row.deployment_id == deployments["backup"].id
        assert [(a["deployment"], a["status"]) for a in row.attempts] == [
            (deployments["primary"].id, fault.upstream_status)
        ]
        assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)
    elif fault.code is None:
        assert row.deployment_id == deployments["primary"].id
        assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 2, False)
    else:
        assert (row.status_code, row.error_code) == (400, fault.code)


@pytest.mark.parametrize("fault", FAILOVER_STREAMING, ids=str)
def test_stream_fails_over_only_before_its_first_chunk_when_the_primary_fails(faults, fault):
    faults.script("primary", fault.step)
    deployments = faults.serve("m", Deployed("primary", **TIMEOUTS), Deployed("backup", priority=1))

    stream = faults.stream("m")

    [row] = logged(1)
    assert faults.calls("primary") == 1
    if fault.retried:
        _answer_in_stream(stream)
        assert faults.calls("backup") == 1
        assert row.deployment_id == deployments["backup"].id
        assert [a["deployment"] for a in row.attempts] == [deployments["primary"].id]
        assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)
    else:
        assert faults.calls("backup") == 0, "a started stream is never sent twice"
        if fault.mid_stream:
            assert row.deployment_id == deployments["primary"].id
            assert [e["code"] for e in stream.errors] == [fault.code]
            assert not stream.done
        elif fault.code is None:
            assert row.deployment_id == deployments["primary"].id
            assert stream.chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
            assert stream.done
        else:
            _error_response(stream.response, fault)


# --- the fault happens once; the same deployment then answers ---


@pytest.mark.parametrize("fault", RETRIED, ids=str)
def test_same_deployment_answers_when_it_fails_once(faults, fault):
    faults.script("a", fault.step, "ok")
    deployment = faults.serve("m", Deployed("a", **TIMEOUTS))["a"]

    reply = faults.ask("m")

    assert reply.choices[0].message.content == ANSWER
    assert faults.calls("a") == 2
    [row] = logged(1)
    assert (row.status_code, row.deployment_id, row.answered_model) == (200, deployment.id, "m")
    assert [(a["deployment"], a["status"], a["error"]) for a in row.attempts] == [
        (deployment.id, fault.upstream_status, fault.code)
    ]
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)


@pytest.mark.parametrize("fault", RETRIED_STREAMING, ids=str)
def test_same_deployment_streams_the_answer_when_it_fails_once(faults, fault):
    faults.script("a", fault.step, "ok")
    deployment = faults.serve("m", Deployed("a", **TIMEOUTS))["a"]

    stream = faults.stream("m", stream_options={"include_usage": True})

    _answer_in_stream(stream)
    usage = stream.events[-2]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (PROMPT_TOKENS, 6)
    assert faults.calls("a") == 2
    [row] = logged(1)
    assert (row.status_code, row.deployment_id) == (200, deployment.id)
    assert [a["deployment"] for a in row.attempts] == [deployment.id]
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (PROMPT_TOKENS, 6, False)
