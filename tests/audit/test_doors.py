"""The same changes through the other doors: the portal (a signed-in user), the admin (its forms,
its key actions, the approval-rule list), a mail's decision link and an approval rule. Each event
names the door (`source`), the actor and the request."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from approvals import services as approval_services
from approvals import tokens
from approvals.models import ApprovalRule
from gateway.models import Provider, VirtualKey
from tests.audit.conftest import dumped, events, only_event
from tests.portal.conftest import World

pytestmark = pytest.mark.django_db


# --- portal ---


def test_portal_key_create_revoke_and_rotate_are_the_members_with_source_portal(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.dev_a)
    created = client.post(
        reverse("portal:project-key-create", args=[world.project_a.id]), {"name": "mobile", "models": ["gpt-portal"]}
    )
    assert created.status_code == 200
    mobile = VirtualKey.objects.get(name="mobile")
    rotated = client.post(reverse("portal:project-key-rotate", args=[world.project_a.id, mobile.id]), {"grace": "1d"})
    assert rotated.status_code == 200
    revoked = client.post(reverse("portal:project-key-revoke", args=[world.project_a.id, world.key_a.id]))
    assert revoked.status_code in (200, 302)

    mine = events(source="portal")
    assert [e.action for e in mine] == ["key.create", "key.rotate", "key.revoke"]
    for event in mine:
        assert (event.actor_type, event.actor_id, event.actor_label) == ("user", str(world.dev_a.pk), "alice")
        assert len(event.request_id) == 32  # the middleware's id, also sent back as X-Request-ID
    create, rotate, revoke = mine
    assert create.object_id == str(mobile.id) and create.after["allowed_models"] == ["gpt-portal"]
    new_key = VirtualKey.objects.exclude(pk__in=[mobile.pk, world.key_a.pk]).get()
    assert rotate.object_id == str(mobile.id)
    assert rotate.before["expires_at"] is None and rotate.after["expires_at"] is not None
    assert rotate.after["replaced_by_id"] == new_key.pk
    assert (revoke.before["revoked_at"], revoke.object_id) == (None, str(world.key_a.id))
    assert revoke.after["revoked_at"] is not None
    assert revoked["X-Request-ID"] == revoke.request_id


def test_revoking_a_revoked_key_writes_no_second_event(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.dev_a)
    url = reverse("portal:project-key-revoke", args=[world.project_a.id, world.key_a.id])
    client.post(url)
    client.post(url)
    assert len(events(action="key.revoke")) == 1


def test_portal_decision_is_the_managers_with_source_portal(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    request = approval_services.file_credit_request(
        user=world.dev_a, project=world.project_a, amount="40.00", reason="Load test"
    )
    client: Client = login_as(world.manager)
    response = client.post(
        reverse("portal:request-decide", args=["credit", request.id]), {"decision": "approve", "comment": "ok"}
    )
    assert response.status_code in (200, 302)
    decided, granted = events(source="portal")
    assert (decided.action, decided.object_type, decided.object_id) == (
        "credit_request.approve",
        "credit_request",
        str(request.id),
    )
    assert (decided.before["state"], decided.after["state"]) == ("pending", "approved")
    assert granted.action == "credit.grant" and Decimal(granted.after["amount"]) == Decimal("40")
    assert {decided.actor_label, granted.actor_label} == {"maria"}


# --- admin ---


def test_admin_key_revoke_and_rotate_are_the_administrators_with_source_admin(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.admin)
    other = VirtualKey.objects.create(project=world.project_a, name="other", prefix="sk-sym-x", key_hash="f" * 64)
    assert (
        client.post(reverse("admin:gateway_virtualkey_rotate", args=[world.key_a.pk]), {"grace_days": "2"}).status_code
        == 200
    )
    assert (
        client.post(reverse("admin:gateway_virtualkey_revoke", args=[other.pk]), {"confirm": "yes"}).status_code == 302
    )
    rotate, revoke = events(source="admin")
    assert (rotate.action, revoke.action) == ("key.rotate", "key.revoke")
    assert {rotate.actor_label, revoke.actor_label} == {"root"}
    assert rotate.actor_type == "user"


def test_admin_provider_form_records_the_provider_without_its_key(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.admin)
    secret = "sk-admin-form-canary-9d8c7b6a5f4e"
    response = client.post(
        reverse("admin:gateway_provider_add"),
        {"name": "via-admin", "kind": "openai", "base_url": "", "api_version": "", "api_key": secret, "approved": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(name="via-admin")
    event = only_event(action="provider.create", source="admin")
    assert event.object_id == str(provider.id) and event.after["approved"] is True
    assert event.after["api_key_encrypted"] == "[set]"
    assert secret not in dumped(event) and provider.api_key_encrypted not in dumped(event)


def test_admin_business_unit_managers_are_recorded_one_by_one(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.admin)
    response = client.post(
        reverse("admin:gateway_businessunit_change", args=[world.unit.pk]),
        {"name": "Retail", "managers": [world.dev_b.pk]},  # maria out, bob in
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(world.unit.managers.all()) == [world.dev_b]
    actions = [(e.action, e.object_label) for e in events(source="admin")]
    assert actions == [
        ("business_unit.update", "Retail"),
        ("business_unit.manager.remove", "maria"),
        ("business_unit.manager.add", "bob"),
    ]


def test_admin_approval_rule_saves_and_list_edits_are_recorded(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.admin)
    response = client.post(
        reverse("admin:approvals_approvalrule_add"),
        {
            "name": "Joiners",
            "description": "",
            "enabled": "on",
            "priority": "10",
            "action": "approve",
            "applies_to": "join",
            "business_unit": "",
            "max_amount": "",
            "monthly_cap": "",
            "unit_budget": "any",
            "idp_groups": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = ApprovalRule.objects.get(name="Joiners")
    delete = client.post(reverse("admin:approvals_approvalrule_delete", args=[rule.pk]), {"post": "yes"})
    assert delete.status_code == 302
    created, deleted = events(source="admin")
    assert (created.action, created.after["priority"]) == ("approval_rule.create", 10)
    assert (deleted.action, deleted.before["name"], deleted.object_id) == (
        "approval_rule.delete",
        "Joiners",
        str(rule.pk),
    )


def test_admin_credit_grant_is_recorded_with_the_ledger_entry(world: World, login_as) -> None:  # type: ignore[no-untyped-def]
    client: Client = login_as(world.admin)
    url = reverse("admin:gateway_project_grant_credit", args=[world.project_a.pk])
    form = {"idempotency_key": client.get(url).context["form"].initial["idempotency_key"]}
    assert client.post(url, {**form, "amount": "12.50", "reason": "pilot"}).status_code == 302
    event = only_event(action="credit.grant", source="admin")
    assert (event.after["kind"], event.after["reason"], event.after["project_id"]) == (
        "grant",
        "pilot",
        world.project_a.id,
    )


# --- a mail's decision link ---


def test_email_link_decision_is_the_approvers_with_source_email_link(world: World) -> None:
    request = approval_services.file_credit_request(
        user=world.dev_a, project=world.project_a, amount="30.00", reason="Demo day"
    )
    client = Client()
    client.force_login(world.manager)
    token = tokens.make_token(request=request, user=world.manager)
    assert client.get(reverse("approvals:open-link", kwargs={"token": token})).status_code == 302
    page = reverse("approvals:decide", kwargs={"kind": "credit", "request_id": request.pk})
    assert client.post(page, {"decision": "deny", "comment": "not this month"}).status_code == 302
    event = only_event(action="credit_request.deny")
    assert (event.source, event.actor_type, event.actor_label) == ("email_link", "user", "maria")
    assert event.after["decision_comment"] == "not this month" and event.after["decided_via"] == "email"
    assert token not in dumped(event)


# --- an approval rule ---


def test_rule_decision_and_its_grant_are_the_rules_with_source_rule(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    rule = approval_services.create_rule(
        name="Small top-ups", action="approve", applies_to="credit", max_amount="100.00"
    )
    with django_capture_on_commit_callbacks(execute=True):
        request = approval_services.file_credit_request(
            user=world.dev_a, project=world.project_a, amount="20.00", reason="Load test"
        )
    decided, granted = events(source="rule")
    assert (decided.action, decided.object_id) == ("credit_request.approve", str(request.id))
    assert decided.after["state"] == "auto_approved"
    assert granted.action == "credit.grant"
    for event in (decided, granted):
        assert (event.actor_type, event.actor_id, event.actor_label) == ("rule", str(rule.pk), "Small top-ups")
