"""/healthz and /readyz: what a load balancer and an orchestrator see."""

from __future__ import annotations

import re
import socket
import time

import pytest
from django.db import OperationalError
from django.test import Client
from pytest_django import Settings

from gateway import dbstate

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_healthz_answers_ok_when_the_process_runs(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ok_with_its_checks_when_dependencies_answer(client: Client, settings: Settings) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == ("ok" if settings.REDIS_URL else "not configured")


def test_readyz_names_redis_when_redis_does_not_answer(client: Client, settings: Settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"].startswith("redis unreachable")
    assert body["checks"]["database"] == "ok"


def test_readyz_names_the_database_at_once_when_the_proxy_found_it_away(client: Client) -> None:
    """The proxy serves from cache meanwhile; a load balancer should prefer a healthy instance.
    (A database cut for real: tests/gateway/test_database_outage.py.)"""
    dbstate.report_failure(OperationalError("connection refused"))

    started = time.monotonic()
    response = client.get("/readyz")

    assert time.monotonic() - started < 0.5  # no wait on the connection pool
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert re.fullmatch(r"database unreachable for \d+ s \(OperationalError\)", body["checks"]["database"])


def test_probes_are_not_cached_when_served(client: Client) -> None:
    for path in ("/healthz", "/readyz"):
        assert "no-cache" in client.get(path)["Cache-Control"]
