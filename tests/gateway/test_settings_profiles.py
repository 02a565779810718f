"""The two profiles follow from the environment alone. Each case imports the settings in a fresh
interpreter with a controlled environment and a temporary DATA_DIR, so nothing is written to the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT = """
import json, django
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"],
    "name": str(db["NAME"]),
    "options": db.get("OPTIONS", {}),
    "conn_max_age": db.get("CONN_MAX_AGE"),
    "cache": settings.CACHES["default"],
    "eager": getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False),
    "broker": settings.CELERY_BROKER_URL,
    "result_backend": getattr(settings, "CELERY_RESULT_BACKEND", None),
    "email": settings.EMAIL_BACKEND,
    "debug": settings.DEBUG,
}, default=str))
"""
PRODUCTION = {
    "DATABASE_URL": "postgres://gateway:pw@db.invalid:5432/gateway",
    "REDIS_URL": "redis://cache.invalid:6379/0",
    "SECRET_KEY": "test-only",
    "SECRETS_ENCRYPTION_KEY": "shltFI35Gcn51mW7tEyxCyHfCO0SPc7EpzayeM3nVtU=",  # a Fernet key: startup checks its shape
}


def _settings(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
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


def _report(data_dir: Path, **env: str) -> dict[str, Any]:
    result = _settings(data_dir, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_profile_runs_on_sqlite_with_no_services_when_no_database_url(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    report = _report(data_dir)

    assert report["engine"] == "django.db.backends.sqlite3"
    assert Path(report["name"]) == data_dir / "gateway.sqlite3"
    assert report["cache"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert report["eager"] is True
    assert report["email"] == "django.core.mail.backends.console.EmailBackend"
    assert report["debug"] is True


def test_embedded_profile_keeps_generated_secrets_in_data_dir_when_none_are_given(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    _report(data_dir)

    assert (data_dir / "secret_key").read_text().strip()
    assert (data_dir / "secrets_encryption_key").read_text().strip()
    assert (data_dir / "secret_key").stat().st_mode & 0o077 == 0


def test_production_profile_uses_postgres_pool_and_redis_when_database_and_redis_urls_are_set(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    report = _report(data_dir, **PRODUCTION)

    assert report["engine"] == "django.db.backends.postgresql"
    assert report["options"]["pool"]
    assert report["conn_max_age"] == 0
    assert report["cache"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": PRODUCTION["REDIS_URL"],
        "KEY_FUNCTION": "gateway.installation.cache_key",  # keys under the installation's namespace
    }
    assert report["broker"] == PRODUCTION["REDIS_URL"]
    assert report["result_backend"] == PRODUCTION["REDIS_URL"]
    assert report["eager"] is False
    assert report["debug"] is False
    assert not data_dir.exists()


@pytest.mark.parametrize("missing", ["SECRET_KEY", "SECRETS_ENCRYPTION_KEY"])
def test_settings_fail_naming_the_secret_when_database_url_is_set_without_it(tmp_path: Path, missing: str) -> None:
    env = {name: value for name, value in PRODUCTION.items() if name != missing}

    result = _settings(tmp_path / "data", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} must be set" in result.stderr


def test_settings_fail_naming_the_variable_when_a_value_is_malformed(tmp_path: Path) -> None:
    result = _settings(tmp_path / "data", **PRODUCTION, DATABASE_POOL_MAX_SIZE="lots")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_POOL_MAX_SIZE must be a whole number" in result.stderr
