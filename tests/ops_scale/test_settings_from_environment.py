"""The variables this part documents reach the settings, and a malformed one stops startup naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from django.conf import settings

_READ = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.UPSTREAM_ALLOW_PRIVATE_NETWORKS, s.AUTH_FAILURE_LIMIT, s.AUTH_FAILURE_WINDOW, "
    "s.TRUSTED_PROXY_COUNT, s.ACCOUNT_RATE_LIMITS['login_failed']]))"
)


def _settings(**env: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as data_dir:  # the embedded profile: nothing else needed
        environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        environment |= {"DJANGO_SETTINGS_MODULE": "gateway.settings", "DATA_DIR": data_dir, **env}
        argv = [sys.executable, "-c", _READ]
        return subprocess.run(argv, env=environment, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)


def test_defaults_refuse_private_networks_and_allow_20_failures_in_5_minutes() -> None:
    result = _settings()

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [False, 20, 300, 0, "20/300s/ip,5/300s/key"]


def test_variables_reach_the_settings() -> None:
    result = _settings(
        UPSTREAM_ALLOW_PRIVATE_NETWORKS="true",
        AUTH_FAILURE_LIMIT="7",
        AUTH_FAILURE_WINDOW="60",
        TRUSTED_PROXY_COUNT="2",
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [True, 7, 60, 2, "7/60s/ip,5/300s/key"]


def test_a_malformed_value_stops_startup_naming_it() -> None:
    for name, value in (("AUTH_FAILURE_LIMIT", "0"), ("TRUSTED_PROXY_COUNT", "two"), ("AUTH_FAILURE_WINDOW", "-1")):
        result = _settings(**{name: value})

        assert result.returncode != 0
        assert name in result.stderr
