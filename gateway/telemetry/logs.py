"""Structured logs: one JSON object per line, with the request id, and secrets scrubbed.

`LOG_FORMAT=json` (the production default) puts `JsonFormatter` on the console handler; every
handler the settings define carries the `ScrubSecrets` filter, the last line of defence: the code
never logs a key or a prompt, and should a library do so, the line leaves with the key replaced.

The request id comes from a context variable the proxy sets for each /v1 request (in
`gateway.proxy.pipeline.serve`); the trace and span ids from OpenTelemetry's current span, when
there is one (the Django stack under its instrumentation). The /v1 spans are built after the
response, so /v1 log lines carry the request id, which the spans carry too
(`symbiosis.request_id`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson
from opentelemetry import trace

from gateway import scrub as known_secrets

request_id: ContextVar[str | None] = ContextVar("symbiosis_request_id", default=None)

# Prefixed keys and tokens (ours, OpenAI's, Anthropic's and anything else shaped `sk-...`), Bearer
# credentials, and the value after an api-key style label. Replaced whole, the label kept.
_SECRET = re.compile(
    r"(?P<label>(?i:\b(?:x-)?api[-_ ]?key|\bauthorization|\bpassword|\bsecret)[\"']?\s*[:=]\s*[\"']?(?i:bearer\s+)?)"
    r"[^\s\"',;}]{6,}"
    r"|(?P<bearer>(?i:\bbearer\s+))[A-Za-z0-9._~+/=\-]{8,}"
    r"|\bsk-[A-Za-z0-9_\-]{6,}"
    r"|\bsym-admin-[A-Za-z0-9_\-]{6,}",
)
REDACTED = "[REDACTED]"


def scrub(text: str) -> str:
    """The text with every secret-shaped token, and every secret the gateway knows, replaced."""
    return known_secrets.text(_SECRET.sub(_replacement, text))


def _replacement(match: re.Match[str]) -> str:
    return (match.group("label") or match.group("bearer") or "") + REDACTED


class ScrubSecrets(logging.Filter):
    """Replace secrets in a record's message, exception and stack text before any handler formats it.

    Also rate-limits OpenTelemetry's own messages (an unreachable collector would otherwise log
    every failed export): each distinct message at most once per `otel_interval` seconds.
    """

    def __init__(self, name: str = "", otel_interval: float = 60.0) -> None:
        super().__init__(name)
        self.otel_interval = otel_interval
        self._otel_seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("opentelemetry") and not self._otel_allowed(record):
            return False
        message = record.getMessage()
        if (clean := scrub(message)) != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True

    def _otel_allowed(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last = self._otel_seen.get(key)
            if last is not None and now - last < self.otel_interval:
                return False
            self._otel_seen[key] = now
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, trace_id, span_id
    (the last three when known), and exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry, default=str).decode()
