"""Claude Code (npm `@anthropic-ai/claude-code`, pinned in tests/clients/package.json) works through
the gateway unchanged: `claude -p` answers one turn and a tool-using turn in a scratch folder,
through an Anthropic deployment (passed through) and an OpenAI-compatible one (translated); each
of its calls leaves a request-log row with tokens and cost; a denied beta is refused by name.

The binary comes from `npm ci --prefix tests/clients` (`make test` and `.ci/run` run it). Without
npm the tests are skipped, except on CI, where a missing client is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway import services
from gateway.models import RequestLog
from tests.clients.conftest import say_version
from tests.conftest import _drain_request_logs, logged
from tests.gateway.messages.conftest import MessagesSetup
from tests.mock_agent import AGENT_GREETING

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = Path(__file__).parent / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
_RUN_TIMEOUT = 120


def _claude_or_skip() -> Path:
    if CLAUDE.exists():
        return CLAUDE
    if os.environ.get("CI"):
        pytest.fail(f"Claude Code is not installed at {CLAUDE}: run `npm ci --prefix tests/clients`.")
    pytest.skip("Claude Code is not installed (npm ci --prefix tests/clients)")


@pytest.fixture(scope="module")
def claude_version(pytestconfig: pytest.Config) -> str:
    version = subprocess.run(
        [str(_claude_or_skip()), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    say_version(pytestconfig, f"client: Claude Code {version}")
    return version


def _run(setup: MessagesSetup, model: str, prompt: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`claude -p <prompt>` against the gateway, in `cwd`, with a home of its own."""
    home = cwd.parent / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": setup.gateway,
        "ANTHROPIC_API_KEY": setup.secret,
        # Every model Claude Code may pick (its main one and the small one for side tasks) is ours.
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4096",  # a smaller budget hold, as the README suggests
    }
    return subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json", *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT,
        check=False,
    )


def _result(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.stdout.strip(), f"Claude Code printed nothing (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def _scratch(tmp_path: Path) -> Path:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return scratch


def _every_call_logged(upstream_requests: int) -> list[RequestLog]:
    """Each of Claude Code's calls has its row, with tokens and a cost; returns the rows."""
    rows = [row for row in logged(upstream_requests) if row.endpoint != "models"]
    assert len(rows) == upstream_requests, [(r.endpoint, r.status_code, r.error_code) for r in rows]
    for row in rows:
        assert row.status_code == 200, (row.status_code, row.error_code)
        assert row.input_tokens > 0 and row.output_tokens > 0 and row.cost > 0
    return rows


@pytest.mark.parametrize("served_by", ["anthropic", "openai"])
def test_claude_code_answers_one_turn(
    messages_setup, anthropic_upstream, upstream, claude_version, tmp_path, served_by
):
    model = messages_setup.serve_agent(served_by)
    _drain_request_logs()

    run = _run(messages_setup, model, "Say hello", _scratch(tmp_path))

    result = _result(run)
    assert run.returncode == 0 and not result["is_error"], result
    assert result["result"] == AGENT_GREETING
    mock = anthropic_upstream if served_by == "anthropic" else upstream
    assert mock.state.requests, "Claude Code's request never reached the upstream"
    _every_call_logged(len(mock.state.requests))


@pytest.mark.parametrize("served_by", ["anthropic", "openai"])
def test_claude_code_uses_a_tool_in_a_scratch_folder(
    messages_setup, anthropic_upstream, upstream, claude_version, tmp_path, served_by
):
    model = messages_setup.serve_agent(served_by)
    scratch = _scratch(tmp_path)
    target = scratch / "hello.txt"
    _drain_request_logs()

    run = _run(
        messages_setup,
        model,
        f"Write the text 'hello through the gateway' to the file {target}",
        scratch,
        "--allowedTools",
        "Write",
    )

    result = _result(run)
    assert run.returncode == 0 and not result["is_error"], result
    assert target.read_text() == "hello through the gateway"
    assert result["result"].startswith("Done. The tool said: ")
    mock = anthropic_upstream if served_by == "anthropic" else upstream
    assert len(mock.state.requests) >= 2  # the tool call, then the answer to its result
    _every_call_logged(len(mock.state.requests))


def test_a_denied_beta_stops_claude_code_with_a_message_naming_it(
    messages_setup, anthropic_upstream, claude_version, tmp_path
):
    model = messages_setup.serve_agent("anthropic")
    services.set_guardrail_policy(project=None, data={"denied_betas": ["claude-code-*"]})
    _drain_request_logs()

    run = _run(messages_setup, model, "Say hello", _scratch(tmp_path))

    assert run.returncode != 0 or _result(run)["is_error"]
    said = run.stdout + run.stderr
    assert "claude-code-20250219" in said and "not allowed" in said, said[-2000:]
    assert anthropic_upstream.state.requests == []
    rows = logged(1)
    assert rows and all(row.error_code == "beta_not_allowed" for row in rows)
