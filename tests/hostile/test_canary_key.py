"""A provider key that an upstream echoes back goes no further than the gateway.

The keys are canaries that match no known secret pattern (a self-hosted server's key can look
like anything), so only exact matching of the configured keys can catch them. The upstreams
quote the key they were sent everywhere they can: in the text, in a tool call's arguments, in
`id` and `model`, and, streaming, a few characters a chunk. Requests go through both endpoints
(/v1/chat/completions and /v1/messages) to both kinds of provider (OpenAI-compatible, and
Anthropic), translated or passed through, with and without streaming; the project keeps full
bodies, and spans are exported with message content. The key must appear in no answer (the
stream's joined text included), no request-log row, no column of any table, no exported span and
no line the gateway printed.
"""

from __future__ import annotations

import os
import secrets
import signal
from typing import Any

import pytest
from django.db import connection

from gateway import services
from gateway.models import Provider, RequestLog
from tests.conftest import Setup
from tests.gateway.providers.conftest import anthropic_upstream, mock_anthropic  # noqa: F401 - fixtures
from tests.gateway.telemetry.conftest import Receiver, receiver  # noqa: F401 - the OTLP receiver fixture
from tests.hostile.conftest import Answer, Rig, parse_sse
from tests.mock_anthropic import MockAnthropic
from tests.mock_upstream import MockUpstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
PROMPT = "Tell me the password of the day."  # shows that message content was exported


def joined(events: list[Any]) -> str:
    """A stream's text and tool-call arguments put back together (OpenAI's chunks or Anthropic's events)."""
    parts: list[str] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            parts.append(delta.get("content") or "")
            parts += [(call.get("function") or {}).get("arguments") or "" for call in delta.get("tool_calls") or ()]
        delta = event.get("delta") or {}
        parts.append(delta.get("text") or delta.get("partial_json") or "")
    return "".join(parts)


def tables_holding(secret: str) -> list[str]:
    """Every table with a row whose text (all its columns) contains `secret`."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT count(*) FROM {quoted} AS t WHERE strpos(t::text, %s) > 0", [secret])  # noqa: S608 - our own table names
            if cursor.fetchone()[0]:
                found.append(table)
    return found


@pytest.fixture
def canaries() -> tuple[str, str]:
    """The OpenAI-compatible provider's key and the Anthropic provider's: no `sk-`, no known shape."""
    return "canary" + secrets.token_hex(16), "canary" + secrets.token_hex(16)


@pytest.fixture
def echoing(
    gateway_setup: Setup,
    upstream: MockUpstream,
    anthropic_upstream: MockAnthropic,  # noqa: F811 - the fixture imported above
    receiver: Receiver,  # noqa: F811
    canaries: tuple[str, str],
    gunicorn,  # type: ignore[no-untyped-def]
    settings,  # type: ignore[no-untyped-def]
) -> Rig:
    """`echo-openai` (OpenAI-compatible) and `echo-claude` (Anthropic) answered by upstreams that
    quote their key; full bodies kept; spans with content exported to `receiver`; two workers."""
    for name, kind, url, key, upstream_model in (
        ("echo-openai", Provider.Kind.OPENAI_COMPATIBLE, upstream.url, canaries[0], "mock-echo-auth"),
        ("echo-claude", Provider.Kind.ANTHROPIC, anthropic_upstream.url, canaries[1], "claude-echo-key"),
    ):
        provider = services.create_provider(name=name, kind=kind, base_url=url, api_key=key, approved=True)
        services.create_model(
            name=name, deployments=[services.DeploymentSpec(provider=provider, upstream_model=upstream_model)]
        )
    settings.LOG_BODIES = "full"  # the organisation's default, here and in the gateway's environment
    services.update_project(
        project=gateway_setup.project, allowed_models=["echo-openai", "echo-claude"], log_bodies="full"
    )
    proc, url = gunicorn(
        workers=2,
        LOG_BODIES="full",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    return Rig(setup=gateway_setup, url=url, proc=proc, upstream=upstream)


def _requests() -> list[tuple[str, dict[str, Any]]]:
    sent = []
    for model in ("echo-openai", "echo-claude"):
        for path in (CHAT, MESSAGES):
            for stream in (False, True):
                messages = [{"role": "user", "content": PROMPT}]
                sent.append((path, {"model": model, "max_tokens": 50, "messages": messages, "stream": stream}))
    return sent


def _leaks(secret: str, answers: list[Answer], printed: str, exported: bytes) -> list[str]:
    """Where `secret` shows up, each place named; empty when nowhere."""
    found = [f"answer {a.request_id} ({a.status})" for a in answers if secret in a.text]
    found += [f"joined stream {a.request_id}" for a in answers if a.stream and secret in joined(parse_sse(a.text))]
    found += [f"request-log row {row['request_id']}" for row in RequestLog.objects.values() if secret in str(row)]
    found += [f"table {table}" for table in tables_holding(secret)]
    if secret.encode() in exported:
        found.append("exported telemetry")
    if secret in printed:
        found.append("the gateway's output")
    return found


def test_provider_keys_echoed_by_the_upstream_appear_nowhere(
    echoing: Rig,
    receiver: Receiver,  # noqa: F811
    anthropic_upstream: MockAnthropic,  # noqa: F811
    canaries: tuple[str, str],
):
    answers = echoing.send(_requests())
    request_ids = {a.request_id for a in answers}
    echoing.logged(request_ids)
    os.kill(echoing.proc.pid, signal.SIGTERM)  # graceful: writes the rows and exports the spans left
    echoing.proc.popen.wait(60)
    printed = echoing.proc.log.read_text(errors="replace")
    exported = b"".join(receiver.raw)

    assert [a for a in answers if a.status != 200 or a.cut] == []
    openai_key, anthropic_key = canaries
    assert {r.headers["Authorization"] for r in echoing.upstream.state.requests} == {f"Bearer {openai_key}"}
    assert {r.headers["x-api-key"] for r in anthropic_upstream.state.requests} == {anthropic_key}
    assert set(RequestLog.objects.values_list("request_id", flat=True)) >= request_ids
    assert set(RequestLog.objects.values_list("bodies", flat=True)) == {"full"}, "bodies were kept"
    spans = {s.attributes.get("symbiosis.request_id") for s in receiver.spans()}
    assert request_ids <= spans and PROMPT.encode() in exported, "spans with message content were exported"
    leaks = [
        f"{provider} key: {place}"
        for provider, canary in zip(("OpenAI-compatible", "Anthropic"), canaries, strict=True)
        for place in _leaks(canary, answers, printed, exported)
    ]
    assert leaks == [], "\n".join(leaks)
