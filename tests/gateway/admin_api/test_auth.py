"""Bearer admin tokens: every operation needs one; failures are 401 with a clear JSON message."""

import logging
import re

import pytest

from gateway import services
from tests.gateway.admin_api.conftest import Api

pytestmark = pytest.mark.django_db


def _operations(api: Api) -> list[tuple[str, str]]:
    paths = api.get("/openapi.json").json()["paths"]
    return [(method, re.sub(r"\{[^}]+\}", "1", path)) for path, ops in paths.items() for method in ops]


def test_every_operation_answers_401_when_no_token_is_sent(anonymous):
    operations = _operations(anonymous)
    assert len(operations) >= 25

    for method, path in operations:
        if method == "get":
            response = anonymous.client.get(path)
        else:
            response = anonymous.client.generic(method.upper(), path, "{}", content_type="application/json")

        assert response.status_code == 401, (method, path)
        assert "Missing admin token" in response.json()["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_401_names_the_problem_when_token_is_unknown(db):
    response = Api("sym-admin-not-a-real-token").get("/business-units")

    assert response.status_code == 401
    assert response.json() == {"detail": response.json()["detail"]}
    assert "Invalid admin token" in response.json()["detail"]


def test_401_when_token_is_revoked(admin_token):
    services.revoke_admin_token(token=admin_token.token)

    response = Api(admin_token.secret).get("/business-units")

    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_401_when_token_user_is_no_longer_a_superuser(admin_user, admin_token):
    admin_user.is_superuser = False
    admin_user.save()

    assert Api(admin_token.secret).get("/business-units").status_code == 401


def test_401_without_logging_the_token_when_scheme_is_not_bearer(admin_token, settings, caplog):
    settings.DEBUG = True
    api = Api(None)
    api.client.defaults["HTTP_AUTHORIZATION"] = f"Token {admin_token.secret}"

    with caplog.at_level(logging.DEBUG):
        response = api.get("/business-units")

    assert response.status_code == 401
    assert admin_token.secret not in caplog.text


def test_200_when_token_is_valid(api):
    response = api.get("/business-units")

    assert response.status_code == 200
    assert response.json() == []


def test_scheme_is_case_insensitive_when_token_is_valid(admin_token):
    api = Api(None)
    api.client.defaults["HTTP_AUTHORIZATION"] = f"bearer {admin_token.secret}"

    assert api.get("/business-units").status_code == 200
