"""Telemetry follows the standard OTEL_* variables at start-up; off by default. Each case starts
the ASGI application in a fresh interpreter with a controlled environment (nothing is exported:
no span is made, and the collector address is never contacted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
REPORT = """
import json, logging
import gateway.asgi
from django.conf import settings
from gateway import telemetry
logging.getLogger("gateway.check").warning("started with key sk-sym-abcdefghijklmnopqrstuvwxyz0123")
state = telemetry._state
print(json.dumps({
    "enabled": telemetry.enabled,
    "traces": state.tracer is not None,
    "metrics": state.instruments is not None,
    "prometheus": state.prometheus_registry is not None,
    "django_instrumented": any("opentelemetry" in m for m in settings.MIDDLEWARE),
    "log_format": settings.LOG_FORMAT,
    "capture": state.capture_content,
}))
"""
PRODUCTION = {
    "DATABASE_URL": "postgres://gateway:pw@db.invalid:5432/gateway",
    "SECRET_KEY": "test-only",
    "SECRETS_ENCRYPTION_KEY": "shltFI35Gcn51mW7tEyxCyHfCO0SPc7EpzayeM3nVtU=",  # a Fernet key: startup checks its shape
}
NOWHERE = "http://127.0.0.1:9"  # discard: never contacted in these runs


def _start(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data_dir.parent),
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "DATA_DIR": str(data_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", REPORT], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )


def _report(data_dir: Path, **env: str) -> tuple[dict[str, Any], str]:
    result = _start(data_dir, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_the_embedded_default_exports_nothing_and_logs_text(tmp_path):
    report, stderr = _report(tmp_path / "data")

    assert report == {
        "enabled": False,
        "traces": False,
        "metrics": False,
        "prometheus": False,
        "django_instrumented": False,
        "log_format": "text",
        "capture": False,
    }
    assert "WARNING gateway.check started with key [REDACTED]" in stderr


def test_production_with_an_otlp_endpoint_exports_traces_and_metrics_and_logs_json(tmp_path):
    report, stderr = _report(tmp_path / "data", **PRODUCTION, OTEL_EXPORTER_OTLP_ENDPOINT=NOWHERE)

    assert report == {
        "enabled": True,
        "traces": True,
        "metrics": True,
        "prometheus": False,
        "django_instrumented": True,
        "log_format": "json",
        "capture": False,
    }
    [line] = [json.loads(line) for line in stderr.splitlines() if "gateway.check" in line]
    assert line["level"] == "WARNING" and line["message"] == "started with key [REDACTED]"


def test_each_signal_follows_its_own_endpoint_and_content_capture_its_switch(tmp_path):
    report, _ = _report(
        tmp_path / "data",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{NOWHERE}/v1/traces",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
    )

    assert (report["traces"], report["metrics"], report["capture"]) == (True, False, True)


def test_the_sdk_switch_turns_everything_off(tmp_path):
    report, _ = _report(tmp_path / "data", OTEL_EXPORTER_OTLP_ENDPOINT=NOWHERE, OTEL_SDK_DISABLED="true")

    assert report["enabled"] is False


def test_a_metrics_token_alone_serves_prometheus_without_exporting(tmp_path):
    report, _ = _report(tmp_path / "data", METRICS_TOKEN="secret-token")

    assert (report["enabled"], report["traces"], report["metrics"], report["prometheus"]) == (True, False, True, True)


def test_grpc_is_refused_with_a_message_naming_the_variable(tmp_path):
    result = _start(tmp_path / "data", OTEL_EXPORTER_OTLP_ENDPOINT=NOWHERE, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")

    assert result.returncode != 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL: the gateway exports OTLP over HTTP only" in result.stderr


def test_an_unknown_log_format_is_refused(tmp_path):
    result = _start(tmp_path / "data", LOG_FORMAT="xml")

    assert result.returncode != 0 and "LOG_FORMAT must be text or json" in result.stderr
