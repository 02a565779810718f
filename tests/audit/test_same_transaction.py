"""An audit event lives and dies with its change: written in the change's transaction, it is
rolled back with it. And no event ever holds a secret (a canary sweep over every event)."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from approvals import services as approval_services
from approvals.errors import ApprovalError
from gateway import services
from gateway.models import AuditEvent, Membership, Provider, VirtualKey
from tests.audit.conftest import events
from tests.gateway.admin_api.conftest import Api
from tests.portal.conftest import World

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def test_a_change_rolled_back_after_its_event_leaves_no_event(world: World) -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(Boom), transaction.atomic():
        services.add_member_in_transaction(project=world.project_a, user=world.newcomer)
        assert events(action="membership.add")  # written, inside the transaction
        raise Boom
    assert not Membership.objects.filter(user=world.newcomer).exists()
    assert AuditEvent.objects.count() == before


def test_an_approval_whose_effect_fails_leaves_neither_decision_nor_event(world: World) -> None:
    request = approval_services.file_new_project_request(
        user=world.dev_a, business_unit=world.unit, name="Payments", reason="New team"
    )
    services.create_project(name="Payments", business_unit=world.unit)  # the name is taken meanwhile
    before = AuditEvent.objects.count()
    with pytest.raises(ApprovalError, match="already has a project named Payments"):
        approval_services.decide_request(kind="access", request_id=request.id, by=world.manager, approve=True)
    request.refresh_from_db()
    assert request.state == "pending"
    assert AuditEvent.objects.count() == before
    assert not events(action="access_request.approve")


def test_a_refused_api_change_writes_no_event(world: World, api: Api) -> None:
    before = AuditEvent.objects.count()
    response = api.post(f"/projects/{world.project_a.id}/keys", {"name": "x", "allowed_models": ["no-such-model"]})
    assert response.status_code == 400
    assert AuditEvent.objects.count() == before


def test_no_event_holds_a_secret(world: World, api: Api, admin_token: services.IssuedToken, settings) -> None:  # type: ignore[no-untyped-def]
    """Canary: make every kind of secret the gateway handles, then look for each in every event."""
    settings.LOCAL_LOGIN = True
    secrets = [world.secret_a, admin_token.secret, "sk-canary-provider-7e6d5c4b3a29", "Canary-passw0rd-1f2e3d"]
    secrets.append(api.post(f"/projects/{world.project_a.id}/keys", {"name": "canary"}).json()["key"])
    api.post("/providers", {"name": "canary", "kind": "openai", "api_key": secrets[2]})
    provider = Provider.objects.get(name="canary")
    api.patch(f"/providers/{provider.id}", {"api_key": "sk-canary-provider-rotated-0a1b2c"})
    secrets.append("sk-canary-provider-rotated-0a1b2c")
    api.post("/users", {"username": "canary", "email": "canary@example.test", "password": secrets[3]})
    admin = Client()
    admin.force_login(world.admin)
    rotated = admin.post(reverse("admin:gateway_virtualkey_rotate", args=[world.key_a.pk]), {"grace_days": "1"})
    assert rotated.status_code == 200
    stored = [
        *VirtualKey.objects.values_list("key_hash", flat=True),
        *Provider.objects.exclude(api_key_encrypted="").values_list("api_key_encrypted", flat=True),
        *world.admin.admin_tokens.values_list("token_hash", flat=True),
        *type(world.admin).objects.exclude(password="").values_list("password", flat=True),
    ]
    everything = json.dumps(list(AuditEvent.objects.values()), default=str)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"key.create", "key.rotate", "provider.create", "provider.secret.rotate", "user.create"} <= actions
    assert {"admin_token.create"} <= actions
    for secret in [*secrets, *stored]:
        assert secret not in everything, f"an audit event holds {secret[:12]}…"
