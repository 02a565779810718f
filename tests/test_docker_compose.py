"""docker/compose.yaml and docker/Dockerfile, checked by reading them (Docker does not run in CI)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
SECRETS = ("SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "POSTGRES_PASSWORD", "EMAIL_HOST_PASSWORD")
REFERENCE = re.compile(r"^\$\{[A-Z_]+(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def test_compose_defines_the_five_services_when_parsed(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)


@pytest.mark.parametrize("name", ["web", "worker", "beat", "migrate"])
def test_app_service_builds_from_the_dockerfile_when_built_from_the_repo_root(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    build = services[name]["build"]
    assert build["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / build["context"]).resolve() == DOCKER.parent


def test_web_serves_the_asgi_app_when_run_by_gunicorn_with_uvicorn_workers(
    services: dict[str, dict[str, Any]],
) -> None:
    command = _command(services["web"])
    assert command[:2] == ["gunicorn", "gateway.asgi:application"]
    worker_flag = next(i for i, part in enumerate(command) if part in {"-k", "--worker-class"})
    assert command[worker_flag + 1] == "gateway.workers.UvicornWorker"


@pytest.mark.parametrize(("name", "role"), [("worker", "worker"), ("beat", "beat")])
def test_celery_service_runs_its_role_when_started(services: dict[str, dict[str, Any]], name: str, role: str) -> None:
    assert _command(services[name])[:4] == ["celery", "-A", "gateway", role]


def test_migrations_run_once_before_the_app_when_the_stack_starts(services: dict[str, dict[str, Any]]) -> None:
    assert "migrate" in _command(services["migrate"])
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_web_waits_for_healthy_postgres_and_redis_when_started(services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["web"]["depends_on"]
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize(("name", "probe"), [("postgres", "pg_isready"), ("redis", "redis-cli")])
def test_backing_service_has_a_healthcheck_when_others_wait_for_it(
    services: dict[str, dict[str, Any]], name: str, probe: str
) -> None:
    assert probe in " ".join(services[name]["healthcheck"]["test"])


def test_no_secret_is_written_into_compose_when_read(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for service in services.values():
        environment = service.get("environment", {})
        for name in SECRETS:
            if name in environment:
                assert REFERENCE.match(environment[name]), f"{name} must come from ${{...}}"
                checked += 1
        if url := environment.get("DATABASE_URL"):
            password = re.match(r"^postgres://[^:]+:(.+)@[^@]+$", url)
            assert password and REFERENCE.match(password.group(1)), "DATABASE_URL's password must come from ${...}"
            checked += 1
    assert checked >= 4


def test_required_settings_stop_compose_when_unset(services: dict[str, dict[str, Any]]) -> None:
    environment = services["web"]["environment"]
    for name in ("SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "ALLOWED_HOSTS"):
        assert environment[name].startswith(f"${{{name}:?"), name
    assert ":?" in environment["DATABASE_URL"]
    assert environment["REDIS_URL"].startswith("redis://redis:")


def test_image_runs_as_a_non_root_user_when_built(dockerfile: str) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_image_starts_from_a_slim_python_when_built(dockerfile: str) -> None:
    assert re.search(r"^FROM\s+python:3\.1[12]-slim\b", dockerfile, re.MULTILINE)


def test_image_probes_healthz_when_running(dockerfile: str) -> None:
    healthcheck = re.search(r"^HEALTHCHECK\b.*?(?<!\\)$", dockerfile, re.MULTILINE | re.DOTALL)
    assert healthcheck and "/healthz" in healthcheck.group(0)


def test_image_installs_pinned_requirements_and_collects_static_when_built(dockerfile: str) -> None:
    assert "-r requirements/base.txt" in dockerfile
    assert "collectstatic --noinput" in dockerfile
