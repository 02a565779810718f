"""/healthz and /readyz as an orchestrator sees them: answered whatever the Host header (Kubernetes
probes by pod IP), not ready while a migration is pending, and no way around ALLOWED_HOSTS for
anything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from pytest_django import Settings

from gateway import health

pytestmark = pytest.mark.django_db

POD_IP = "10.1.2.3:8000"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _forget_migration_state() -> None:
    health.reset()


@pytest.fixture
def public_host_only(settings: Settings) -> None:
    settings.ALLOWED_HOSTS = ["gateway.example.com"]


@pytest.mark.usefixtures("public_host_only")
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probe_answers_when_the_host_header_is_a_pod_ip(path: str) -> None:
    response = Client().get(path, headers={"host": POD_IP})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"


@pytest.mark.usefixtures("public_host_only")
@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/", "/api/v1/projects", "/healthz/", "/readyzz"])
def test_other_paths_refuse_a_host_not_allowed_when_asked_by_pod_ip(path: str) -> None:
    assert Client().get(path, headers={"host": POD_IP}).status_code == 400


@pytest.mark.usefixtures("public_host_only")
def test_probe_refuses_other_methods_when_posted() -> None:
    assert Client().post("/healthz", headers={"host": POD_IP}).status_code == 405


@pytest.mark.usefixtures("public_host_only")
def test_probe_is_not_redirected_to_https_when_ssl_redirect_is_on(settings: Settings) -> None:
    settings.SECURE_SSL_REDIRECT = True

    assert Client().get("/readyz", headers={"host": POD_IP}).status_code == 200
    assert Client().get("/accounts/login/", headers={"host": "gateway.example.com"}).status_code == 301


def test_readyz_reports_migrations_applied_when_the_schema_is_current() -> None:
    body = Client().get("/readyz").json()

    assert body["checks"]["migrations"] == "ok"


def test_readyz_names_the_first_pending_migration_when_one_is_not_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A migration recorded as not applied (here: the newest of the gateway app, unrecorded for the
    test's transaction), as after deploying code before running `manage.py migrate`."""
    executor = MigrationExecutor(connection)
    leaf = max(node for node in executor.loader.graph.leaf_nodes() if node[0] == "gateway")
    executor.recorder.record_unapplied(*leaf)

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == (
        f"1 migration(s) not applied, first {leaf[0]}.{leaf[1]}: run `manage.py migrate`"
    )


def test_readyz_keeps_the_answer_once_every_migration_is_applied(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    Client().get("/readyz")  # reads the migration table once

    with django_assert_max_num_queries(0):
        assert health._check_migrations() is None


@pytest.mark.usefixtures("public_host_only")
def test_metrics_answer_a_scrape_by_pod_ip_when_the_token_is_set(settings: Settings) -> None:
    settings.METRICS_TOKEN = "scrape-token"

    scraped = Client().get("/metrics", headers={"host": POD_IP, "authorization": "Bearer scrape-token"})

    assert scraped.status_code == 200
    assert Client().get("/metrics", headers={"host": POD_IP}).status_code == 401


@pytest.mark.usefixtures("public_host_only")
def test_metrics_are_absent_by_pod_ip_when_no_token_is_set(settings: Settings) -> None:
    settings.METRICS_TOKEN = ""

    assert Client().get("/metrics", headers={"host": POD_IP}).status_code == 404


PROBE_WITH_TELEMETRY = """
import json
from gateway import asgi  # noqa: F401  configures telemetry: its middleware joins the stack
from django.conf import settings
from django.test import Client
answers = {path: Client().get(path, headers={"host": "10.1.2.3:8000"}) for path in ("/healthz", "/readyz", "/admin/")}
print(json.dumps({
    "middleware": settings.MIDDLEWARE[:2],
    "status": {path: response.status_code for path, response in answers.items()},
    "readyz": answers["/readyz"].json(),
}))
"""


def test_probes_pass_by_pod_ip_when_telemetry_instruments_django(tmp_path: Path) -> None:
    """The instrumentation's middleware reads the Host header; the probes are answered before it.
    (A fresh process on an unmigrated SQLite database: /readyz says so.)"""
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "ALLOWED_HOSTS": "gateway.example.com",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # discard: nothing is exported in time
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE_WITH_TELEMETRY],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["middleware"][0] == "gateway.probe_middleware.HealthProbes"
    assert "opentelemetry" in report["middleware"][1]
    assert report["status"] == {"/healthz": 200, "/readyz": 503, "/admin/": 400}
    assert report["readyz"]["checks"]["database"] == "ok"
    assert "not applied" in report["readyz"]["checks"]["migrations"]
