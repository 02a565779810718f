"""Shared fixtures: personas, a project with a key, the mock upstream, a live gateway."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import uvicorn
from django.conf import settings
from django.contrib.auth.hashers import make_password

from gateway import services
from gateway.models import Project
from tests.bench.procs import Proc, wait_for_port
from tests.factories import BusinessUnitFactory, DeploymentFactory, ModelFactory, ProviderFactory, UserFactory
from tests.gateway_processes import gateway_environment
from tests.mock_upstream import MockUpstream, free_port

T = TypeVar("T")

POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)")
    skip_redis = pytest.mark.skip(reason="needs Redis (set REDIS_URL=redis://...)")
    for item in items:
        if "postgres" in item.keywords and not POSTGRES:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(skip_redis)


INSTALLATION_ID = uuid.uuid4()  # this run's: runs sharing a Redis server never meet


@pytest.fixture(scope="session", autouse=True)
def _installation_namespace() -> None:
    """This run's Redis namespace, without a database read: tests of the Redis scripts alone need
    no database. The database path has its tests in tests/ops_scale/test_installation_namespace.py."""
    from gateway import installation

    installation.pin(installation.prefix_for(INSTALLATION_ID))


@pytest.fixture(autouse=True)
def _installation_row(request: pytest.FixtureRequest) -> None:
    """Tests with a database hold this run's id in it too (a transactional test's flush deletes
    the row), so gateway processes they start read the namespace this process uses."""
    if request.node.get_closest_marker("django_db") is None:
        return
    from gateway.models import Installation

    Installation.objects.update_or_create(id=1, defaults={"installation_id": INSTALLATION_ID})


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_proxy_caches(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    from billing import budget
    from gateway import dbstate, scrub
    from gateway.proxy import breaker, catalog

    # Budget counters of their own: ids repeat across test databases (xdist workers, runs).
    settings.BUDGET_REDIS_PREFIX = f"test-budget:{uuid.uuid4().hex}"
    catalog.invalidate()
    breaker.reset()
    budget.reset()
    scrub.reset()
    dbstate.reset()
    yield
    catalog.invalidate()
    breaker.reset()
    budget.reset()
    scrub.reset()
    dbstate.reset()


@pytest.fixture(autouse=True)
def _test_network_and_limits(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Mock upstreams listen on 127.0.0.1 (a private address), and many tests send bad keys from
    127.0.0.1: tests of the network policy and the failure limits set these back themselves."""
    from gateway.proxy import auth_throttle

    settings.UPSTREAM_ALLOW_PRIVATE_NETWORKS = True
    settings.AUTH_FAILURE_LIMIT = 1_000_000
    auth_throttle.reset()
    yield
    auth_throttle.reset()


@pytest.fixture(autouse=True)
def _quick_retries(settings):  # type: ignore[no-untyped-def]
    """Real retry logic, short waits: tests assert attempts and outcomes, not seconds."""
    settings.ROUTER_BACKOFF_BASE = 0.01
    settings.ROUTER_BACKOFF_MAX = 0.05
    settings.ROUTER_RETRY_AFTER_CAP = 0.1
    settings.LOG_FLUSH_INTERVAL = 0.05


# --- personas ---


@pytest.fixture
def admin_user(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="root", is_staff=True, is_superuser=True, password=make_password("pw"))


@pytest.fixture
def member(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="dev")


# --- the mock upstream and a live gateway ---


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[MockUpstream]:
    server = MockUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(mock_upstream: MockUpstream) -> MockUpstream:
    mock_upstream.state.reset()
    return mock_upstream


class _ThreadedUvicorn:
    def __init__(self) -> None:
        from gateway.asgi import application

        self.port = free_port()
        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning", loop="asyncio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway-under-test", daemon=True)

    def start(self) -> _ThreadedUvicorn:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.025)
        raise RuntimeError("the gateway did not start under uvicorn")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_gateway() -> Iterator[str]:
    """The gateway's ASGI application served by uvicorn on a free port (base URL without /v1)."""
    server = _ThreadedUvicorn().start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()
    from django.db import connection

    if hasattr(connection, "close_pool"):
        connection.close_pool()  # the server's pooled connections, so the test database can be dropped


@dataclass
class Setup:
    project: Project
    secret: str
    model: str
    key_id: int


_logs_since: list = []  # when the current test started watching the request log


def _wait_for_log_writes() -> None:
    """Until the log buffer has written what it holds (at most 5 s)."""
    from gateway.proxy import logbuffer

    deadline = time.monotonic() + 5
    while logbuffer.pending() and time.monotonic() < deadline:
        time.sleep(0.02)


def _drain_request_logs() -> None:
    """Let rows of earlier tests' requests reach the database, then forget them. Rows of requests
    that were still running (a stream being cut) may land later: `logged` ignores them by time."""
    from django.utils import timezone

    from gateway.models import RequestLog

    _wait_for_log_writes()
    RequestLog.objects.all().delete()
    _logs_since[:] = [timezone.now()]


@pytest.fixture
def gateway_setup(transactional_db, upstream: MockUpstream, live_gateway: str) -> Iterator[Setup]:  # type: ignore[no-untyped-def]
    """A project allowed `gpt-test` (served by the mock upstream) with one key."""
    _drain_request_logs()
    provider = ProviderFactory(name="mock", base_url=upstream.url)
    DeploymentFactory(model=ModelFactory(name="gpt-test"), provider=provider, upstream_model="upstream-gpt")
    project = services.create_project(name="Shop", business_unit=BusinessUnitFactory(), allowed_models=["gpt-test"])
    issued = services.create_virtual_key(project=project, name="ci")
    yield Setup(project=project, secret=issued.secret, model="gpt-test", key_id=issued.key.id)
    # Before the database is emptied: a log write (two tables) racing the emptying can deadlock.
    _wait_for_log_writes()


def logged(count: int = 1, timeout: float = 5.0) -> list:
    """The request-log rows, once at least `count` have been written (the proxy writes in batches)."""
    from gateway.models import RequestLog

    deadline = time.monotonic() + timeout
    rows_of_this_test = RequestLog.objects.filter(created_at__gte=_logs_since[0]) if _logs_since else RequestLog.objects
    while True:
        rows = list(rows_of_this_test.order_by("created_at", "id"))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def wait_for(read: Callable[[], T], timeout: float = 15.0) -> T:
    """Call `read` until it returns something true or `timeout` seconds pass; returns what it read last."""
    deadline = time.monotonic() + timeout
    while not (value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., tuple[Proc, str]]]:
    """Start the gateway as production runs it, gunicorn managing `workers` uvicorn workers, on the
    test database and Redis (`env` overrides the environment); returns the master and its base URL.
    Stopped after the test (SIGTERM, then whatever is left is killed); its output is in `proc.log`."""
    started: list[Proc] = []

    def start(workers: int = 2, graceful: int = 30, **env: str) -> tuple[Proc, str]:
        port = free_port()
        environment = gateway_environment(**env)
        argv = [sys.executable, "-m", "gunicorn", "gateway.asgi:application", "-k", "gateway.workers.UvicornWorker"]
        argv += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", str(graceful)]
        proc = Proc("gunicorn", argv, env=environment, log=tmp_path / f"gunicorn-{len(started)}.log")
        started.append(proc)
        wait_for_port(port, timeout=60, proc=proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.stop(grace=30)
