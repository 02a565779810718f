"""`make run`'s bootstrap_demo leaves a portal user who can sign in: `demo`, owner of the demo project."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def _run() -> str:
    out = StringIO()
    call_command("bootstrap_demo", "--base-url", "http://127.0.0.1:8000", stdout=out)
    return out.getvalue()


def test_demo_user_owns_the_demo_project_and_signs_in_with_the_printed_password(settings) -> None:
    settings.LOCAL_LOGIN = True
    first = _run()
    password = re.search(r"Portal:  http://127.0.0.1:8000/  user 'demo', password (\S+)", first).group(1)
    assert re.search(r"^  API key: sk-sym-\S+", first, re.M)
    demo = get_user_model().objects.get(username="demo")
    assert password not in demo.password
    assert demo.memberships.get().role == "owner" and demo.memberships.get().project.name == "Demo project"
    client = Client()
    assert client.post("/accounts/login/", {"login": "demo", "password": password}).status_code == 302

    second = _run()
    assert password not in second and "manage.py changepassword demo" in second
    assert get_user_model().objects.filter(username="demo").count() == 1
