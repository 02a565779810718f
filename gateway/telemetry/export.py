"""The SDK's batching and exporting, with what gets lost counted (`symbiosis.telemetry.dropped`).

Spans are batched by the SDK's BatchSpanProcessor, whose queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`,
2048 by default) and drops the oldest span when full; the exporters run in the SDK's threads and
give up after `OTEL_EXPORTER_OTLP_TIMEOUT` (10 s). These wrappers only count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class CountingSpanExporter(SpanExporter):
    def __init__(self, exporter: SpanExporter, dropped: Counter[str]) -> None:
        self._exporter = exporter
        self._dropped = dropped

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._dropped["span_export_failed"] += len(spans)
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class CountingSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it drops because its queue is full."""

    def __init__(self, exporter: SpanExporter, dropped: Counter[str], max_queue_size: int | None = None) -> None:
        super().__init__(exporter, max_queue_size=max_queue_size)
        self._dropped = dropped
        # The SDK keeps the queue inside its BatchProcessor; read its length only (pinned SDK version).
        self._span_queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._span_queue
        if queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen:
            self._dropped["span_queue_full"] += 1
        super().on_end(span)


class CountingMetricExporter(MetricExporter):
    def __init__(self, exporter: MetricExporter, dropped: Counter[str]) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,  # delegate as configured
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self._exporter = exporter
        self._dropped = dropped

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self._exporter.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._dropped["metric_export_failed"] += 1
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._exporter.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._exporter.shutdown(timeout_millis=timeout_millis, **kwargs)
