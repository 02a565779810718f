"""Every administrative change through the management API writes exactly one audit event, in its
transaction: the admin token as the actor, source "api", the request's X-Request-ID, before and
after with secrets masked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from approvals import services as approval_services
from gateway import identity, services
from gateway.models import AuditEvent, Membership, Provider, VirtualKey
from tests.audit.conftest import dumped, events, only_event
from tests.factories import UserFactory
from tests.gateway.admin_api.conftest import BASE, Api
from tests.portal.conftest import World

pytestmark = pytest.mark.django_db

PROVIDER_SECRET = "sk-provider-canary-5f1e9a7c3b2d4e6f8a0b"


def _put(api: Api, path: str, body: Any) -> Any:
    return api.client.put(BASE + path, json.dumps(body), content_type="application/json")


def _provider(world: World) -> Provider:
    return services.create_provider(name="upstream-two", kind="openai", api_key="sk-old-provider-secret-0001")


# (action, object_type, the call: (api, world) -> response, expected status)
Case = tuple[str, str, Callable[[Api, World], Any], int]
CASES: list[Case] = [
    ("business_unit.create", "business_unit", lambda api, w: api.post("/business-units", {"name": "Logistics"}), 201),
    (
        "business_unit.update",
        "business_unit",
        lambda api, w: api.patch(f"/business-units/{w.unit.id}", {"name": "Retail EU"}),
        200,
    ),
    (
        "business_unit.manager.add",
        "user",
        lambda api, w: api.post(f"/business-units/{w.unit.id}/managers", {"user": w.dev_b.username}),
        200,
    ),
    (
        "project.create",
        "project",
        lambda api, w: api.post(
            "/projects", {"name": "Fraud", "business_unit": w.unit.id, "allowed_models": [w.model.name]}
        ),
        201,
    ),
    ("project.update", "project", lambda api, w: api.patch(f"/projects/{w.project_b.id}", {"rpm_limit": 90}), 200),
    ("project.delete", "project", lambda api, w: api.delete(f"/projects/{w.project_b.id}"), 204),
    (
        "membership.add",
        "membership",
        lambda api, w: api.post(f"/projects/{w.project_a.id}/members", {"user": w.newcomer.username}),
        201,
    ),
    (
        "membership.role.change",
        "membership",
        lambda api, w: api.patch(
            f"/projects/{w.project_b.id}/members/{Membership.objects.get(user=w.dev_b).id}", {"role": "owner"}
        ),
        200,
    ),
    (
        "membership.remove",
        "membership",
        lambda api, w: api.delete(f"/projects/{w.project_b.id}/members/{Membership.objects.get(user=w.dev_b).id}"),
        204,
    ),
    (
        "provider.create",
        "provider",
        lambda api, w: api.post("/providers", {"name": "canary", "kind": "openai", "api_key": PROVIDER_SECRET}),
        201,
    ),
    ("provider.update", "provider", lambda api, w: api.patch(f"/providers/{_provider(w).id}", {"approved": True}), 200),
    (
        "provider.secret.rotate",
        "provider",
        lambda api, w: api.patch(f"/providers/{_provider(w).id}", {"api_key": PROVIDER_SECRET}),
        200,
    ),
    ("provider.delete", "provider", lambda api, w: api.delete(f"/providers/{_provider(w).id}"), 204),
    (
        "model.create",
        "model",
        lambda api, w: api.post(
            "/models",
            {
                "name": "gpt-new",
                "deployments": [
                    {
                        "provider": w.model.deployments.get().provider_id,
                        "upstream_model": "gpt-4.1",
                        "input_price": "2",
                        "output_price": "8",
                    }
                ],
            },
        ),
        201,
    ),
    ("model.update", "model", lambda api, w: api.patch(f"/models/{w.other_model.id}", {"description": "cheaper"}), 200),
    ("model.delete", "model", lambda api, w: api.delete(f"/models/{w.other_model.id}"), 204),
    ("key.create", "virtual_key", lambda api, w: api.post(f"/projects/{w.project_a.id}/keys", {"name": "batch"}), 201),
    ("key.update", "virtual_key", lambda api, w: api.patch(f"/keys/{w.key_a.id}", {"rpm_limit": 5}), 200),
    ("key.revoke", "virtual_key", lambda api, w: api.post(f"/keys/{w.key_a.id}/revoke"), 200),
    ("key.delete", "virtual_key", lambda api, w: api.delete(f"/keys/{w.key_a.id}"), 204),
    (
        "budget.update",
        "budget",
        lambda api, w: _put(api, f"/projects/{w.project_a.id}/budget", {"monthly_limit": "250.00"}),
        200,
    ),
    ("budget.delete", "budget", lambda api, w: api.delete(f"/projects/{w.project_a.id}/budget"), 204),
    (
        "credit.grant",
        "ledger_entry",
        lambda api, w: api.post(
            f"/projects/{w.project_a.id}/credits", {"amount": "25.00", "reason": "pilot", "idempotency_key": "g-1"}
        ),
        201,
    ),
    (
        "credit.adjust",
        "ledger_entry",
        lambda api, w: api.post(f"/projects/{w.project_a.id}/adjustments", {"amount": "-5.00", "reason": "refund"}),
        201,
    ),
    (
        "guardrail_policy.create",
        "guardrail_policy",
        lambda api, w: _put(api, f"/projects/{w.project_a.id}/guardrails", {"input": {"pii": "redact"}}),
        200,
    ),
    (
        "role_mapping.create",
        "role_mapping",
        lambda api, w: api.post("/role-mappings", {"group": "ai-admins", "role": "admin"}),
        201,
    ),
    (
        "role_mapping.delete",
        "role_mapping",
        lambda api, w: api.delete(
            f"/role-mappings/{identity.create_role_mapping(group='g', role='developer', business_unit=None).id}"
        ),
        204,
    ),
    ("user.create", "user", lambda api, w: api.post("/users", {"username": "zoe", "email": "zoe@example.test"}), 201),
    (
        "approval_rule.create",
        "approval_rule",
        lambda api, w: api.post(
            "/approval-rules", {"name": "small", "action": "approve", "applies_to": "credit", "max_amount": "20.00"}
        ),
        201,
    ),
    (
        "approval_rule.update",
        "approval_rule",
        lambda api, w: api.patch(
            f"/approval-rules/{approval_services.create_rule(name='r', action='deny', applies_to='join').id}",
            {"priority": 5},
        ),
        200,
    ),
    (
        "approval_rule.delete",
        "approval_rule",
        lambda api, w: api.delete(
            f"/approval-rules/{approval_services.create_rule(name='r', action='deny', applies_to='join').id}"
        ),
        204,
    ),
]


@pytest.mark.parametrize(("action", "object_type", "call", "status"), CASES, ids=[case[0] for case in CASES])
def test_api_change_writes_one_event_with_the_admin_token_as_actor(
    world: World, api: Api, admin_token: services.IssuedToken, action: str, object_type: str, call: Any, status: int
) -> None:
    api.client.defaults["HTTP_X_REQUEST_ID"] = "req-audit-42"
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = call(api, world)  # what a case sets up first through services is the system's, not the API's
    assert response.status_code == status, response.content
    made = [e for e in events(id__gt=start) if e.source == "api"]
    assert [e.action for e in made] == [action]
    event = made[0]
    assert event.object_type == object_type
    assert (event.actor_type, event.actor_id) == ("admin_token", str(world.admin.pk))
    assert event.actor_label == f"{admin_token.token.prefix}… ({world.admin.username})"
    assert event.request_id == "req-audit-42"
    assert response["X-Request-ID"] == "req-audit-42"
    assert admin_token.secret not in dumped(event)
    assert PROVIDER_SECRET not in dumped(event)


def test_a_new_key_event_shows_the_key_but_never_its_secret_or_hash(world: World, api: Api) -> None:
    response = api.post(f"/projects/{world.project_a.id}/keys", {"name": "batch", "allowed_models": ["gpt-portal"]})
    secret = response.json()["key"]
    key = VirtualKey.objects.get(name="batch")
    event = only_event(action="key.create", object_id=str(key.id))
    assert event.before is None
    assert event.after["name"] == "batch"
    assert event.after["allowed_models"] == ["gpt-portal"]
    assert event.after["prefix"] == key.prefix
    assert event.after["key_hash"] == "[set]"
    assert secret not in dumped(event) and key.key_hash not in dumped(event)


def test_a_provider_secret_shows_only_whether_it_is_set(world: World, api: Api) -> None:
    provider = _provider(world)
    stored = Provider.objects.get(pk=provider.pk).api_key_encrypted
    api.patch(f"/providers/{provider.id}", {"api_key": PROVIDER_SECRET})
    event = only_event(action="provider.secret.rotate")
    assert event.before["api_key_encrypted"] == "[set]" and event.after["api_key_encrypted"] == "[set]"
    assert event.after["api_key_changed"] is True
    text = dumped(event)
    assert PROVIDER_SECRET not in text and stored not in text
    assert Provider.objects.get(pk=provider.pk).api_key_encrypted not in text

    api.patch(f"/providers/{provider.id}", {"api_key": ""})  # removing the key is a rotation to "none"
    removed = events(action="provider.secret.rotate")[-1]
    assert (removed.before["api_key_encrypted"], removed.after["api_key_encrypted"]) == ("[set]", "")


def test_an_update_records_what_changed(world: World, api: Api) -> None:
    api.patch(f"/keys/{world.key_a.id}", {"rpm_limit": 7, "tpm_limit": 7000})
    event = only_event(action="key.update")
    assert (event.before["rpm_limit"], event.after["rpm_limit"]) == (None, 7)
    listed = api.get("/audit-events?action=key.update").json()
    assert listed[0]["changes"] == {
        "rpm_limit": {"before": None, "after": 7},
        "tpm_limit": {"before": None, "after": 7000},
    }


def test_a_created_user_password_is_never_recorded(world: World, api: Api, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOCAL_LOGIN = True
    password = "Tr0ub4dor&3-audit-canary"
    response = api.post("/users", {"username": "yan", "email": "yan@example.test", "password": password})
    assert response.status_code == 201, response.content
    event = only_event(action="user.create", object_label="yan")
    assert event.after["password"] == "[set]"
    assert password not in dumped(event)
    assert UserFactory._meta.model.objects.get(username="yan").password not in dumped(event)


def test_an_api_approval_records_the_decision_and_its_effect_as_the_token(world: World, api: Api) -> None:
    """A decision with an effect is two changes: the request's state and what the approval grants."""
    request = approval_services.file_credit_request(
        user=world.dev_a, project=world.project_a, amount="15.00", reason="Load test"
    )
    response = api.post(f"/credit-requests/{request.id}/approve", {"comment": "go"})
    assert response.status_code == 200, response.content
    decided, granted = events(source="api")
    assert (decided.action, decided.after["state"], decided.after["decided_via"]) == (
        "credit_request.approve",
        "approved",
        "api",
    )
    assert (granted.action, granted.after["amount"]) == ("credit.grant", "15.00")
    assert {decided.actor_type, granted.actor_type} == {"admin_token"}
    assert decided.request_id == granted.request_id != ""

    denied = approval_services.file_credit_request(
        user=world.dev_b, project=world.project_b, amount="15.00", reason="Load test"
    )
    assert api.post(f"/credit-requests/{denied.id}/deny", {"comment": "no"}).status_code == 200
    assert [e.action for e in events(source="api")][2:] == ["credit_request.deny"]
