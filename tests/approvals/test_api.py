"""The management API of approvals: /api/v1/credit-requests, /api/v1/access-requests (file, list by
status, read, approve, deny) and /api/v1/approval-rules (CRUD): valid, invalid, unauthenticated,
decided twice. Tasks run eagerly (conftest), so the rules decide before the answer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from approvals import selectors
from approvals.models import AccessRequest, ApprovalRule, CreditRequest
from billing import selectors as billing_selectors
from gateway import services as gateway_services
from gateway.models import Membership
from tests.factories import BusinessUnitFactory
from tests.gateway.admin_api.conftest import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(world) -> Api:  # type: ignore[no-untyped-def]
    return Api(gateway_services.issue_admin_token(username=world.admin.username).secret)


@pytest.fixture
def anonymous(world) -> Api:  # type: ignore[no-untyped-def]
    return Api(None)


def credit_body(world, **changes):  # type: ignore[no-untyped-def]
    return {"project": world.project_a.id, "amount": "50.00", "reason": "Load test", "requested_by": "alice"} | changes


def balance(project) -> Decimal:  # type: ignore[no-untyped-def]
    return billing_selectors.project_money(project_ids=[project.id])[project.id].balance


# --- credit requests ---


def test_credit_request_is_filed_pending_for_a_user_named_by_username_or_id(world, api):
    by_name = api.post("/credit-requests", credit_body(world))
    by_id = api.post("/credit-requests", credit_body(world, requested_by=world.dev_b.id, project=world.project_b.id))

    assert by_name.status_code == 201, by_name.json()
    body = by_name.json()
    assert body["status"] == "pending"
    assert (body["amount"], body["currency"], body["requested_by"], body["requested_by_username"]) == (
        "50.00",
        "EUR",
        world.dev_a.id,
        "alice",
    )
    assert (body["project"], body["business_unit"], body["decided_via"]) == (world.project_a.id, world.unit.id, None)
    assert by_id.status_code == 201 and by_id.json()["requested_by"] == world.dev_b.id
    request = CreditRequest.objects.get(pk=body["id"])
    assert [e.via for e in selectors.request_events(request=request)] == ["api"]


@pytest.mark.django_db(transaction=True)  # the rules run after the filing's commit, before the answer
def test_credit_request_filed_through_the_api_goes_through_the_rules(world, api):
    api.post("/approval-rules", {"name": "Small", "action": "approve", "applies_to": "credit", "max_amount": "100"})
    before = balance(world.project_a)

    response = api.post("/credit-requests", credit_body(world))

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["decided_via"], body["decided_by"]) == ("auto_approved", "rule", None)
    assert body["decision_comment"].startswith("Approved by rule “Small” because 50.00 EUR is at most 100.00 EUR")
    assert balance(world.project_a) == before + Decimal("50.00")


@pytest.mark.parametrize(
    ("changes", "status", "field", "message"),
    [
        ({"requested_by": "nobody"}, 400, "requested_by", "Unknown user: 'nobody'"),
        ({"requested_by": 999999}, 400, "requested_by", "Unknown user: 999999"),
        ({"requested_by": True}, 400, "requested_by", "a user id (a number) or a username"),
        ({"requested_by": 1.5}, 400, "requested_by", "a user id (a number) or a username"),
        ({"project": 999999}, 400, "project", "Unknown project id: 999999"),
        ({"amount": "0"}, 400, "amount", "amount"),
        ({"amount": "12.345"}, 400, "amount", "amount"),
        ({"amount": "NaN"}, 400, "amount", "amount"),
        ({"reason": "  "}, 400, "reason", "Say why you need it"),
        ({"reason": "x" * 2001}, 400, "reason", "too long"),
        ({"colour": "blue"}, 422, "colour", ""),
        ({"requested_by": "nina"}, 400, "requested_by", "nina may not ask for this project"),
    ],
)
def test_credit_request_is_refused_with_a_message_naming_the_field_when_input_is_bad(
    world, api, changes, status, field, message
):
    response = api.post("/credit-requests", credit_body(world, **changes))

    assert response.status_code == status, response.json()
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert not CreditRequest.objects.exists()


def test_credit_request_of_a_deactivated_user_is_refused(world, api):
    world.dev_a.is_active = False
    world.dev_a.save()

    response = api.post("/credit-requests", credit_body(world))

    assert response.status_code == 400
    assert response.json() == {"detail": "User alice is deactivated.", "field": "requested_by"}


def test_second_pending_credit_request_of_the_same_person_answers_409(world, api):
    api.post("/credit-requests", credit_body(world))

    response = api.post("/credit-requests", credit_body(world, amount="20"))

    assert response.status_code == 409
    assert "already have a pending credit request" in response.json()["detail"]


def test_credit_requests_are_listed_newest_first_and_filtered_by_status(world, api):
    first = api.post("/credit-requests", credit_body(world)).json()
    second = api.post("/credit-requests", credit_body(world, requested_by="bob", project=world.project_b.id)).json()
    api.post(f"/credit-requests/{first['id']}/deny", {"comment": "Not now"})

    everything = api.get("/credit-requests").json()
    pending = api.get("/credit-requests?status=pending").json()
    denied = api.get("/credit-requests?status=denied").json()
    bad = api.get("/credit-requests?status=maybe")

    assert [r["id"] for r in everything] == [second["id"], first["id"]]
    assert [r["id"] for r in pending] == [second["id"]]
    assert [(r["id"], r["decided_by"], r["decided_via"]) for r in denied] == [(first["id"], "root", "api")]
    assert bad.status_code == 400 and bad.json()["field"] == "status"
    assert api.get("/credit-requests?limit=0").status_code == 422


def test_credit_request_is_read_by_id_and_unknown_ids_answer_404(world, api):
    filed = api.post("/credit-requests", credit_body(world)).json()

    assert api.get(f"/credit-requests/{filed['id']}").json() == filed
    missing = api.get("/credit-requests/999999")
    assert missing.status_code == 404 and missing.json() == {"detail": "Credit request 999999 not found."}


def test_administrator_approves_a_credit_request_once_and_the_second_decision_answers_409(world, api):
    filed = api.post("/credit-requests", credit_body(world)).json()
    before = balance(world.project_a)

    approved = api.post(f"/credit-requests/{filed['id']}/approve", {"comment": "Fine"})
    again = api.post(f"/credit-requests/{filed['id']}/approve", {})
    denied = api.post(f"/credit-requests/{filed['id']}/deny", {"comment": "No"})

    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["decided_by"], approved.json()["decided_via"]) == (
        "approved",
        "root",
        "api",
    )
    assert (again.status_code, denied.status_code) == (409, 409)
    assert "already approved" in again.json()["detail"]
    assert balance(world.project_a) == before + Decimal("50.00")


def test_deny_needs_a_comment(world, api):
    filed = api.post("/credit-requests", credit_body(world)).json()

    response = api.post(f"/credit-requests/{filed['id']}/deny", {"comment": " "})

    assert response.status_code == 400 and response.json()["field"] == "comment"
    assert api.get(f"/credit-requests/{filed['id']}").json()["status"] == "pending"


def test_administrator_cannot_decide_their_own_request(world, api):
    gateway_services.add_member(project=world.project_a, user=world.admin)
    filed = api.post("/credit-requests", credit_body(world, requested_by="root")).json()

    response = api.post(f"/credit-requests/{filed['id']}/approve", {})

    assert response.status_code == 403
    assert "cannot decide your own request" in response.json()["detail"]


def test_deciding_an_unknown_request_answers_404(world, api):
    assert api.post("/credit-requests/999999/approve", {}).status_code == 404
    assert api.post("/access-requests/999999/deny", {"comment": "x"}).status_code == 404


# --- access requests ---


def test_join_request_is_filed_with_or_without_its_unit(world, api):
    with_unit = api.post(
        "/access-requests",
        {"project": world.project_a.id, "business_unit": world.unit.id, "reason": "New here", "requested_by": "nina"},
    )
    without_unit = api.post(
        "/access-requests", {"project": world.project_b.id, "reason": "Too", "requested_by": "nina"}
    )

    assert with_unit.status_code == 201, with_unit.json()
    body = with_unit.json()
    assert (body["kind"], body["status"], body["project"], body["business_unit"], body["new_project_name"]) == (
        "join",
        "pending",
        world.project_a.id,
        world.unit.id,
        None,
    )
    assert without_unit.status_code == 201 and without_unit.json()["business_unit"] == world.unit.id


def test_new_project_request_is_filed_and_approved_by_an_administrator(world, api):
    filed = api.post(
        "/access-requests",
        {
            "project": None,
            "business_unit": world.unit.id,
            "new_project_name": "Pricing",
            "reason": "A new team",
            "requested_by": "bob",
        },
    )
    assert filed.status_code == 201, filed.json()

    approved = api.post(f"/access-requests/{filed.json()['id']}/approve", {}).json()

    assert (approved["kind"], approved["status"]) == ("new_project", "approved")
    created = AccessRequest.objects.get(pk=approved["id"]).created_project
    assert approved["created_project"] == created.id and created.name == "Pricing"
    assert Membership.objects.filter(project=created, user=world.dev_b, role="owner").exists()


@pytest.mark.django_db(transaction=True)
def test_access_request_filed_through_the_api_goes_through_the_rules(world, api):
    lab = BusinessUnitFactory(name="Lab")
    api.post(
        "/approval-rules",
        {"name": "Lab", "action": "approve", "applies_to": "new_project", "business_unit": lab.id},
    )

    response = api.post(
        "/access-requests",
        {"business_unit": lab.id, "new_project_name": "Toy", "reason": "Try", "requested_by": "alice"},
    )

    assert response.json()["status"] == "auto_approved"
    assert response.json()["created_project"] is not None


def test_model_request_is_filed_for_a_project(world, api):
    response = api.post(
        "/access-requests",
        {"project": world.project_b.id, "model": world.other_model.id, "reason": "Cheaper", "requested_by": "bob"},
    )

    assert response.status_code == 201 and (response.json()["kind"], response.json()["model"]) == (
        "model",
        world.other_model.id,
    )


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({}, 400, "project", "Give project (to join it) or business_unit and new_project_name"),
        ({"business_unit": "UNIT"}, 400, "project", "Give project (to join it)"),
        ({"new_project_name": "X"}, 400, "business_unit", "A new project needs its business_unit."),
        ({"project": "A", "new_project_name": "X"}, 400, "new_project_name", "not both"),
        ({"project": "A", "business_unit": "OTHER"}, 400, "business_unit", "belongs to business unit"),
        ({"project": 999999}, 400, "project", "Unknown project id: 999999"),
        ({"business_unit": 999999, "new_project_name": "X"}, 400, "business_unit", "Unknown business unit id"),
        ({"business_unit": "UNIT", "new_project_name": "Checkout"}, 400, "name", "already has a project named"),
        ({"business_unit": "UNIT", "new_project_name": " "}, 400, "project", "Give project"),
        ({"model": 1}, 400, "project", "give project"),
        ({"project": "A", "model": 999999}, 400, "model", "Unknown model id"),
        ({"project": "A", "requested_by": "alice"}, 400, "project", "already a member"),
        ({"project": "A", "requested_by": None}, 400, "requested_by", "a user id (a number) or a username"),
        ({"project": "A", "kind": "join"}, 422, "kind", ""),
    ],
)
def test_access_request_is_refused_clearly_when_it_is_contradictory_or_unknown(
    world, api, body, status, field, message
):
    other = BusinessUnitFactory(name="Other")
    ids = {"A": world.project_a.id, "UNIT": world.unit.id, "OTHER": other.id}
    payload = {"reason": "Please", "requested_by": "nina"} | {
        key: ids.get(value, value) if isinstance(value, str) and key in ("project", "business_unit") else value
        for key, value in body.items()
    }

    response = api.post("/access-requests", payload)

    assert response.status_code == status, response.json()
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert not AccessRequest.objects.exists()


def test_access_requests_are_listed_by_status_and_decided_once(world, api):
    filed = api.post("/access-requests", {"project": world.project_a.id, "reason": "Hi", "requested_by": "nina"}).json()

    denied = api.post(f"/access-requests/{filed['id']}/deny", {"comment": "Ask your lead"})
    again = api.post(f"/access-requests/{filed['id']}/approve", {})

    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    assert again.status_code == 409
    assert [r["id"] for r in api.get("/access-requests?status=denied").json()] == [filed["id"]]
    assert api.get("/access-requests?status=pending").json() == []
    assert api.get(f"/access-requests/{filed['id']}").json()["decision_comment"] == "Ask your lead"
    assert not Membership.objects.filter(project=world.project_a, user=world.newcomer).exists()


# --- approval rules ---


def test_rules_are_created_read_listed_changed_and_deleted(world, api):
    created = api.post(
        "/approval-rules",
        {
            "name": "Small top-ups",
            "action": "approve",
            "applies_to": "credit",
            "business_unit": world.unit.id,
            "max_amount": "100",
            "monthly_cap": 500,
            "unit_budget": "headroom",
            "priority": 10,
        },
    )
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert {k: rule[k] for k in ("max_amount", "monthly_cap", "business_unit", "enabled", "idp_groups")} == {
        "max_amount": "100.00",
        "monthly_cap": "500.00",
        "business_unit": world.unit.id,
        "enabled": True,
        "idp_groups": [],
    }
    assert rule["summary"].startswith("Approve credit requests in Retail up to 100.00 EUR")
    second = api.post(
        "/approval-rules", {"name": "Staff", "action": "approve", "applies_to": "join", "idp_groups": ["staff"]}
    ).json()

    assert [r["name"] for r in api.get("/approval-rules").json()] == ["Small top-ups", "Staff"]
    assert api.get(f"/approval-rules/{rule['id']}").json() == rule

    changed = api.patch(f"/approval-rules/{rule['id']}", {"enabled": False, "business_unit": None, "priority": 200})
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["enabled"], changed.json()["business_unit"], changed.json()["max_amount"]) == (
        False,
        None,
        "100.00",
    )
    assert [r["name"] for r in api.get("/approval-rules").json()] == ["Staff", "Small top-ups"]

    assert api.delete(f"/approval-rules/{second['id']}").status_code == 204
    assert api.delete(f"/approval-rules/{second['id']}").status_code == 404
    assert list(ApprovalRule.objects.values_list("name", flat=True)) == ["Small top-ups"]


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"applies_to": "credit"}, 400, None, "A rule that approves credit needs a maximum amount."),
        ({"applies_to": "join", "max_amount": "5"}, 400, None, "Only credit rules have a maximum amount"),
        ({"action": "deny", "monthly_cap": "5", "max_amount": "5"}, 400, None, "only approving rules"),
        ({"action": "maybe"}, 400, "action", "action must be one of approve, deny."),
        ({"business_unit": 999999}, 400, "business_unit", "Unknown business unit id: 999999"),
        ({"max_amount": "-1", "applies_to": "credit"}, 400, "max_amount", "max_amount"),
        ({"priority": -5}, 400, "priority", "priority"),
        ({"idp_groups": "staff"}, 422, "idp_groups", ""),
        ({"name": ""}, 400, "name", "Give the rule a name."),
        ({"colour": "red"}, 422, "colour", ""),
    ],
)
def test_bad_rules_are_refused_naming_the_field(world, api, body, status, field, message):
    response = api.post("/approval-rules", {"name": "R", "action": "approve", "applies_to": "join"} | body)

    assert response.status_code == status, response.json()
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert not ApprovalRule.objects.exists()


def test_rule_names_are_unique_and_patches_are_checked(world, api):
    first = api.post("/approval-rules", {"name": "R", "action": "deny", "applies_to": "model"}).json()

    duplicate = api.post("/approval-rules", {"name": "R", "action": "deny", "applies_to": "join"})
    bad_patch = api.patch(f"/approval-rules/{first['id']}", {"max_amount": "5"})
    missing = api.patch("/approval-rules/999999", {"enabled": False})

    assert duplicate.status_code == 400 and duplicate.json()["field"] == "name"
    assert bad_patch.status_code == 400 and "Only credit rules" in bad_patch.json()["detail"]
    assert missing.status_code == 404
    assert api.get(f"/approval-rules/{first['id']}").json()["max_amount"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/credit-requests"),
        ("get", "/credit-requests"),
        ("get", "/credit-requests/1"),
        ("post", "/credit-requests/1/approve"),
        ("post", "/credit-requests/1/deny"),
        ("post", "/access-requests"),
        ("get", "/access-requests"),
        ("get", "/access-requests/1"),
        ("post", "/access-requests/1/approve"),
        ("post", "/access-requests/1/deny"),
        ("get", "/approval-rules"),
        ("post", "/approval-rules"),
        ("get", "/approval-rules/1"),
        ("patch", "/approval-rules/1"),
        ("delete", "/approval-rules/1"),
    ],
)
def test_every_operation_answers_401_without_an_admin_token(world, anonymous, method, path):
    call = getattr(anonymous, method)
    response = call(path, {}) if method in ("post", "patch") else call(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
