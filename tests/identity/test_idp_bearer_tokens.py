"""The identity provider's access tokens as bearer tokens on the management API (mozilla-django-oidc
against the real provider's userinfo endpoint): administrators in, everyone else 401, an outage 503."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import cache
from django.test import Client

from gateway.models import RoleMapping

pytestmark = pytest.mark.django_db


def _get(token: str, path: str = "/api/v1/users") -> object:
    return Client(headers={"Authorization": f"Bearer {token}"}).get(path)


@pytest.fixture(autouse=True)
def _empty_cache():  # type: ignore[no-untyped-def]
    cache.clear()
    yield
    cache.clear()


def test_an_administrators_token_is_accepted_and_the_user_created(idp, caplog) -> None:
    RoleMapping.objects.create(group="gw-admins", role="admin")
    idp.set_user("ops", groups=["gw-admins"], email="ops@corp.example")
    token = idp.access_token("ops")
    with caplog.at_level(logging.DEBUG):
        response = _get(token)
    assert response.status_code == 200, response.content
    ops = next(u for u in response.json() if u["username"] == "ops")
    assert ops["sso_linked"] and ops["roles"][0] == {"role": "admin", "business_unit": None, "source": "idp"}
    assert token not in caplog.text


def test_a_developers_token_is_refused(idp) -> None:
    idp.set_user("dev", groups=["devs"])
    response = _get(idp.access_token("dev"))
    assert response.status_code == 401 and "Invalid" in response.json()["detail"]


def test_a_token_the_provider_does_not_know_is_refused(idp) -> None:
    assert _get("not-a-real-token-at-all").status_code == 401


def test_a_validated_token_is_not_checked_again_for_a_while(idp, settings) -> None:
    RoleMapping.objects.create(group="gw-admins", role="admin")
    idp.set_user("ops2", groups=["gw-admins"])
    token = idp.access_token("ops2")
    assert _get(token).status_code == 200
    idp.process.send_signal(19)  # SIGSTOP: the provider would not answer now
    try:
        assert _get(token).status_code == 200
    finally:
        idp.process.send_signal(18)  # SIGCONT


def test_the_role_is_checked_at_every_call_even_when_cached(idp) -> None:
    RoleMapping.objects.create(group="gw-admins", role="admin")
    idp.set_user("ops3", groups=["gw-admins"])
    token = idp.access_token("ops3")
    assert _get(token).status_code == 200
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="ops3").update(is_superuser=False)
    assert _get(token).status_code == 401


def test_an_identity_provider_outage_answers_503_with_a_message(idp, settings) -> None:
    settings.OIDC_ISSUER = "http://127.0.0.1:9"
    response = _get("some-idp-token")
    assert response.status_code == 503 and "does not answer" in response.json()["detail"]


def test_without_sso_only_admin_tokens_work(settings, db) -> None:
    settings.OIDC_ISSUER = ""
    assert _get("some-idp-token").status_code == 401
