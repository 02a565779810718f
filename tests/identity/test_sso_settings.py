"""OIDC_*, LOCAL_LOGIN and PUBLIC_URL from the environment: defaults per profile, and a clear
ImproperlyConfigured naming the variable at start-up. Each case imports the settings in a fresh
interpreter (as tests/gateway/test_settings_profiles.py does)."""

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
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in (
    "OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_SCOPES", "OIDC_GROUPS_CLAIM", "LOCAL_LOGIN",
    "PUBLIC_URL", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE")}))
"""
PRODUCTION = {
    "DATABASE_URL": "postgres://gw:pw@db.invalid/gw",
    "SECRET_KEY": "t",
    "SECRETS_ENCRYPTION_KEY": "shltFI35Gcn51mW7tEyxCyHfCO0SPc7EpzayeM3nVtU=",  # a Fernet key: startup checks its shape
}
SSO = {"OIDC_ISSUER": "https://idp.example/realms/corp", "OIDC_CLIENT_ID": "gateway", "OIDC_CLIENT_SECRET": "s3cret"}


def _settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "DATABASE_", "REDIS_", "SECRET"))}
    clean.pop("LOCAL_LOGIN", None)
    clean.pop("PUBLIC_URL", None)
    environment = {**clean, "DJANGO_SETTINGS_MODULE": "gateway.settings", "DATA_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-c", REPORT], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )


def _read(tmp_path: Path, **env: str) -> dict[str, Any]:
    done = _settings(tmp_path, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_defaults_embedded_has_local_login_and_no_sso(tmp_path) -> None:
    values = _read(tmp_path)
    assert values["LOCAL_LOGIN"] is True and values["OIDC_ISSUER"] == ""
    assert values["OIDC_SCOPES"] == ["openid", "email", "profile"] and values["OIDC_GROUPS_CLAIM"] == "groups"
    assert values["SESSION_COOKIE_HTTPONLY"] is True and values["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_production_has_no_local_login_unless_set_and_secure_cookies(tmp_path) -> None:
    assert _read(tmp_path, **PRODUCTION)["LOCAL_LOGIN"] is False
    values = _read(tmp_path, **PRODUCTION, LOCAL_LOGIN="on")
    assert values["LOCAL_LOGIN"] is True and values["SESSION_COOKIE_SECURE"] is True


def test_sso_from_the_environment_with_the_secret_from_a_file(tmp_path) -> None:
    secret_file = tmp_path / "oidc-secret"
    secret_file.write_text("from-a-file\n")
    env = {**SSO, "OIDC_ISSUER": SSO["OIDC_ISSUER"] + "/", "OIDC_SCOPES": "openid email groups"}
    del env["OIDC_CLIENT_SECRET"]
    values = _read(tmp_path, **env, OIDC_CLIENT_SECRET_FILE=str(secret_file), OIDC_GROUPS_CLAIM="roles")
    assert values["OIDC_ISSUER"] == "https://idp.example/realms/corp"
    assert values["OIDC_CLIENT_SECRET"] == "from-a-file"
    assert values["OIDC_SCOPES"] == ["openid", "email", "groups"] and values["OIDC_GROUPS_CLAIM"] == "roles"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OIDC_ISSUER": SSO["OIDC_ISSUER"]}, "OIDC_CLIENT_ID"),
        ({"OIDC_ISSUER": SSO["OIDC_ISSUER"], "OIDC_CLIENT_ID": "gw"}, "OIDC_CLIENT_SECRET"),
        ({**SSO, "OIDC_ISSUER": "idp.example"}, "OIDC_ISSUER"),
        ({**SSO, "OIDC_ISSUER": "https://idp.example/?x=1"}, "OIDC_ISSUER"),
        ({**SSO, "OIDC_SCOPES": "email profile"}, "OIDC_SCOPES"),
        ({**SSO, "OIDC_GROUPS_CLAIM": " "}, "OIDC_GROUPS_CLAIM"),
        ({"OIDC_CLIENT_ID": "gw"}, "OIDC_ISSUER"),
        ({"LOCAL_LOGIN": "maybe"}, "LOCAL_LOGIN"),
        ({"PUBLIC_URL": "gateway.example"}, "PUBLIC_URL"),
        ({**SSO, "OIDC_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "OIDC_CLIENT_SECRET_FILE"),
    ],
)
def test_a_bad_configuration_stops_start_up_naming_the_variable(tmp_path, env, named) -> None:
    done = _settings(tmp_path, **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and named in done.stderr.splitlines()[-1]
