"""manage.py issue_admin_token USERNAME: a working token, alone on the last line of stdout."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from gateway.models import AdminToken
from gateway.secrets_format import digest
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _issue(username: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("issue_admin_token", username, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def test_last_line_is_a_token_the_api_accepts_when_user_is_missing(client):
    out, _ = _issue("ops")

    token = _last_line(out)
    response = client.get("/api/v1/business-units", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert token.strip() == token and " " not in token
    user = get_user_model().objects.get(username="ops")
    assert user.is_superuser and user.is_staff and not user.has_usable_password()


def test_only_the_hash_is_stored_when_token_is_issued():
    token = _last_line(_issue("ops")[0])

    stored = AdminToken.objects.get()
    assert stored.token_hash == digest(token)
    assert token not in (stored.token_hash, stored.prefix)
    assert token.startswith(stored.prefix)


def test_issues_a_token_for_the_same_user_when_superuser_exists(admin_user, client):
    token = _last_line(_issue(admin_user.username)[0])

    response = client.get("/api/v1/providers", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert AdminToken.objects.get().user == admin_user
    assert get_user_model().objects.filter(username=admin_user.username).count() == 1


def test_each_run_issues_a_new_token_when_run_twice(admin_user):
    first, second = _last_line(_issue("root")[0]), _last_line(_issue("root")[0])

    assert first != second
    assert AdminToken.objects.count() == 2


def test_fails_clearly_without_promoting_when_user_is_not_a_superuser():
    UserFactory(username="dev")

    with pytest.raises(CommandError, match="not an active superuser"):
        _issue("dev")

    assert not AdminToken.objects.exists()
    assert not get_user_model().objects.get(username="dev").is_superuser


def test_fails_clearly_when_username_is_blank():
    with pytest.raises(CommandError, match="username is required"):
        _issue("  ")
