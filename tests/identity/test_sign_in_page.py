"""/accounts/login/: the provider's button, the local form while LOCAL_LOGIN is on, safe `next`,
the admin's login page, password pages, cookies and the CSP."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="alice", password=make_password("correct horse"))


def test_page_shows_the_providers_button_and_the_local_form(idp, settings) -> None:
    settings.LOCAL_LOGIN = True
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Test IdP" in page and 'action="/accounts/oidc/sso/login/"' in page
    assert 'id="local-login"' in page and 'name="login"' in page and 'name="password"' in page


def test_local_login_off_hides_the_form_and_refuses_its_post(idp, settings, alice) -> None:
    settings.LOCAL_LOGIN = False
    client = Client()
    page = client.get("/accounts/login/").content.decode()
    assert 'id="local-login"' not in page and "Sign in with Test IdP" in page
    response = client.post("/accounts/login/", {"login": "alice", "password": "correct horse"})
    assert response.status_code == 403 and "_auth_user_id" not in client.session
    assert "switched off" in response.content.decode()


def test_local_login_signs_in_and_follows_a_local_next(settings, alice) -> None:
    settings.LOCAL_LOGIN = True
    client = Client()
    response = client.post("/accounts/login/", {"login": "alice", "password": "correct horse", "next": "/logs/"})
    assert response.status_code == 302 and response["Location"] == "/logs/"
    assert client.session["_auth_user_id"] == str(alice.pk)


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example", "http://evil.example/x"])
def test_local_login_does_not_follow_next_to_another_site(settings, alice, evil) -> None:
    settings.LOCAL_LOGIN = True
    response = Client().post("/accounts/login/", {"login": "alice", "password": "correct horse", "next": evil})
    assert response.status_code == 302 and response["Location"] == "/"


def test_wrong_password_is_shown_beside_the_form(settings, alice) -> None:
    settings.LOCAL_LOGIN = True
    response = Client().post("/accounts/login/", {"login": "alice", "password": "nope"})
    assert response.status_code == 200 and 'class="notice error"' in response.content.decode()


def test_no_self_signup(settings) -> None:
    settings.LOCAL_LOGIN = True
    client = Client()
    response = client.post("/accounts/signup/", {"username": "eve", "password1": "a long pass phrase 1"})
    assert "Accounts are not created here" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_admin_login_sends_people_to_the_sign_in_page_when_local_login_is_off(settings) -> None:
    settings.LOCAL_LOGIN = False
    response = Client().get("/admin/login/?next=/admin/gateway/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Fgateway%2F"
    assert Client().get("/admin/")["Location"].startswith("/admin/login/")


def test_admin_login_is_the_admins_own_page_when_local_login_is_on(settings) -> None:
    settings.LOCAL_LOGIN = True
    assert Client().get("/admin/login/").status_code == 200


def test_password_pages_do_not_exist_when_local_login_is_off(settings, alice) -> None:
    settings.LOCAL_LOGIN = False
    client = Client()
    client.force_login(alice)
    assert client.get("/accounts/password/change/").status_code == 404
    assert client.get("/accounts/password/reset/").status_code == 404


def test_password_change_page_uses_the_portal_look(settings, alice) -> None:
    settings.LOCAL_LOGIN = True
    client = Client()
    client.force_login(alice)
    page = client.get("/accounts/password/change/").content.decode()
    assert 'class="auth"' in page and "gateway.css" in page


def test_get_on_the_provider_button_asks_to_confirm_with_a_post(idp) -> None:
    page = Client().get("/accounts/oidc/sso/login/").content.decode()
    assert "Continue to Test IdP" in page and 'method="post"' in page


def test_sign_out_page_asks_to_confirm(alice) -> None:
    client = Client()
    client.force_login(alice)
    page = client.get("/accounts/logout/").content.decode()
    assert 'class="auth"' in page and "Sign out" in page


def test_csp_form_action_lets_sign_in_and_out_reach_the_provider(idp) -> None:
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    assert f"form-action 'self' {idp.issuer}" in policy and "script-src 'self'" in policy


def test_session_cookie_is_http_only_and_same_site_lax(settings, alice) -> None:
    settings.LOCAL_LOGIN = True
    response = Client().post("/accounts/login/", {"login": "alice", "password": "correct horse"})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
