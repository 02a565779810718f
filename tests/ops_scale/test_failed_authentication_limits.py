"""Failed authentications are limited per client address: /v1 keys (429 in the caller's SDK
shape, with Retry-After), the admin's and the portal's sign-in pages. Successes cost nothing."""

from __future__ import annotations

import httpx
import pytest
import redis
from django.contrib.auth.hashers import make_password
from django.test import Client

from gateway import installation, redis_scripts
from gateway.proxy import auth_throttle
from tests.conftest import wait_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 3
BAD = "sk-sym-" + "x" * 43


@pytest.fixture(autouse=True)
def _low_limit(settings):  # type: ignore[no-untyped-def]
    settings.AUTH_FAILURE_LIMIT = LIMIT
    settings.AUTH_FAILURE_WINDOW = 120
    settings.LOCAL_LOGIN = True


@pytest.fixture(params=["redis-server", "in-process"])
def backend(request: pytest.FixtureRequest, settings) -> str:  # type: ignore[no-untyped-def]
    if request.param == "in-process":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL=redis://...)")
    auth_throttle.reset()
    return request.param


def _chat(base: str, secret: str, address: str | None = None, path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}", "x-api-key": secret}
    if address is not None:
        headers["X-Forwarded-For"] = address
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return httpx.post(f"{base}{path}", headers=headers, json=body, timeout=30)


def _failure_keys(settings) -> list[str]:  # type: ignore[no-untyped-def]
    pattern = f"{installation.redis_prefix()}authfail:*"
    if settings.REDIS_URL:
        with redis.Redis.from_url(settings.REDIS_URL) as client:
            return [key.decode() for key in client.scan_iter(match=pattern)]
    return [key.decode() for key in redis_scripts.in_process_client().scan_iter(match=pattern)]


def test_v1_answers_429_with_retry_after_once_an_address_failed_the_limit(
    backend, settings, live_gateway, gateway_setup
) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXY_COUNT = 1  # the test is the proxy: X-Forwarded-For names the client
    attacker, bystander = "198.51.100.7", "198.51.100.8"

    failures = [_chat(live_gateway, BAD, attacker) for _ in range(LIMIT)]
    refused = _chat(live_gateway, BAD, attacker)
    valid_from_attacker = _chat(live_gateway, gateway_setup.secret, attacker)
    valid_from_bystander = _chat(live_gateway, gateway_setup.secret, bystander)

    assert [r.status_code for r in failures] == [401] * LIMIT
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "too_many_failed_authentications"
    assert f"at most {LIMIT} in 120 s" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    assert valid_from_attacker.status_code == 429  # nothing it sends is looked at until the window ends
    assert valid_from_bystander.status_code == 200
    assert BAD not in refused.text


def test_v1_messages_answers_the_429_in_anthropics_shape(settings, live_gateway, gateway_setup) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(LIMIT):
        _chat(live_gateway, BAD, "203.0.113.50", path="/v1/messages")

    refused = _chat(live_gateway, BAD, "203.0.113.50", path="/v1/messages")

    assert refused.status_code == 429
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["retry-after"]


async def test_v1_ignores_x_forwarded_for_unless_a_proxy_is_trusted(settings, gateway_setup) -> None:  # type: ignore[no-untyped-def]
    from gateway.asgi import application

    settings.TRUSTED_PROXY_COUNT = 0
    # Straight to the ASGI application: uvicorn itself rewrites the peer from X-Forwarded-For when
    # the peer is in FORWARDED_ALLOW_IPS (127.0.0.1 by default), which would hide what this tests.
    transport = httpx.ASGITransport(app=application, client=("192.0.2.200", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        statuses = []
        for n in range(LIMIT + 1):
            response = await client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {BAD}", "X-Forwarded-For": f"192.0.2.{n}"},
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
            )
            statuses.append(response.status_code)

    assert statuses == [401] * LIMIT + [429]  # every spoofed address is the peer's


def test_ipv6_clients_count_by_their_64(settings, live_gateway, gateway_setup) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXY_COUNT = 1
    statuses = [_chat(live_gateway, BAD, f"2001:db8:1:2::{n:x}").status_code for n in range(1, LIMIT + 2)]

    assert statuses == [401] * LIMIT + [429]


def test_v1_successes_write_nothing_and_failures_expire_with_their_window(
    backend, settings, live_gateway, gateway_setup
) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXY_COUNT = 1
    settings.AUTH_FAILURE_WINDOW = 1

    before = set(_failure_keys(settings))
    assert [_chat(live_gateway, gateway_setup.secret, "198.51.100.20").status_code for _ in range(5)] == [200] * 5
    assert set(_failure_keys(settings)) == before  # a success writes nothing
    assert _chat(live_gateway, BAD, "198.51.100.21").status_code == 401
    assert set(_failure_keys(settings)) - before == {f"{installation.redis_prefix()}authfail:198.51.100.21"}
    assert wait_for(lambda: set(_failure_keys(settings)) == before, timeout=5)  # gone with its 1 s window


def test_another_process_refuses_at_its_first_failure_from_a_blocked_address(
    settings, live_gateway, gateway_setup
) -> None:  # type: ignore[no-untyped-def]
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL=redis://...): processes share the count through it")
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(LIMIT):
        _chat(live_gateway, BAD, "198.51.100.30")
    auth_throttle._blocked.clear()  # this process now knows only what a second one would: nothing

    assert _chat(live_gateway, gateway_setup.secret, "198.51.100.30").status_code == 200  # no lookup on success
    assert _chat(live_gateway, BAD, "198.51.100.30").status_code == 429  # Redis's count is over


# --- sign-in pages ---


@pytest.fixture
def admin(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="boss", is_staff=True, is_superuser=True, password=make_password("right"))


@pytest.mark.parametrize(
    ("path", "form", "network"),
    [
        ("/admin/login/", lambda password: {"username": "boss", "password": password}, "203.0.113"),
        ("/accounts/login/", lambda password: {"login": "boss", "password": password}, "198.18.0"),
    ],
    ids=["admin", "portal"],
)
def test_sign_in_answers_429_after_failures_from_one_address(admin, path, form, network) -> None:  # type: ignore[no-untyped-def]
    attacker, colleague = Client(REMOTE_ADDR=f"{network}.9"), Client(REMOTE_ADDR=f"{network}.10")

    failures = [attacker.post(path, form("wrong")) for _ in range(LIMIT)]
    refused = attacker.post(path, form("right"))
    page = attacker.get(path)
    signed_in = colleague.post(path, form("right"))

    assert [r.status_code for r in failures] == [200] * LIMIT  # the form again, with its error
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 120
    assert "Too many failed sign-ins" in refused.content.decode()
    assert page.status_code == 200  # looking at the page is not refused
    assert signed_in.status_code == 302


def test_successful_sign_ins_are_not_counted(admin) -> None:  # type: ignore[no-untyped-def]
    client = Client(REMOTE_ADDR="203.0.113.11")
    for _ in range(LIMIT + 2):
        assert client.post("/admin/login/", {"username": "boss", "password": "right"}).status_code == 302
        client.logout()

    assert client.post("/admin/login/", {"username": "boss", "password": "wrong"}).status_code == 200
