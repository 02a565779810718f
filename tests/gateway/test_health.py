"""/healthz and /readyz: what a load balancer and an orchestrator see."""

from __future__ import annotations

import socket

import pytest
from django.db import OperationalError, connection
from django.test import Client
from pytest_django import Settings

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


def test_readyz_names_the_database_when_the_database_does_not_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection refused")  # what the driver raises when the server is gone

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "database unreachable (OperationalError)"


def test_probes_are_not_cached_when_served(client: Client) -> None:
    for path in ("/healthz", "/readyz"):
        assert "no-cache" in client.get(path)["Cache-Control"]
