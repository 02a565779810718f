"""Startup validation and the HTTPS settings, each in a fresh interpreter with only the environment
an operator would set (README, "Configuration"): a malformed value stops startup with a message naming
the variable (and never repeating a secret), every secret can come from a file, and
`manage.py check --deploy --fail-level WARNING` passes once the HTTPS variables are set."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
REPORT = """
import json, django
django.setup()
from django.conf import settings as s
names = sys.argv[1:]
print(json.dumps({name: getattr(s, name) for name in names}, default=str))
"""


def _production(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
        "DATABASE_URL": "postgres://gateway:pw@db.invalid:5432/gateway",  # never contacted here
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECRETS_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "gateway.example.com",
    } | env


def _run(argv: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def _settings(environment: dict[str, str], *names: str) -> dict[str, Any]:
    done = _run([sys.executable, "-c", "import sys\n" + REPORT, *names], environment)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_deploy(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], environment)


@pytest.mark.parametrize(
    "value",
    ["not-a-key", "c2hvcnQ=", Fernet.generate_key().decode() + ",typo" + "x" * 40],
    ids=["text", "too-short", "second-of-two"],
)
def test_startup_stops_naming_the_encryption_key_when_it_is_not_a_fernet_key(tmp_path: Path, value: str) -> None:
    for argv in ([sys.executable, "-c", "import django; django.setup()"], [sys.executable, "manage.py", "check"]):
        done = _run(argv, _production(tmp_path, SECRETS_ENCRYPTION_KEY=value))

        assert done.returncode != 0
        assert "ImproperlyConfigured: SECRETS_ENCRYPTION_KEY: key " in done.stderr
        assert "is not a Fernet key" in done.stderr
        for part in value.split(","):
            assert part not in done.stderr  # the message names the key's position, never the key


def test_startup_takes_every_secret_from_its_file_when_name_file_is_set(tmp_path: Path) -> None:
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECRETS_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": "postgres://gateway:from-a-file@db.invalid:5432/gateway",
        "REDIS_URL": "redis://:from-a-file@cache.invalid:6379/0",
        "EMAIL_HOST_PASSWORD": "smtp-from-a-file",
        "OIDC_CLIENT_SECRET": "oidc-from-a-file",
        "METRICS_TOKEN": "metrics-from-a-file",
    }
    environment = _production(
        tmp_path, EMAIL_HOST="smtp.invalid", OIDC_ISSUER="https://idp.invalid", OIDC_CLIENT_ID="gw"
    )
    for name, value in values.items():
        environment.pop(name, None)
        (tmp_path / name.lower()).write_text(value + "\n")  # a trailing newline, as `echo` writes it
        environment[f"{name}_FILE"] = str(tmp_path / name.lower())

    found = _settings(
        environment,
        "SECRET_KEY",
        "SECRETS_ENCRYPTION_KEYS",
        "DATABASE_URL",
        "REDIS_URL",
        "EMAIL_HOST_PASSWORD",
        "OIDC_CLIENT_SECRET",
        "METRICS_TOKEN",
        "EMBEDDED",
    )

    assert found["SECRETS_ENCRYPTION_KEYS"] == [values.pop("SECRETS_ENCRYPTION_KEY")]
    assert {name: found[name] for name in values} == values
    assert found["EMBEDDED"] is False  # DATABASE_URL_FILE selects the production profile too


def test_startup_stops_naming_the_variable_when_its_file_cannot_be_read(tmp_path: Path) -> None:
    environment = _production(tmp_path, SECRET_KEY_FILE=str(tmp_path / "missing"))
    environment.pop("SECRET_KEY")

    done = _run([sys.executable, "manage.py", "check"], environment)

    assert done.returncode != 0
    assert f"SECRET_KEY_FILE={str(tmp_path / 'missing')!r} cannot be read" in done.stderr


def test_https_settings_follow_their_variables_when_set(tmp_path: Path) -> None:
    found = _settings(
        _production(
            tmp_path,
            SECURE_HSTS_SECONDS="31536000",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
            SECURE_HSTS_PRELOAD="yes",
            SECURE_SSL_REDIRECT="1",
            CSP_REPORT_URI="https://csp.example.com/report",
            CSP_REPORT_ONLY="on",
        ),
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SECURE_SSL_REDIRECT",
        "CSP_REPORT_URI",
        "CSP_REPORT_ONLY",
    )

    assert found == {
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_SSL_REDIRECT": True,
        "CSP_REPORT_URI": "https://csp.example.com/report",
        "CSP_REPORT_ONLY": True,
    }


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SECURE_HSTS_SECONDS", "a year", "SECURE_HSTS_SECONDS must be a whole number"),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS must be at least 0"),
        ("SECURE_SSL_REDIRECT", "maybe", "SECURE_SSL_REDIRECT must be a boolean"),
        ("CSP_REPORT_URI", "javascript:alert(1)", "CSP_REPORT_URI must be an http(s) URL or a path"),
        ("CSP_REPORT_URI", "/csp; script-src *", "CSP_REPORT_URI must be an http(s) URL or a path"),
    ],
)
def test_startup_stops_naming_the_variable_when_an_https_setting_is_malformed(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    done = _run([sys.executable, "manage.py", "check"], _production(tmp_path, **{variable: value}))

    assert done.returncode != 0
    assert message in done.stderr


HTTPS = {
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def test_check_deploy_passes_at_warning_level_when_https_is_configured(tmp_path: Path) -> None:
    done = _check_deploy(_production(tmp_path, **HTTPS))

    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("unset", "warning"),
    [
        ("SECURE_HSTS_SECONDS", "security.W004"),
        ("SECURE_SSL_REDIRECT", "security.W008"),
        ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "security.W005"),
        ("SECURE_HSTS_PRELOAD", "security.W021"),
    ],
)
def test_check_deploy_names_the_setting_when_its_variable_is_left_unset(
    tmp_path: Path, unset: str, warning: str
) -> None:
    environment = _production(tmp_path, **{name: value for name, value in HTTPS.items() if name != unset})

    done = _check_deploy(environment)

    assert done.returncode != 0
    assert warning in done.stderr


def test_check_deploy_accepts_an_explicit_opt_out_when_the_operator_chose_it(tmp_path: Path) -> None:
    """TLS redirect and HSTS done by the proxy in front: set to false/0 on purpose, not forgotten."""
    environment = _production(
        tmp_path,
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="0",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        SECURE_HSTS_PRELOAD="false",
    )

    done = _check_deploy(environment)

    assert done.returncode == 0, done.stderr


def test_check_deploy_still_warns_when_a_secret_key_is_weak_whatever_is_set(tmp_path: Path) -> None:
    done = _check_deploy(_production(tmp_path, SECRET_KEY="short", **HTTPS))

    assert done.returncode != 0
    assert "security.W009" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://gateway:hunter2@db.invalid/gateway", "DATABASE_URL must be a PostgreSQL URL"),
        (
            "DATABASE_URL",
            "postgres://gateway:hun#ter2@db.invalid:port/gateway",
            "DATABASE_URL must be a PostgreSQL URL",
        ),
        ("REDIS_URL", "http://:hunter2@cache.invalid:6379/0", "REDIS_URL must start with redis://"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("BILLING_CURRENCY", "euro", "BILLING_CURRENCY must be an ISO 4217 code"),
        ("SECURE_COOKIES", "sometimes", "SECURE_COOKIES must be a boolean"),
        ("ALLOWED_HOSTS_FILE", "/nonexistent/hosts", "ALLOWED_HOSTS_FILE='/nonexistent/hosts' cannot be read"),
    ],
)
def test_startup_stops_naming_the_variable_when_a_setting_is_malformed(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    done = _run([sys.executable, "manage.py", "check"], _production(tmp_path, **{variable: value}))

    assert done.returncode != 0
    assert message in done.stderr
    assert "hunter2" not in done.stderr  # a URL's password is never repeated


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (
            {"BILLING_DEFAULT_INPUT_PRICE": "two", "BILLING_DEFAULT_OUTPUT_PRICE": "1"},
            "BILLING_DEFAULT_INPUT_PRICE must",
        ),
        (
            {"BILLING_DEFAULT_INPUT_PRICE": "1", "BILLING_DEFAULT_OUTPUT_PRICE": "-3"},
            "BILLING_DEFAULT_OUTPUT_PRICE must",
        ),
        ({"BILLING_DEFAULT_INPUT_PRICE": "1", "BILLING_DEFAULT_OUTPUT_PRICE": "Infinity"}, "OUTPUT_PRICE must"),
        ({"BILLING_DEFAULT_INPUT_PRICE": "1.5"}, "are set together or not at all"),
    ],
)
def test_startup_stops_naming_the_price_when_a_default_price_is_malformed(
    tmp_path: Path, prices: dict[str, str], message: str
) -> None:
    """Found at startup, not as a 500 on the first request to an unpriced model."""
    done = _run([sys.executable, "manage.py", "check"], _production(tmp_path, **prices))

    assert done.returncode != 0
    assert message in done.stderr


def test_startup_accepts_default_prices_when_both_are_decimals(tmp_path: Path) -> None:
    found = _settings(
        _production(tmp_path, BILLING_DEFAULT_INPUT_PRICE=" 2.50 ", BILLING_DEFAULT_OUTPUT_PRICE="10"),
        "BILLING_DEFAULT_INPUT_PRICE",
        "BILLING_DEFAULT_OUTPUT_PRICE",
    )

    assert found == {"BILLING_DEFAULT_INPUT_PRICE": "2.50", "BILLING_DEFAULT_OUTPUT_PRICE": "10"}
