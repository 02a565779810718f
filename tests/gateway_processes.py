"""What a gateway process started by a test needs to serve the test's database and Redis."""

from __future__ import annotations

import os

from django.conf import settings
from django.db import connection


def database_url(port: int | None = None) -> str:
    """The test database (pytest-django's), optionally through another port (a proxy in between)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@127.0.0.1:{port or db['PORT'] or 5432}/{db['NAME']}"


def gateway_environment(**env: str) -> dict[str, str]:
    """This environment, pointed at the test database and Redis, with this test's budget counters."""
    return os.environ | {
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "BUDGET_REDIS_PREFIX": settings.BUDGET_REDIS_PREFIX,
        "LOG_FLUSH_INTERVAL": "0.1",
        "UPSTREAM_ALLOW_PRIVATE_NETWORKS": "true",  # mock upstreams listen on 127.0.0.1
        **env,
    }
