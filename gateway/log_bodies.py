"""What a request-log row keeps of a request's and a response's bodies, by policy.

`full` keeps them as JSON, `redacted` keeps them with PII and secrets replaced by placeholders
(the guardrail detectors), `metadata` keeps nothing. Each body is capped at LOG_BODY_MAX_BYTES,
with a visible marker saying how much was cut. Whatever the policy, every secret the gateway
knows (gateway/scrub.py) is replaced, and the text is made storable whatever it holds (deep
nesting, NUL characters: gateway/writable.py). This runs in the log writer's thread, never on
the response path: the proxy hands over references to what it already parsed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from gateway import guardrails, scrub, writable
from gateway.models import LOG_BODIES_STRICTNESS, LogBodies

_REDACT = frozenset({"pii", "secrets"})


def effective(project_policy: str) -> str:
    """The stricter of the organisation's default (LOG_BODIES) and the project's own choice."""
    default = settings.LOG_BODIES
    if not project_policy:
        return default
    return max(project_policy, default, key=LOG_BODIES_STRICTNESS.index)


def render(policy: str, request: Any, response: Any, secrets: scrub.Secrets | None = None) -> dict[str, Any]:
    """The row's body fields for one request (`secrets`: what to scrub, by default every known one)."""
    if policy == LogBodies.METADATA or (request is None and response is None):
        return {"bodies": LogBodies.METADATA, "request_body": "", "response_body": "", "bodies_truncated": False}
    secrets = scrub.current() if secrets is None else secrets
    request_text, request_cut = _capped(secrets.text(_text(request, policy)))
    response_text, response_cut = _capped(secrets.text(_text(response, policy)))
    return {
        "bodies": policy,
        "request_body": request_text,
        "response_body": response_text,
        "bodies_truncated": request_cut or response_cut,
    }


def _text(value: Any, policy: str) -> str:
    if value is None:
        return ""
    text = writable.json_text(value)
    if policy == LogBodies.REDACTED:
        text, _ = guardrails.redact(text, guardrails.scan(text, _REDACT))
    return text


def _capped(text: str) -> tuple[str, bool]:
    limit = settings.LOG_BODY_MAX_BYTES
    data = text.encode()
    if len(data) <= limit:
        return text, False
    kept = data[:limit].decode(errors="ignore")
    return f"{kept}…[truncated: {len(data) - len(kept.encode())} more bytes]", True
