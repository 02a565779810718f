"""OpenTelemetry for the gateway: traces and metrics over OTLP/HTTP, an optional Prometheus endpoint.

Off unless configured: `configure_from_settings()` (called by gateway/asgi.py and the Celery
worker at start-up) turns each signal on when its standard `OTEL_EXPORTER_OTLP_*ENDPOINT` is set
(and `OTEL_SDK_DISABLED` is not), and the metrics for Prometheus when `METRICS_TOKEN` is set.
Tests call `configure(...)` and `shutdown()` directly.

The /v1 hot path pays one boolean check when telemetry is off (`telemetry.enabled`). When it is
on, `record_request()` appends the finished request's record to a bounded queue and returns; a
worker thread builds the spans (one SERVER span for the /v1 request, one CLIENT span per upstream
attempt, with explicit start and end times, following the GenAI semantic conventions) and
records the metrics (gateway/telemetry/genai.py). The exporters run in the SDK's own threads: a
collector that is down or slow never slows a request. What is lost on the way (our queue full,
the SDK's span queue full, exports that failed) is counted in `symbiosis.telemetry.dropped` and
warned about at most once a minute.

The proxy's upstream client (aiohttp) is deliberately not auto-instrumented: the CLIENT spans
built here replace its spans and cost nothing on the request path. Django's stack (portal, admin,
management API) and httpx (provider health probes) use the contrib instrumentations.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.telemetry.logs import request_id

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from gateway.telemetry.request import FinishedRequest

__all__ = [
    "configure",
    "configure_from_settings",
    "count_guardrail_verdict",
    "dropped",
    "enabled",
    "flush",
    "record_request",
    "request_id",
    "set_budget_utilisation",
    "shutdown",
]

logger = logging.getLogger(__name__)

enabled = False  # read on the hot path: anything to record at all
DROP_WARNING_INTERVAL = 60.0  # seconds between two warnings about lost telemetry


@dataclass
class _State:
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    metric_reader: Any = None  # the OTLP one (flushing the Prometheus reader would repeat its series)
    tracer: Any = None  # None: traces are off
    instruments: Any = None  # genai.Instruments; None: metrics are off
    capture_content: bool = False
    queue_max: int = 10_000
    prometheus_registry: Any = None
    instrumented: list[Any] = field(default_factory=list)
    worker: threading.Thread | None = None
    stopping: bool = False


_state = _State()
_queue: collections.deque[Any] = collections.deque()
_wake = threading.Event()
_lock = threading.Lock()  # configure / shutdown
_dropped: collections.Counter[str] = collections.Counter()  # reason -> items lost since start
_budget_utilisation: dict[tuple[str, int], float] = {}


# --- what the rest of the gateway calls ---


def record_request(record: FinishedRequest) -> None:
    """Hand a finished /v1 request (its frozen record, gateway/proxy/record.py) to the telemetry
    worker; returns at once. Callers check `telemetry.enabled` first."""
    if len(_queue) >= _state.queue_max:
        _dropped["record_queue_full"] += 1
        return
    _queue.append(record)


def count_guardrail_verdict(*, check: str, action: str, where: str) -> None:
    """Count one guardrail verdict: which check, what it did (allow, redact, block, ...), on the
    request or the response (`where`)."""
    instruments = _state.instruments
    if instruments is not None:
        instruments.guardrail_verdicts.add(
            1,
            {
                "symbiosis.guardrail.check": check,
                "symbiosis.guardrail.action": action,
                "symbiosis.guardrail.where": where,
            },
        )


def set_budget_utilisation(*, scope: str, owner_id: int, ratio: float) -> None:
    """The share of a budget spent this month (1.0 = all of it), reported by the gauge
    `symbiosis.budget.utilization`. `scope` is project, key or business_unit; `owner_id` its id."""
    if enabled:
        _budget_utilisation[(scope, owner_id)] = float(ratio)


def dropped() -> dict[str, int]:
    """Telemetry items lost since the process started, by reason."""
    return dict(_dropped)


# --- configuration ---


def configure_from_settings() -> None:
    """Configure from the settings (which read the standard OTEL_* variables; see README, Monitoring)."""
    from django.conf import settings

    traces, metrics, prometheus = settings.TELEMETRY_TRACES, settings.TELEMETRY_METRICS, bool(settings.METRICS_TOKEN)
    if not (traces or metrics or prometheus):
        return
    configure(
        traces=traces,
        metrics=metrics,
        prometheus=prometheus,
        service_name=settings.OTEL_SERVICE_NAME,
        capture_content=settings.TELEMETRY_CAPTURE_CONTENT,
        queue_max=settings.TELEMETRY_QUEUE_MAX,
        instrument_libraries=True,
        set_global=True,
    )


def configure(
    *,
    endpoint: str | None = None,
    traces: bool = True,
    metrics: bool = True,
    prometheus: bool = False,
    service_name: str = "symbiosis-gateway",
    capture_content: bool = False,
    queue_max: int = 10_000,
    metric_interval: float | None = None,
    export_timeout: float | None = None,
    span_queue_size: int | None = None,
    instrument_libraries: bool = False,
    set_global: bool = False,
) -> None:
    """Start exporting. `endpoint` is an OTLP/HTTP base URL (`/v1/traces` and `/v1/metrics` are
    appended); None leaves the exporters to the OTEL_EXPORTER_OTLP_* variables. `instrument_libraries`
    turns on the Django and httpx instrumentations; `set_global` makes the providers OpenTelemetry's
    global ones (what a process does once, at start-up). Configuring again replaces the previous setup."""
    global enabled
    from opentelemetry.sdk.resources import Resource

    from gateway.telemetry import genai

    with _lock:
        _shutdown_locked(timeout=5.0)
        resource = Resource.create({"service.name": service_name})
        state = _State(capture_content=capture_content, queue_max=queue_max)
        if metrics or prometheus:
            state.meter_provider, state.metric_reader, state.prometheus_registry = _meter_provider(
                resource, endpoint if metrics else None, metrics, prometheus, metric_interval, export_timeout
            )
            state.instruments = genai.Instruments(
                state.meter_provider.get_meter("symbiosis.gateway"), _observe_dropped, _observe_budgets
            )
        if traces:
            state.tracer_provider = _tracer_provider(resource, endpoint, export_timeout, span_queue_size)
            state.tracer = state.tracer_provider.get_tracer("symbiosis.gateway")
        if set_global:
            from opentelemetry import metrics as otel_metrics
            from opentelemetry import trace as otel_trace

            if state.tracer_provider is not None:
                otel_trace.set_tracer_provider(state.tracer_provider)
            if state.meter_provider is not None:
                otel_metrics.set_meter_provider(state.meter_provider)
        if instrument_libraries:
            state.instrumented = _instrument_libraries(state)
        state.worker = threading.Thread(target=_work, args=(state,), name="telemetry", daemon=True)
        globals()["_state"] = state
        state.worker.start()
        enabled = True


def _tracer_provider(
    resource: Any, endpoint: str | None, timeout: float | None, queue_size: int | None
) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    from gateway.telemetry.export import CountingSpanExporter, CountingSpanProcessor

    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None, timeout=timeout)
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    counting = CountingSpanExporter(exporter, _dropped)
    provider.add_span_processor(CountingSpanProcessor(counting, _dropped, max_queue_size=queue_size))
    return provider


def _meter_provider(
    resource: Any,
    endpoint: str | None,
    otlp: bool,
    prometheus: bool,
    interval: float | None,
    timeout: float | None,
) -> tuple[MeterProvider, Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from gateway.telemetry.export import CountingMetricExporter

    readers: list[Any] = []
    registry = otlp_reader = None
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(
            endpoint=f"{endpoint.rstrip('/')}/v1/metrics" if endpoint else None, timeout=timeout
        )
        otlp_reader = PeriodicExportingMetricReader(
            CountingMetricExporter(exporter, _dropped),
            export_interval_millis=interval * 1000 if interval else None,
        )
        readers.append(otlp_reader)
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
    return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False), otlp_reader, registry


def _instrument_libraries(state: _State) -> list[Any]:
    """Django's stack (not /v1: it has its own handler) and httpx (provider health probes)."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    done = []
    for instrumentor in (DjangoInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=state.tracer_provider, meter_provider=state.meter_provider)
            done.append(instrumentor)
    _probes_first()
    return done


def _probes_first() -> None:
    """The instrumentation put its middleware first, and it reads the Host header (building the
    request's URL): a Kubernetes probe by pod IP would get 400. The probes' middleware goes back in
    front (gateway/probe_middleware.py), so probes are answered, and not traced (they would be most
    of the spans)."""
    from django.conf import settings

    probes = "gateway.probe_middleware.HealthProbes"
    if probes in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [probes, *(name for name in settings.MIDDLEWARE if name != probes)]


def flush(timeout: float = 10.0) -> bool:
    """Process every queued request and export what the SDK holds. False when it took too long."""
    state = _state
    if state.worker is None:
        return True
    marker = threading.Event()
    _queue.append(marker)
    _wake.set()
    done = marker.wait(timeout)
    if state.tracer_provider is not None:
        done = state.tracer_provider.force_flush(int(timeout * 1000)) and done
    if state.metric_reader is not None:
        done = state.metric_reader.force_flush(int(timeout * 1000)) and done
    return done


def shutdown(timeout: float = 5.0) -> None:
    """Export what is left (within `timeout`) and stop; telemetry is off afterwards."""
    with _lock:
        _shutdown_locked(timeout)


def _shutdown_locked(timeout: float) -> None:
    global enabled, _state
    state = _state
    if state.worker is None:
        return
    enabled = False
    flush(timeout)
    state.stopping = True
    _wake.set()
    state.worker.join(timeout)
    for instrumentor in state.instrumented:
        instrumentor.uninstrument()
    if state.tracer_provider is not None:
        state.tracer_provider.shutdown()
    if state.meter_provider is not None:
        state.meter_provider.shutdown(timeout_millis=timeout * 1000)
    _budget_utilisation.clear()
    _state = _State()


# --- the worker ---


def _work(state: _State) -> None:
    from gateway.telemetry import genai

    warned_at, warned_total = 0.0, 0
    while not state.stopping:
        _wake.wait(0.05)  # a request's objects live this long at most after it ended
        _wake.clear()
        while _queue and _state is state:
            item = _queue.popleft()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                genai.record(state.tracer, state.instruments, item, capture_content=state.capture_content)
            except Exception as exc:  # telemetry never takes the gateway down
                logger.warning("telemetry: could not record a request (%s)", type(exc).__name__)
        total = sum(_dropped.values())
        if total != warned_total and time.monotonic() - warned_at >= DROP_WARNING_INTERVAL:
            logger.warning(
                "telemetry: %d items lost since start (%s); is the OpenTelemetry collector reachable?",
                total,
                ", ".join(f"{reason}: {count}" for reason, count in sorted(_dropped.items())),
            )
            warned_at, warned_total = time.monotonic(), total


def _restart_worker_after_fork() -> None:
    """A process forked after configuring (gunicorn --preload, Celery's prefork pool) has no worker
    thread: start its own. The SDK's exporters restart theirs the same way."""
    state = _state
    if state.worker is not None and not state.stopping:
        _queue.clear()
        state.worker = threading.Thread(target=_work, args=(state,), name="telemetry", daemon=True)
        state.worker.start()


os.register_at_fork(after_in_child=_restart_worker_after_fork)


def _observe_dropped() -> list[tuple[int, dict[str, str]]]:
    return [(count, {"reason": reason}) for reason, count in list(_dropped.items())]


_BUDGET_OWNER = {
    "project": "symbiosis.project.id",
    "key": "symbiosis.key.id",
    "business_unit": "symbiosis.business_unit.id",
}


def _observe_budgets() -> list[tuple[float, dict[str, Any]]]:
    return [
        (ratio, {"symbiosis.budget.scope": scope, _BUDGET_OWNER.get(scope, "symbiosis.budget.owner.id"): owner})
        for (scope, owner), ratio in list(_budget_utilisation.items())
    ]


def prometheus_registry() -> Any:
    """The registry the /metrics endpoint renders, or None when Prometheus is not configured."""
    return _state.prometheus_registry
