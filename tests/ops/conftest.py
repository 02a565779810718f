"""A gateway as an operator installs it: real processes (manage.py, gunicorn with uvicorn workers)
against a database of their own, configured only through the environment the README documents."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

from tests.bench.procs import VENV_BIN, free_port

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
PUBLIC_HOST = "gateway.example.com"


def _server_dsn(dbname: str) -> str:
    db = connection.settings_dict
    return f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname={dbname}" + (
        f" password={db['PASSWORD']}" if db.get("PASSWORD") else ""
    )


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database nobody has migrated: a new PostgreSQL database on the test server (dropped
    afterwards), or a new SQLite file on the embedded default."""
    if not POSTGRES:
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    db = connection.settings_dict
    name = f"{str(db['NAME'])[:40]}_fresh_{secrets.token_hex(4)}"
    with psycopg.connect(_server_dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        yield f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    finally:
        with psycopg.connect(_server_dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_environment(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The production profile as an operator sets it: nothing inherited from the test run but PATH."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data_dir),
        "DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECRETS_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": PUBLIC_HOST,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if settings.REDIS_URL:  # the test run's Redis (never another database of it)
        environment |= {
            "REDIS_URL": settings.REDIS_URL,
            "BUDGET_REDIS_PREFIX": f"test-budget:{uuid.uuid4().hex}",
            "CELERY_QUEUE": f"test-{uuid.uuid4().hex}",
        }
    return environment | extra


def manage(environment: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, *, host: str = PUBLIC_HOST, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Host": host}, timeout=30, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def start_gunicorn(environment: dict[str, str], log: Path) -> Iterator[Server]:
    """`gunicorn gateway.asgi:application -k gateway.workers.UvicornWorker`, as `make serve`, the
    Dockerfile and the manifests run it; in its own session, stopped by its id."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "gateway.asgi:application",
                "--worker-class",
                "gateway.workers.UvicornWorker",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--graceful-timeout",
                "10",
            ],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
            try:
                if server.get("/healthz", host="127.0.0.1").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not answer /healthz:\n{log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
