"""A real OTLP/HTTP receiver (what an OpenTelemetry collector listens to on port 4318), and the
gateway's telemetry configured to export to it.

The receiver decodes what arrives with `opentelemetry-proto`, keeps the raw bytes too (for the
canary), and answers 200 as a collector does.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gateway import telemetry
from tests.mock_upstream import free_port


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs}


@dataclass
class Span:
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 SERVER, 3 CLIENT
    trace_id: str
    span_id: str
    parent_span_id: str
    start: int
    end: int
    status: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Point:
    metric: str
    unit: str
    attributes: dict[str, Any]
    value: float | None = None  # sums and gauges
    count: int | None = None  # histograms
    sum: float | None = None


@dataclass
class Receiver:
    url: str
    raw: list[bytes] = field(default_factory=list)
    trace_requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    metric_requests: list[ExportMetricsServiceRequest] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (a slow collector)
    refuse_traces: bool = False  # answer 400 to trace exports (a collector that rejects them)

    def spans(self) -> list[Span]:
        found = []
        for request in list(self.trace_requests):
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        found.append(
                            Span(
                                name=s.name,
                                kind=s.kind,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                start=s.start_time_unix_nano,
                                end=s.end_time_unix_nano,
                                status=s.status.code,
                                attributes=attributes_of(s.attributes),
                                resource=resource,
                            )
                        )
        return found

    def points(self, metric: str) -> list[Point]:
        """The data points of `metric` in the latest export that has it (exports are cumulative)."""
        for request in reversed(list(self.metric_requests)):
            found = []
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for m in scope_metrics.metrics:
                        if m.name != metric:
                            continue
                        data = m.WhichOneof("data")
                        for p in getattr(m, data).data_points:
                            point = Point(metric=m.name, unit=m.unit, attributes=attributes_of(p.attributes))
                            if data == "histogram":
                                point.count, point.sum = p.count, p.sum
                            else:
                                point.value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                            found.append(point)
            if found:
                return found
        return []

    def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            telemetry.flush(timeout=5)
            if result := condition():
                return result
            if time.monotonic() > deadline:
                return result
            time.sleep(0.05)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if receiver.delay:
                time.sleep(receiver.delay)
            receiver.raw.append(body)
            if self.path == "/v1/traces" and receiver.refuse_traces:
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/v1/traces":
                receiver.trace_requests.append(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                receiver.metric_requests.append(ExportMetricsServiceRequest.FromString(body))
                answer = ExportMetricsServiceResponse().SerializeToString()
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}")
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def otel(receiver: Receiver) -> Iterator[Receiver]:
    """Telemetry on, exporting to the receiver; off again afterwards."""
    telemetry.configure(endpoint=receiver.url, service_name="gateway-under-test", metric_interval=3600)
    yield receiver
    telemetry.shutdown(timeout=5)
