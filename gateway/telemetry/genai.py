"""Spans and metrics for one finished /v1 request, after the OpenTelemetry GenAI semantic conventions.

Runs in the telemetry worker thread (gateway/telemetry/__init__.py), never on the request path,
from the frozen record of the request (gateway/proxy/record.py, read through the protocols of
gateway/telemetry/request.py). Times come from the record's monotonic clock, anchored to its
wall-clock start.

Spans:
- `POST /v1/chat/completions` (SERVER): the client's request to the gateway. `gen_ai.request.model`
  is the public model asked for, `gen_ai.response.model` the public model that answered.
- `chat upstream-model` (CLIENT), one per upstream attempt, children of the SERVER span: each failed
  attempt (status ERROR, `error.type`) and the call that answered (tokens, finish reasons, the
  upstream's own `gen_ai.response.model`). A stream's call lasts until its last chunk.
Both carry `symbiosis.request_id`, `symbiosis.project.id`, `symbiosis.business_unit.id` and
`symbiosis.key.prefix`. Prompt and completion (`gen_ai.input.messages`, `gen_ai.output.messages`,
`gen_ai.system_instructions`, JSON strings) only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT.

`gen_ai.provider.name` is `openai`, `azure.ai.openai` or `anthropic` by provider kind; self-hosted
OpenAI-compatible servers speak OpenAI's API and report `openai` (`symbiosis.provider.kind` says
`openai_compatible`, `server.address` where it runs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import scrub
from gateway.telemetry.request import FinishedRequest, UsageLike

OPERATIONS = {"chat/completions": "chat", "messages": "chat", "embeddings": "embeddings"}
PROVIDERS = {
    "openai": "openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "openai_compatible": "openai",
    "demo": "symbiosis.demo",
}
OTHER = "_OTHER"  # a model name that was never resolved: not a metric attribute (unbounded)
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
_propagator = TraceContextTextMapPropagator()


class Instruments:
    def __init__(
        self,
        meter: Meter,
        observe_dropped: Callable[[], list[tuple[int, dict[str, str]]]],
        observe_budgets: Callable[[], list[tuple[float, dict[str, Any]]]],
    ) -> None:
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_to_first_token = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time from the request's arrival to its first streamed token, as the gateway serves it.",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
        )
        self.requests = meter.create_counter(
            "symbiosis.gateway.requests",
            unit="{request}",
            description="Requests to /v1, by project, model and status.",
        )
        self.cost = meter.create_counter(
            "symbiosis.gateway.cost",
            unit="{currency}",
            description="What requests cost at the deployments' prices, in symbiosis.currency.",
        )
        self.guardrail_verdicts = meter.create_counter(
            "symbiosis.guardrail.verdicts",
            unit="{verdict}",
            description="Guardrail verdicts, by check, action and where (request or response).",
        )
        meter.create_observable_gauge(
            "symbiosis.budget.utilization",
            callbacks=[_observer(observe_budgets)],
            unit="1",
            description="Share of a budget spent this month (1 = all of it).",
        )
        meter.create_observable_counter(
            "symbiosis.telemetry.dropped",
            callbacks=[_observer(observe_dropped)],
            unit="{item}",
            description="Telemetry lost on the way: queues full, exports failed.",
        )


def _observer(read: Callable[[], list[tuple[Any, dict[str, Any]]]]) -> Callable[[CallbackOptions], list[Observation]]:
    def observe(options: CallbackOptions) -> list[Observation]:
        return [Observation(value, attributes) for value, attributes in read()]

    return observe


@functools.lru_cache(maxsize=256)
def server_of(base_url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(base_url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return "", None
    return parts.hostname or "", port


def record(tracer: Any, instruments: Instruments | None, t: FinishedRequest, *, capture_content: bool) -> None:
    """Build the spans (when `tracer`) and record the metrics (when `instruments`) of one request."""
    usage, ended = t.usage, t.ended
    key = t.key
    routed = t.routed
    common: dict[str, Any] = {"symbiosis.request_id": t.request_id}
    if key is not None:
        common["symbiosis.project.id"] = key.project_id
        common["symbiosis.business_unit.id"] = key.business_unit_id
        common["symbiosis.key.prefix"] = key.prefix
    public_model = t.model if routed is not None else OTHER  # resolved models only: bounded cardinality
    answered_model = routed.model.name if routed is not None and routed.model is not None else ""
    operation = OPERATIONS.get(t.endpoint)
    if tracer is not None:
        _spans(tracer, t, usage, ended, operation, answered_model, common, capture_content)
    if instruments is not None:
        _metrics(instruments, t, usage, ended, operation, public_model, answered_model, common)


def _spans(
    tracer: Any,
    t: FinishedRequest,
    usage: UsageLike,
    ended: float,
    operation: str | None,
    answered_model: str,
    common: dict[str, Any],
    capture_content: bool,
) -> None:
    routed = t.routed
    deployment = routed.deployment if routed is not None else None
    failed = bool(t.error_code)
    finish_reasons = list(t.finish_reasons) or _finish_reasons(t.response_payload)
    anchor = int(t.created_at.timestamp() * 1e9) - int(t.started * 1e9)  # monotonic -> epoch ns

    def ns(monotonic: float) -> int:
        return anchor + int(monotonic * 1e9)

    server = {
        **common,
        "http.request.method": t.method,
        "http.route": f"/v1/{t.endpoint}",
        "http.response.status_code": t.status_code,
        "symbiosis.stream": t.stream,
    }
    if operation:
        server["gen_ai.operation.name"] = operation
        if t.model:
            server["gen_ai.request.model"] = t.model
        if answered_model:
            server["gen_ai.response.model"] = answered_model
        if deployment is not None:
            server["gen_ai.usage.input_tokens"] = usage.input_tokens
            server["gen_ai.usage.output_tokens"] = usage.output_tokens
            server["symbiosis.usage.estimated"] = usage.estimated
        if finish_reasons:
            server["gen_ai.response.finish_reasons"] = finish_reasons
    if t.cost is not None:
        server["symbiosis.cost"] = float(t.cost)
    if failed:
        server["error.type"] = t.error_code
    parent = _propagator.extract({"traceparent": t.traceparent}) if t.traceparent else None
    span = tracer.start_span(
        f"{t.method} /v1/{t.endpoint}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes=_scrubbed(server),
        start_time=ns(t.started),
    )
    if not span.is_recording():  # not sampled (OTEL_TRACES_SAMPLER): neither are its children
        return
    if t.status_code >= 500:
        span.set_status(Status(StatusCode.ERROR))
    inside = trace.set_span_in_context(span)
    for attempt in routed.attempts if routed is not None else ():
        client = {
            **common,
            **_upstream(operation, attempt.provider_kind, attempt.upstream_model, attempt.base_url),
            "symbiosis.provider.name": attempt.provider,
            "symbiosis.deployment.id": attempt.deployment_id,
            "symbiosis.model": attempt.model,
            "error.type": attempt.error_code or (str(attempt.status) if attempt.status else "error"),
        }
        if attempt.status:
            client["http.response.status_code"] = attempt.status
        call = tracer.start_span(
            _client_name(operation, attempt.upstream_model),
            context=inside,
            kind=SpanKind.CLIENT,
            attributes=_scrubbed(client),
            start_time=ns(attempt.started),
        )
        call.set_status(Status(StatusCode.ERROR))
        call.end(end_time=ns(attempt.ended))
    if deployment is not None:
        client = {
            **common,
            **_upstream(operation, deployment.provider_kind, deployment.upstream_model, deployment.base_url),
            "symbiosis.provider.name": deployment.provider_name,
            "symbiosis.deployment.id": deployment.id,
            "symbiosis.model": answered_model,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "symbiosis.usage.estimated": usage.estimated,
        }
        if t.response_model:
            client["gen_ai.response.model"] = t.response_model
        if finish_reasons:
            client["gen_ai.response.finish_reasons"] = finish_reasons
        client.update(_request_options(t.request_payload))
        if isinstance(t.response_payload, dict) and isinstance(t.response_payload.get("id"), str):
            client["gen_ai.response.id"] = t.response_payload["id"]
        if failed and t.status_code >= 500:  # the answering upstream broke mid-stream or timed out
            client["error.type"] = t.error_code
        if capture_content:
            client.update(_content(t, finish_reasons))
        call = tracer.start_span(
            _client_name(operation, deployment.upstream_model),
            context=inside,
            kind=SpanKind.CLIENT,
            attributes=_scrubbed(client),
            start_time=ns(routed.started),
        )
        if "error.type" in client:
            call.set_status(Status(StatusCode.ERROR))
        call.end(end_time=ns(ended if t.stream else routed.answered))
    span.end(end_time=ns(ended))


def _scrubbed(attributes: dict[str, Any]) -> dict[str, Any]:
    """Span attributes with every known secret replaced (gateway/scrub.py): an upstream's model
    name, ids, finish reasons and, when captured, the messages are the upstream's to choose."""
    secrets = scrub.current()
    for name, value in attributes.items():
        if isinstance(value, str):
            attributes[name] = secrets.text(value)
        elif isinstance(value, list | tuple) and value and isinstance(value[0], str):
            attributes[name] = [secrets.text(v) if isinstance(v, str) else v for v in value]
    return attributes


def _metrics(
    instruments: Instruments,
    t: FinishedRequest,
    usage: UsageLike,
    ended: float,
    operation: str | None,
    public_model: str,
    answered_model: str,
    common: dict[str, Any],
) -> None:
    project = {"symbiosis.project.id": common["symbiosis.project.id"]} if "symbiosis.project.id" in common else {}
    counted = {**project, "gen_ai.request.model": public_model, "http.response.status_code": t.status_code}
    if operation:
        counted["gen_ai.operation.name"] = operation
    if t.error_code:
        counted["error.type"] = t.error_code
    instruments.requests.add(1, counted)
    if t.cost is not None:
        model = answered_model or public_model
        instruments.cost.add(float(t.cost), {**project, "symbiosis.model": model, "symbiosis.currency": _currency()})
    if not operation:
        return
    if t.stream and t.first_token_at is not None:
        instruments.time_to_first_token.record(
            t.first_token_at - t.started,
            {**project, "gen_ai.operation.name": operation, "gen_ai.request.model": public_model},
        )
    routed = t.routed
    if routed is None:
        return
    for attempt in routed.attempts:
        attributes = {
            **project,
            **_upstream(operation, attempt.provider_kind, attempt.upstream_model, attempt.base_url),
            "symbiosis.model": attempt.model,
            "error.type": attempt.error_code or (str(attempt.status) if attempt.status else "error"),
        }
        instruments.operation_duration.record(attempt.ended - attempt.started, attributes)
    deployment = routed.deployment
    if deployment is None:
        return
    attributes = {
        **project,
        **_upstream(operation, deployment.provider_kind, deployment.upstream_model, deployment.base_url),
        "symbiosis.model": answered_model,
    }
    if t.response_model:
        attributes["gen_ai.response.model"] = scrub.text(t.response_model)
    if t.error_code and t.status_code >= 500:
        attributes["error.type"] = t.error_code
    instruments.operation_duration.record((ended if t.stream else routed.answered) - routed.started, attributes)
    if not usage.estimated:  # the conventions: report the upstream's counts, never a guess
        instruments.token_usage.record(usage.input_tokens, {**attributes, "gen_ai.token.type": "input"})
        instruments.token_usage.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})


def _currency() -> str:
    from django.conf import settings

    return settings.BILLING_CURRENCY


def _client_name(operation: str | None, upstream_model: str) -> str:
    return f"{operation or 'call'} {upstream_model}".strip()


def _upstream(operation: str | None, kind: str, upstream_model: str, base_url: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation or "chat",
        "gen_ai.provider.name": PROVIDERS.get(kind, kind or OTHER),
        "gen_ai.request.model": upstream_model,
        "symbiosis.provider.kind": kind,
    }
    host, port = server_of(base_url)
    if host:
        attributes["server.address"] = host
        if port:
            attributes["server.port"] = port
    return attributes


_OPTIONS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}


def _request_options(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    options = {}
    for name, attribute in _OPTIONS.items():
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            options[attribute] = value
    if isinstance(body.get("n"), int) and body["n"] != 1:
        options["gen_ai.request.choice.count"] = body["n"]
    return options


def _finish_reasons(reply: Any) -> list[str]:
    """From a non-streamed answer: OpenAI's choices, or Anthropic's stop_reason."""
    if not isinstance(reply, dict):
        return []
    if isinstance(reply.get("stop_reason"), str):
        return [reply["stop_reason"]]
    choices = reply.get("choices") if isinstance(reply.get("choices"), list) else []
    return [c["finish_reason"] for c in choices if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]


# --- content (opt-in) ---


def _content(t: FinishedRequest, finish_reasons: list[str]) -> dict[str, str]:
    body = t.request_payload if isinstance(t.request_payload, dict) else {}
    content: dict[str, str] = {}
    messages = body.get("messages")
    if isinstance(messages, list):
        content["gen_ai.input.messages"] = _json([_message(m) for m in messages if isinstance(m, dict)])
    elif "input" in body:  # embeddings
        content["gen_ai.input.messages"] = _json([{"role": "user", "parts": _parts(body["input"])}])
    if body.get("system"):
        content["gen_ai.system_instructions"] = _json(_parts(body["system"]))
    output = _output(t, finish_reasons)
    if output:
        content["gen_ai.output.messages"] = _json(output)
    return content


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {"role": message.get("role"), "parts": _parts(message.get("content"))}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append({"type": "text", "content": block})
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append({"type": "text", "content": block["text"]})
            elif isinstance(block, dict):
                parts.append({"type": str(block.get("type") or "unknown")})
        return parts
    return []


def _output(t: FinishedRequest, finish_reasons: list[str]) -> list[dict[str, Any]]:
    reply = t.response_payload
    if isinstance(reply, dict) and isinstance(reply.get("choices"), list):
        return [
            {
                "role": "assistant",
                "parts": _parts((c.get("message") or {}).get("content")),
                "finish_reason": c.get("finish_reason"),
            }
            for c in reply["choices"]
            if isinstance(c, dict)
        ]
    if isinstance(reply, dict) and isinstance(reply.get("content"), list):  # Anthropic Messages
        return [{"role": "assistant", "parts": _parts(reply["content"]), "finish_reason": reply.get("stop_reason")}]
    if t.output_text:  # a stream
        parts = [{"type": "text", "content": t.output_text}]
        return [{"role": "assistant", "parts": parts, "finish_reason": next(iter(finish_reasons), None)}]
    return []


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
