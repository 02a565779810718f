"""The frozen record of one finished /v1 request: what the log writer stores and telemetry exports.

The pipeline builds it once, at the end (`Exchange.finish()`), from the stages' results; nothing
changes it afterwards, so the log writer's thread and the telemetry worker can read it while the
event loop goes on. `log_row()` is the request-log row (and, through billing, the ledger debit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway import scrub, writable
from gateway.proxy.router import Attempt
from gateway.proxy.stages.usage import Usage
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot


@dataclass(frozen=True, slots=True)
class Route:
    """Where the request went: the model and deployment that answered (none when nothing did), the
    deployment whose bill it carries, every failed attempt before, and when the answering call
    started and answered (time.monotonic(); a stream: its first chunk)."""

    model: ModelSnapshot | None
    deployment: DeploymentSnapshot | None
    charged: DeploymentSnapshot | None
    attempts: tuple[Attempt, ...]
    started: float
    answered: float


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    endpoint: str  # "chat/completions", "messages", ...
    method: str
    user_agent: str
    traceparent: str | None  # the client's W3C trace context, so telemetry's spans join its trace
    created_at: datetime
    started: float  # time.monotonic()
    ended: float
    first_token_at: float | None
    key: KeySnapshot | None
    model: str  # the model the client asked for
    stream: bool
    route: Route | None  # None: the request never reached routing
    status_code: int
    error_code: str
    usage: Usage
    cost: Decimal | None
    verdicts: tuple[dict[str, Any], ...]
    request_payload: Any  # the parsed body (rendered by the log policy off the response path)
    response_payload: Any  # a non-streamed answer as sent
    output_text: str  # the text the upstream produced (a stream's, reassembled)
    delivered: str | None  # the answer as the output guardrails released it (None: not screened)
    response_model: str  # the model the upstream says answered
    finish_reasons: tuple[str, ...]
    presented: str = field(default="", repr=False)  # the key the client sent: scrubbed from what is logged

    @property
    def routed(self) -> Route | None:  # telemetry's name for it
        return self.route

    def logged_response(self) -> Any:
        """The answer as the log keeps it: as sent, or a stream's text as released or reassembled."""
        if self.response_payload is not None:
            return self.response_payload
        if self.stream and self.delivered is not None:
            return {"stream": True, "content": self.delivered}
        if self.stream and self.output_text:
            return {"stream": True, "content": self.output_text}
        return None

    def log_row(self) -> dict[str, Any]:
        """The request-log row (gateway.services.record_request_logs) with what the ledger debit
        needs besides (billing.services.record_usage: `business_unit_id`)."""
        key, route, usage = self.key, self.route, self.usage
        charged = route.charged if route is not None else None
        return {
            "request_id": self.request_id,
            "created_at": self.created_at,
            "endpoint": self.endpoint,
            "key_id": key.id if key else None,
            "key_prefix": key.prefix if key else "",
            "project_id": key.project_id if key else None,
            "business_unit_id": key.business_unit_id if key else None,  # for the ledger only
            "member_id": key.created_by_id if key else None,
            "model": writable.text(self.model, 128),
            "answered_model": route.model.name if route is not None and route.model else "",
            "deployment_id": charged.id if charged else None,
            "provider": charged.provider_name if charged else "",
            "attempts": [
                {
                    "model": a.model,
                    "deployment": a.deployment_id,
                    "provider": a.provider,
                    "status": a.status,
                    "error": writable.text(a.error_code, 60) if a.error_code else a.error_code,
                    "latency_ms": a.latency_ms,
                }
                for a in (route.attempts if route is not None else ())
            ],
            "status_code": self.status_code,
            "error_code": writable.text(self.error_code, 60),
            "stream": self.stream,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "usage_estimated": usage.estimated,
            "cost": self.cost,
            "latency_ms": round((self.ended - self.started) * 1000, 2),
            "ttft_ms": round((self.first_token_at - self.started) * 1000, 2) if self.first_token_at else None,
            "user_agent": writable.text(self.user_agent, 300),
            "bodies": (
                key.log_bodies if key else "metadata",
                self.request_payload,
                self.logged_response(),
                scrub.current().plus(self.presented if key else None),  # a valid key only
            ),
            "guardrails": list(self.verdicts),
        }
