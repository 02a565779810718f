"""A key's page: limits edited through services.set_key_limits, revoking and rotating as POSTs
after a confirmation, the secret shown once with a copy button, breadcrumbs back to the key.

Tests that write run with `transaction=True`: outside a test transaction Django enforces the
services' `atomic(durable=True)`, as in production.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from django.test import Client
from django.urls import reverse

from gateway import services
from gateway.models import VirtualKey
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_PATTERN = re.compile(r"sk-sym-[A-Za-z0-9_-]{20,}")


@pytest.fixture
def key() -> VirtualKey:
    return services.create_virtual_key(project=ProjectFactory(), name="ci", rpm_limit=60).key


def _url(name: str, key: VirtualKey) -> str:
    return reverse(f"admin:gateway_virtualkey_{name}", args=[key.pk])


def test_key_page_offers_limits_rotate_and_revoke_when_an_administrator_opens_it(
    client: Client, key: VirtualKey
) -> None:
    page = client.get(_url("change", key)).content.decode()

    assert f'action="{_url("limits", key)}"' in page
    assert f'href="{_url("rotate", key)}"' in page and f'href="{_url("revoke", key)}"' in page
    assert 'name="rpm_limit" value="60"' in page


def test_limits_are_saved_through_the_service_when_valid(client: Client, key: VirtualKey) -> None:
    response = client.post(_url("limits", key), {"rpm_limit": "120", "tpm_limit": "50000", "max_streams": ""})

    assert response.status_code == 302 and response["Location"] == _url("change", key)
    key.refresh_from_db()
    assert (key.rpm_limit, key.tpm_limit, key.max_streams) == (120, 50000, None)


@pytest.mark.parametrize("sent", ["0", "-5", "many"])
def test_limit_error_is_shown_beside_the_field_when_invalid(client: Client, key: VirtualKey, sent: str) -> None:
    response = client.post(_url("limits", key), {"rpm_limit": "10", "tpm_limit": sent})

    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == ["tpm_limit"]
    assert "field-tpm_limit" in response.content.decode()
    key.refresh_from_db()
    assert (key.rpm_limit, key.tpm_limit) == (60, None)


def test_revoke_asks_for_confirmation_then_revokes_when_posted(client: Client, key: VirtualKey) -> None:
    confirm = client.get(_url("revoke", key))
    key.refresh_from_db()
    assert confirm.status_code == 200 and key.revoked_at is None
    assert "Yes, revoke this key" in confirm.content.decode()

    response = client.post(_url("revoke", key), {"confirm": "yes"})

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_rotate_shows_the_new_secret_once_with_a_copy_button_when_confirmed(client: Client, key: VirtualKey) -> None:
    response = client.post(_url("rotate", key), {"grace_days": "2"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    [secret] = set(SECRET_PATTERN.findall(page))
    new_key = VirtualKey.objects.exclude(pk=key.pk).get()
    assert hashlib.sha256(secret.encode()).hexdigest() == new_key.key_hash
    assert 'data-copy="issued-key"' in page
    assert new_key.rpm_limit == 60
    key.refresh_from_db()
    assert key.expires_at is not None and key.revoked_at is None
    assert secret not in client.get(_url("change", new_key)).content.decode()


def test_rotate_error_is_shown_on_the_form_when_the_key_is_revoked(client: Client, key: VirtualKey) -> None:
    services.revoke_key(key=key)

    response = client.post(_url("rotate", key), {"grace_days": "1"})

    assert response.status_code == 200
    assert "Only an active key can be rotated" in response.content.decode()
    assert VirtualKey.objects.count() == 1


def test_rotate_refuses_a_grace_period_over_thirty_days_beside_the_field(client: Client, key: VirtualKey) -> None:
    response = client.post(_url("rotate", key), {"grace_days": "31"})

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["grace_days"]


def test_issued_page_has_breadcrumbs_to_the_key_and_a_copy_button_when_a_key_is_added(client: Client) -> None:
    project = ProjectFactory()

    response = client.post(
        reverse("admin:gateway_virtualkey_add"),
        {"project": project.pk, "name": "ci", "expires_at_0": "", "expires_at_1": ""},
    )

    page = response.content.decode()
    key = VirtualKey.objects.get()
    breadcrumbs = page[page.index('<div class="breadcrumbs">') :].split("</div>")[0]
    assert reverse("admin:gateway_virtualkey_changelist") in breadcrumbs
    assert _url("change", key) in breadcrumbs and "Key issued" in breadcrumbs
    assert 'data-copy="issued-key"' in page


@pytest.mark.parametrize("action", ["limits", "revoke", "rotate"])
def test_action_is_refused_when_a_staff_user_lacks_the_permission(
    staff_client: Client, key: VirtualKey, action: str
) -> None:
    form = {"rpm_limit": "1", "confirm": "yes", "grace_days": "1"}

    assert staff_client.get(_url(action, key)).status_code == 403
    assert staff_client.post(_url(action, key), form).status_code == 403

    key.refresh_from_db()
    assert (key.rpm_limit, key.revoked_at) == (60, None)
    assert VirtualKey.objects.count() == 1


def test_key_page_offers_no_actions_when_a_staff_user_may_only_view(staff_client: Client, key: VirtualKey) -> None:
    page = staff_client.get(_url("change", key)).content.decode()

    assert _url("limits", key) not in page and _url("revoke", key) not in page and _url("rotate", key) not in page
