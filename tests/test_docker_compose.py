"""docker/compose.yaml, docker/Dockerfile, docker/env.example and docker/otel-collector.yaml, checked by
reading them (Docker does not run in CI): the services, their order and health checks, images pinned
by digest, and only variables the README documents."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.documented import configuration_variables, is_documented

DOCKER = Path(__file__).resolve().parent.parent / "docker"
GATEWAY_SERVICES = ("migrate", "web", "worker", "beat")
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "GATEWAY_PORT"}  # read by compose.yaml, not by the gateway
DIGEST = re.compile(r"^[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
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


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (DOCKER / "compose.yaml").read_text()


def test_compose_defines_every_service_when_parsed(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "redis", "otel-collector", "migrate", "web", "worker", "beat"}


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


def test_image_starts_from_a_slim_python_pinned_by_digest_when_built(dockerfile: str) -> None:
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert re.match(r"python:3\.1[1-9]\.\d+-slim-\w+@", base)
    assert DIGEST.match(base), base


def test_image_probes_healthz_when_running(dockerfile: str) -> None:
    healthcheck = re.search(r"^HEALTHCHECK\b.*?(?<!\\)$", dockerfile, re.MULTILINE | re.DOTALL)
    assert healthcheck and "/healthz" in healthcheck.group(0)


def test_image_installs_pinned_requirements_and_collects_static_when_built(dockerfile: str) -> None:
    assert "-r requirements/base.txt" in dockerfile
    assert "collectstatic --noinput" in dockerfile


def test_every_image_is_pinned_by_digest_when_pulled(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue  # built from docker/Dockerfile, whose base is pinned
        assert DIGEST.match(service["image"]), f"{name}: {service['image']} is not pinned by digest"


@pytest.mark.parametrize("name", GATEWAY_SERVICES)
def test_gateway_service_reads_docker_env_when_started(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name]["env_file"] == [{"path": ".env", "required": True}]


def test_env_example_lists_every_documented_variable_when_copied() -> None:
    """docker/.env is the gateway containers' env_file: the example shows every README variable."""
    example = (DOCKER / "env.example").read_text()
    listed = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    missing = sorted(configuration_variables() - listed)
    assert not missing, f"docker/env.example lacks {missing}"
    unknown = sorted(name for name in listed - COMPOSE_ONLY if not is_documented(name))
    assert not unknown, f"docker/env.example sets variables the README does not document: {unknown}"
    for required in ("POSTGRES_PASSWORD", "SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "ALLOWED_HOSTS"):
        assert re.search(rf"^{required}=", example, re.MULTILINE), f"{required} must be an active line"


def test_compose_refers_only_to_documented_variables_when_interpolated(
    services: dict[str, dict[str, Any]], compose_text: str
) -> None:
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    assert referenced, "no ${...} found"
    unknown = sorted(name for name in referenced - COMPOSE_ONLY if not is_documented(name))
    assert not unknown, unknown
    for name in GATEWAY_SERVICES:
        unknown = sorted(variable for variable in services[name]["environment"] if not is_documented(variable))
        assert not unknown, f"{name}: {unknown}"


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "worker", "beat"], ids=lambda name: f"{name}-service")
def test_long_running_service_has_a_healthcheck_when_running(services: dict[str, dict[str, Any]], name: str) -> None:
    healthcheck = services[name]["healthcheck"]
    assert not healthcheck.get("disable")
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}


def test_web_is_healthy_only_when_ready_when_checked(services: dict[str, dict[str, Any]]) -> None:
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_collector_receives_otlp_http_and_answers_health_checks_when_configured(
    services: dict[str, dict[str, Any]],
) -> None:
    collector = services["otel-collector"]
    source, target, _mode = collector["volumes"][0].split(":")
    config = yaml.safe_load((DOCKER / source).read_text())
    assert collector["command"] == [f"--config={target}"]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert config["extensions"]["health_check"]["endpoint"].endswith(":13133")
    assert "health_check" in config["service"]["extensions"]
    for pipeline in ("traces", "metrics"):
        assert config["service"]["pipelines"][pipeline]["receivers"] == ["otlp"]
    endpoint = services["web"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert "http://otel-collector:4318" in endpoint
    assert {"4318", "13133"} <= set(collector["expose"])


def test_app_services_wait_for_the_collector_to_start_when_started(services: dict[str, dict[str, Any]]) -> None:
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["otel-collector"]["condition"] == "service_started"


def test_image_installs_only_hashed_requirements_when_built(dockerfile: str) -> None:
    install = next(line for line in dockerfile.splitlines() if "pip install" in line)
    assert "--require-hashes" in install and "-r requirements/base.txt" in install


def test_image_build_step_loads_the_settings_when_run_with_its_placeholder_values(
    dockerfile: str, tmp_path: Path
) -> None:
    """The Dockerfile's collectstatic step, with the values it sets, passes startup validation (run
    here, as Docker does not run in CI)."""
    step = re.search(r"^RUN ((?:[A-Z_]+=\S+ )+)\\?\s*python manage\.py collectstatic", dockerfile, re.MULTILINE)
    assert step, "no collectstatic step with its own variables"
    assigned = dict(pair.split("=", 1) for pair in step.group(1).split())
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(tmp_path / "static"),
        **assigned,
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=DOCKER.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "static" / "admin").is_dir()
