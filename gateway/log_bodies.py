"""What a request-log row keeps of a request's and a response's bodies, by policy.

`full` keeps them as JSON, `redacted` keeps them with PII and secrets replaced by placeholders
(the guardrail detectors), `metadata` keeps nothing. Each body is capped at LOG_BODY_MAX_BYTES,
with a visible marker saying how much was cut. This runs in the log writer's thread, never on
the response path: the proxy hands over references to what it already parsed.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings

from gateway import guardrails
from gateway.models import LOG_BODIES_STRICTNESS, LogBodies

_REDACT = frozenset({"pii", "secrets"})


def effective(project_policy: str) -> str:
    """The stricter of the organisation's default (LOG_BODIES) and the project's own choice."""
    default = settings.LOG_BODIES
    if not project_policy:
        return default
    return max(project_policy, default, key=LOG_BODIES_STRICTNESS.index)


def render(policy: str, request: Any, response: Any) -> dict[str, Any]:
    """The row's body fields for one request."""
    if policy == LogBodies.METADATA or (request is None and response is None):
        return {"bodies": LogBodies.METADATA, "request_body": "", "response_body": "", "bodies_truncated": False}
    request_text, request_cut = _capped(_text(request, policy))
    response_text, response_cut = _capped(_text(response, policy))
    return {
        "bodies": policy,
        "request_body": request_text,
        "response_body": response_text,
        "bodies_truncated": request_cut or response_cut,
    }


def _text(value: Any, policy: str) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
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
