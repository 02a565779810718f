"""The proxy serves keys and models from an in-process cache; changes still apply at once.

The cross-process test runs a second gateway process under uvicorn, as a second web worker
would be, and revokes a key from this one: the message travels through Redis.
"""

import os
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection

from gateway import services
from gateway.models import Model, VirtualKey
from tests.mock_upstream import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _ask(base: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def test_model_change_applies_at_once_when_made_through_services(live_gateway, gateway_setup):
    assert _ask(live_gateway, gateway_setup.secret).status_code == 200

    services.update_model(model=Model.objects.get(name="gpt-test"), enabled=False)

    assert _ask(live_gateway, gateway_setup.secret).status_code == 404


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.postgresql":
        host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
        return f"postgres://{db.get('USER') or 'postgres'}@{host}:{port}/{connection.settings_dict['NAME']}"
    return f"sqlite:///{connection.settings_dict['NAME']}"


@pytest.fixture
def second_process(gateway_setup):
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "SECRETS_ENCRYPTION_KEY": ",".join(settings.SECRETS_ENCRYPTION_KEYS),
        "CATALOG_CACHE_TTL": "3600",  # only the Redis message can make it forget
        "UPSTREAM_ALLOW_PRIVATE_NETWORKS": "true",  # the mock upstream listens on 127.0.0.1
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=settings.BASE_DIR,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.redis
def test_revoked_key_stops_working_in_another_process_within_a_second(second_process, gateway_setup):
    assert _ask(second_process, gateway_setup.secret).status_code == 200  # now cached there
    time.sleep(0.2)  # let its invalidation listener subscribe

    services.revoke_key(key=VirtualKey.objects.get(pk=gateway_setup.key_id))
    revoked_at = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - revoked_at < 1.0:
        status = _ask(second_process, gateway_setup.secret).status_code

    assert status == 401
