"""Structured logs: one JSON object a line with the request id and trace ids, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.telemetry import logs


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the production handler setup: the scrubber, then the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ScrubSecrets())
    logger = logging.getLogger("tests.telemetry.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_the_request_id_when_one_is_set(written):
    logger, stream = written
    logger.info("before any request")
    token = logs.request_id.set("req_abc123")
    try:
        logger.warning("inside %s", "a request", extra={"ignored": True})
    finally:
        logs.request_id.reset(token)

    first, second = _lines(stream)
    assert set(first) == {"timestamp", "level", "logger", "message"}
    assert first["timestamp"].endswith("+00:00") and first["logger"] == "tests.telemetry.json"
    assert second | {"timestamp": None} == {
        "timestamp": None,
        "level": "WARNING",
        "logger": "tests.telemetry.json",
        "message": "inside a request",
        "request_id": "req_abc123",
    }


def test_a_record_inside_a_span_carries_its_trace_and_span_ids(written):
    logger, stream = written
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logger.info("traced")
        context = span.get_span_context()

    [line] = _lines(stream)
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


@pytest.mark.parametrize(
    "secret",
    [
        "sk-sym-" + "A1b2C3d4" * 5,
        "sym-admin-" + "Z9y8X7w6" * 5,
        "sk-proj-" + "Q1w2E3r4" * 5,
        "sk-ant-api03-" + "k1L2m3N4" * 5,
        "sk-upstream-test-secret",
    ],
)
def test_a_key_in_a_message_its_arguments_or_an_exception_is_scrubbed(written, secret):
    logger, stream = written
    logger.info("key is %s", secret)
    logger.error("with header Authorization: Bearer %s", secret)
    logger.info("config api_key=%s, more", secret)
    try:
        raise ValueError(f"upstream said {secret}")
    except ValueError:
        logger.exception("failed")

    text = stream.getvalue()
    assert secret not in text
    lines = _lines(stream)
    assert lines[0]["message"] == "key is [REDACTED]"
    assert lines[1]["message"] == "with header Authorization: Bearer [REDACTED]"
    assert lines[2]["message"] == "config api_key=[REDACTED], more"
    assert "ValueError: upstream said [REDACTED]" in lines[3]["exception"]


def test_ordinary_messages_pass_unchanged(written):
    logger, stream = written
    message = "request-log flush failed (OperationalError: timeout); 12 rows kept for retry; task-key ok"
    logger.info(message)
    logger.info("the skeleton key word and a bearer of news")

    assert [line["message"] for line in _lines(stream)] == [message, "the skeleton key word and a bearer of news"]


def test_opentelemetrys_own_messages_are_rate_limited():
    scrubber = logs.ScrubSecrets(otel_interval=60)
    record = logging.LogRecord("opentelemetry.exporter.otlp", logging.ERROR, "", 0, "Failed to export", None, None)
    again = logging.LogRecord("opentelemetry.exporter.otlp", logging.ERROR, "", 0, "Failed to export", None, None)
    other = logging.LogRecord("gateway.proxy", logging.ERROR, "", 0, "Failed to export", None, None)

    assert [scrubber.filter(record), scrubber.filter(again), scrubber.filter(other)] == [True, False, True]
