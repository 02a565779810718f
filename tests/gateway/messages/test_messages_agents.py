"""/v1/messages takes what coding agents send (Claude Code's request, captured from a real run):
passed through untouched to Anthropic, translated with its meaning kept elsewhere, betas forwarded
unless the guardrail policy denies them, and the text screened in every shape it comes in."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from gateway import services
from tests.conftest import _drain_request_logs, logged
from tests.gateway.messages import wire
from tests.mock_agent import AGENT_GREETING

pytestmark = pytest.mark.django_db(transaction=True)

BETAS = (
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
    "mid-conversation-system-2026-04-07",
    "effort-2025-11-24",
)
BETA_HEADER = ", ".join(BETAS)
EMAIL = "jan.jansen@example.nl"

_TOOL = {
    "name": "Write",
    "description": "Writes a file to the local filesystem.",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}


def claude_code_body(model: str, *, stream: bool = False) -> dict[str, Any]:
    """The shape of Claude Code 2.1's first request (trimmed: 2 tools instead of 24)."""
    cached = {"type": "ephemeral"}
    return {
        "model": model,
        "max_tokens": 32000,
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's CLI for Claude.",
                "cache_control": cached,
            },
            {"type": "text", "text": "Working directory: /srv/scratch"},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>Use the tools well.</system-reminder>"},
                    {"type": "text", "text": "Say hello", "cache_control": cached},
                ],
            },
            {"role": "system", "content": [{"type": "text", "text": "Today's date is 2026-12-07."}]},
        ],
        "tools": [_TOOL, {"name": "Read", "input_schema": {"type": "object"}, "defer_loading": True}],
        "metadata": {"user_id": '{"device_id":"4f1c0e9a7b3d","account_uuid":"","session_id":"8d2e5c1f-9a6b"}'},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": stream,
    }


def _post(messages_setup, body: dict[str, Any], *, betas: str | None = BETA_HEADER) -> httpx.Response:
    """POST as Claude Code does: to /v1/messages?beta=true, with its betas (None: no header)."""
    headers = {"anthropic-beta": betas} if betas is not None else {}
    return wire.post(messages_setup.gateway, messages_setup.secret, body, "?beta=true", **headers)


def _text(response) -> str:
    if response.headers["content-type"].startswith("text/event-stream"):
        return "".join(
            data["delta"].get("text", "") for name, data in wire.events(response.text) if name == "content_block_delta"
        )
    return "".join(block.get("text", "") for block in response.json()["content"])


@pytest.fixture
def claude_agent(messages_setup):
    _drain_request_logs()
    return messages_setup.serve_agent("anthropic")


@pytest.fixture
def gpt_agent(messages_setup):
    _drain_request_logs()
    return messages_setup.serve_agent("openai")


# --- passed through to Anthropic ---


@pytest.mark.parametrize("stream", [False, True])
def test_claude_codes_request_is_passed_through_with_its_betas_and_query(
    messages_setup, claude_agent, anthropic_upstream, stream
):
    body = claude_code_body(claude_agent, stream=stream)

    response = _post(messages_setup, body)

    assert response.status_code == 200, response.text
    assert _text(response) == AGENT_GREETING
    assert "x-symbiosis-dropped" not in response.headers
    sent = anthropic_upstream.state.last()
    assert sent.path == "/v1/messages?beta=true"
    assert sent.headers["anthropic-beta"] == ",".join(BETAS)
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body == body | {"model": "claude-agent"}  # untouched but for the model
    (row,) = logged(1)
    assert (row.status_code, row.input_tokens, row.output_tokens) == (200, 11, 7)
    assert row.cost > 0


def test_passed_through_without_the_beta_the_upstream_judges_the_beta_fields(
    messages_setup, claude_agent, anthropic_upstream
):
    response = _post(messages_setup, claude_code_body(claude_agent), betas=None)

    assert response.status_code == 400
    assert "context_management" in response.json()["error"]["message"]  # Anthropic's words, not ours
    assert len(anthropic_upstream.state.requests) == 1


@pytest.mark.parametrize(
    ("denied", "named"),
    [(["context-management-2025-06-27"], "context-management-2025-06-27"), (["effort-*"], "effort-2025-11-24")],
)
@pytest.mark.parametrize("level", ["organisation", "project"])
def test_a_denied_beta_is_refused_naming_it(messages_setup, claude_agent, anthropic_upstream, denied, named, level):
    project = None if level == "organisation" else messages_setup.project
    services.set_guardrail_policy(project=project, data={"denied_betas": denied})

    response = _post(messages_setup, claude_code_body(claude_agent))

    assert response.status_code == 403
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "permission_error"
    assert error["error"]["code"] == "beta_not_allowed"
    assert f"'{named}'" in error["error"]["message"]
    assert anthropic_upstream.state.requests == []
    (row,) = logged(1)
    assert (row.status_code, row.error_code) == (403, "beta_not_allowed")


def test_a_beta_no_policy_denies_goes_through(messages_setup, claude_agent, anthropic_upstream):
    services.set_guardrail_policy(project=None, data={"denied_betas": ["files-api-*"]})

    response = _post(messages_setup, claude_code_body(claude_agent))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header", ["files api", "a\tb", ",".join(f"beta-{i}" for i in range(65))])
def test_a_malformed_beta_header_is_refused(messages_setup, claude_agent, anthropic_upstream, header):
    response = _post(messages_setup, claude_code_body(claude_agent), betas=header)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-beta" in response.json()["error"]["message"]
    assert anthropic_upstream.state.requests == []


# --- translated for an OpenAI-shaped deployment ---


@pytest.mark.parametrize("stream", [False, True])
def test_claude_codes_request_is_translated_keeping_its_meaning(messages_setup, gpt_agent, upstream, stream):
    response = _post(messages_setup, claude_code_body(gpt_agent, stream=stream))

    assert response.status_code == 200, response.text
    assert _text(response) == AGENT_GREETING
    sent = upstream.state.last()
    assert sent.path == "/v1/chat/completions"  # no query: it is Anthropic's
    roles = [(m["role"], m["content"]) for m in sent.body["messages"]]
    assert roles == [
        ("system", "You are Claude Code, Anthropic's CLI for Claude.\n\nWorking directory: /srv/scratch"),
        (
            "user",
            [
                {"type": "text", "text": "<system-reminder>Use the tools well.</system-reminder>"},
                {"type": "text", "text": "Say hello"},
            ],
        ),
        ("system", "Today's date is 2026-12-07."),  # where it was
    ]
    assert "reasoning_effort" not in sent.body and "anthropic-beta" not in sent.headers
    dropped = response.headers["x-symbiosis-dropped"].split(", ")
    assert set(dropped) == {
        "thinking",
        "output_config.effort",
        "context_management",
        "metadata.user_id",
        "cache_control",
        "anthropic-beta",
    }
    (row,) = logged(1)
    assert row.status_code == 200 and row.input_tokens > 0 and row.output_tokens > 0 and row.cost > 0


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"output_config": {"effort": "high"}}, "high"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"output_config": {"effort": "low"}, "thinking": {"type": "adaptive"}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, "high"),
        ({"thinking": {"type": "adaptive"}}, None),
    ],
)
def test_thinking_and_effort_become_the_reasoning_effort_of_a_reasoning_model(messages_setup, upstream, fields, effort):
    model = messages_setup.serve("gpt-5-code", "gpt-5-mock-agent", messages_setup.openai)
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]} | fields

    response = _post(messages_setup, body, betas=None)

    assert response.status_code == 200, response.text
    assert upstream.state.last().body.get("reasoning_effort") == effort
    dropped = response.headers.get("x-symbiosis-dropped", "")
    assert "output_config.effort" not in dropped
    assert ("thinking" in dropped) == (effort is None)


def test_an_unknown_effort_is_refused_naming_it(messages_setup, gpt_agent, upstream):
    body = {"model": gpt_agent, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}

    response = _post(messages_setup, body | {"output_config": {"effort": "extreme"}})

    assert response.status_code == 400 and "output_config.effort" in response.json()["error"]["message"]
    assert upstream.state.requests == []


def test_mcp_servers_are_refused_for_a_translated_model(messages_setup, gpt_agent, upstream):
    body = {"model": gpt_agent, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}

    response = _post(messages_setup, body | {"mcp_servers": [{"type": "url", "url": "https://mcp.example.com"}]})

    assert response.status_code == 400 and "'mcp_servers'" in response.json()["error"]["message"]
    assert upstream.state.requests == []


@pytest.mark.parametrize("served_by", ["anthropic", "openai"])
def test_a_tool_turn_round_trips(messages_setup, anthropic_upstream, upstream, served_by):
    model = messages_setup.serve_agent(served_by)
    body = claude_code_body(model)
    body["messages"][0]["content"][1]["text"] = "Write the text 'hi there' to the file /srv/scratch/hello.txt"

    first = _post(messages_setup, body)

    assert first.status_code == 200, first.text
    call = first.json()["content"][-1]
    assert call["type"] == "tool_use" and call["name"] == "Write"
    assert call["input"] == {"file_path": "/srv/scratch/hello.txt", "content": "hi there"}
    assert first.json()["stop_reason"] == "tool_use"
    result = {"type": "tool_result", "tool_use_id": call["id"], "content": "File created successfully"}
    body["messages"] += [
        {"role": "assistant", "content": first.json()["content"]},
        {"role": "user", "content": [result]},
    ]

    second = _post(messages_setup, body)

    assert second.status_code == 200, second.text
    assert _text(second) == "Done. The tool said: File created successfully"


# --- guardrails see every shape ---


@pytest.mark.parametrize("served_by", ["anthropic", "openai"])
@pytest.mark.parametrize("where", ["system block", "mid-conversation system", "tool result"])
def test_pii_is_redacted_wherever_claude_code_puts_text(messages_setup, anthropic_upstream, upstream, served_by, where):
    services.set_guardrail_policy(project=messages_setup.project, data={"input": {"pii": "redact"}})
    model = messages_setup.serve_agent(served_by)
    body = copy.deepcopy(claude_code_body(model))
    if where == "system block":
        body["system"][1]["text"] = f"The user is {EMAIL}"
    elif where == "mid-conversation system":
        body["messages"][1]["content"][0]["text"] = f"Mail {EMAIL} when done"
    else:
        call = {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "/a", "content": "b"}}
        body["messages"] += [
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": EMAIL}]},
        ]

    response = _post(messages_setup, body)

    assert response.status_code == 200, response.text
    sent = (anthropic_upstream if served_by == "anthropic" else upstream).state.last().body
    assert EMAIL not in str(sent)
    assert "<EMAIL_1>" in str(sent)


@pytest.mark.parametrize(
    "fields",
    [
        {"output_config": {"effort": ["high"]}},
        {"output_config": {"effort": {"level": "high"}}},
        {"thinking": None, "output_config": {"effort": "high"}},
        {"bad\nname": 1, "ünïcode": 2, "x" * 200: 3},
        {f"field_{i}": i for i in range(500)},
    ],
    ids=["effort a list", "effort an object", "thinking null", "odd field names", "500 unknown fields"],
)
def test_hostile_fields_get_a_clean_answer_and_a_short_plain_dropped_header(messages_setup, upstream, fields):
    model = messages_setup.serve("gpt-5-code", "gpt-5-mock-agent", messages_setup.openai)
    body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]} | fields

    response = _post(messages_setup, body, betas=None)

    if "effort" in str(fields.get("output_config")) and not isinstance(fields["output_config"]["effort"], str):
        assert response.status_code == 400 and "output_config.effort" in response.json()["error"]["message"]
        return
    assert response.status_code == 200, response.text
    dropped = response.headers.get("x-symbiosis-dropped", "")
    assert len(dropped) < 600 and "\n" not in dropped and dropped.isascii()
    assert "thinking" not in dropped
    if len(fields) > 16:
        assert dropped.endswith("...")
