"""The admin cockpit's tests: an administrator (superuser) signed in, and a staff user with no
permission at all, to show each action refuses those who may not take it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.test import Client

from tests.factories import UserFactory


@pytest.fixture
def client(client: Client, admin_user: AbstractBaseUser) -> Client:
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(db) -> Client:  # type: ignore[no-untyped-def]
    """A staff user who may view keys, projects and ledgers but change nothing."""
    user = UserFactory(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_virtualkey", "view_project", "view_ledgerentry", "view_model", "view_guardrailpolicy"]
        )
    )
    staff = Client()
    staff.force_login(user)
    return staff
