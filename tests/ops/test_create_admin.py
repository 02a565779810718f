"""`manage.py create_admin`: the first administrator, with a password someone can sign in with."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from pytest_django import Settings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_login(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.LOCAL_LOGIN = True
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD_FILE", raising=False)


def _create(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_admin", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_admin_prints_a_password_that_signs_in_to_the_admin_when_none_is_given() -> None:
    out, err = _create("--username", "ops", "--email", "ops@example.com")

    password = out.strip().splitlines()[-1]
    assert len(password) >= 20
    assert password not in err
    user = get_user_model().objects.get(username="ops")
    assert (user.is_active, user.is_staff, user.is_superuser, user.email) == (True, True, True, "ops@example.com")
    browser = Client()
    assert browser.login(username="ops", password=password)
    assert browser.get("/admin/").status_code == 200


def test_create_admin_uses_the_password_from_its_file_when_admin_password_file_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "password").write_text("a-long-operator-chosen-passphrase\n")
    monkeypatch.setenv("ADMIN_PASSWORD_FILE", str(tmp_path / "password"))

    out, err = _create("--username", "ops")

    assert out == ""  # nothing to show: the operator chose it
    assert "ADMIN_PASSWORD_FILE" in err and "passphrase" not in err
    assert authenticate(username="ops", password="a-long-operator-chosen-passphrase") is not None


def test_create_admin_refuses_a_weak_password_naming_why_when_given_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "password")

    with pytest.raises(CommandError, match="too common"):
        _create("--username", "ops")
    assert not get_user_model().objects.filter(username="ops").exists()


def test_create_admin_refuses_an_existing_user_unless_told_to_reset_when_run_twice() -> None:
    first = _create("--username", "ops")[0].strip().splitlines()[-1]

    with pytest.raises(CommandError, match="already exists: pass --reset-password"):
        _create("--username", "OPS")
    assert authenticate(username="ops", password=first) is not None

    second = _create("--username", "ops", "--reset-password")[0].strip().splitlines()[-1]
    assert authenticate(username="ops", password=first) is None
    assert authenticate(username="ops", password=second) is not None


def test_create_admin_makes_an_existing_user_an_admin_when_resetting() -> None:
    get_user_model().objects.create_user("dev", "dev@example.com", "irrelevant-old-password", is_active=False)

    password = _create("--username", "dev", "--reset-password")[0].strip().splitlines()[-1]

    user = authenticate(username="dev", password=password)
    assert user is not None and user.is_superuser and user.is_staff


def test_create_admin_refuses_when_local_sign_in_is_off(settings: Settings) -> None:
    settings.LOCAL_LOGIN = False

    with pytest.raises(CommandError, match="LOCAL_LOGIN"):
        _create("--username", "ops")
    assert not get_user_model().objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--username", "a b"], "Username may contain"), (["--username", "ops", "--email", "nope"], "Not a valid email")],
)
def test_create_admin_refuses_malformed_input_naming_it(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _create(*args)
