"""Approval rules decide routine requests as they are filed: each rule, its explanation, the edges
of amounts, caps and budgets, order, scope and the enabled flag, and what happens when none holds.
Tasks run eagerly here (tests/approvals/conftest.py), as in the embedded profile: a rule decides
during the filing, after its commit."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from approvals import rules, selectors, services
from approvals.errors import ApprovalError
from approvals.models import AccessRequest, ApprovalRule, CreditRequest, State
from billing import selectors as billing_selectors
from billing import services as billing_services
from gateway import identity
from gateway import services as gateway_services
from gateway.errors import ValidationFailed
from gateway.models import IdpGroups, Membership, Notification, Project
from tests.factories import BusinessUnitFactory

pytestmark = pytest.mark.django_db


def rule(**fields: Any) -> ApprovalRule:
    defaults = {"name": f"rule {uuid.uuid4().hex[:6]}", "action": "approve", "applies_to": "credit"}
    if (fields.get("action", "approve"), fields.get("applies_to", "credit")) == ("approve", "credit"):
        defaults["max_amount"] = "100.00"
    return services.create_rule(**(defaults | fields))


def balance(project: Project) -> Decimal:
    return billing_selectors.project_money(project_ids=[project.id])[project.id].balance


def file_credit(world, amount: str = "50.00", *, by=None, project=None, capture) -> CreditRequest:  # type: ignore[no-untyped-def]
    with capture(execute=True):
        request = services.file_credit_request(
            user=by or world.dev_a, project=project or world.project_a, amount=amount, reason="Load test"
        )
    request.refresh_from_db()
    return request


def spend(project: Project, cost: str) -> None:
    billing_services.record_usage(
        entries=[
            {
                "request_id": uuid.uuid4().hex,
                "created_at": timezone.now(),
                "project_id": project.id,
                "business_unit_id": project.business_unit_id,
                "input_tokens": 10,
                "output_tokens": 5,
                "cost": Decimal(cost),
            }
        ]
    )


def last_event(request):  # type: ignore[no-untyped-def]
    return selectors.request_events(request=request)[-1]


# --- credit: approve up to an amount ---


def test_credit_request_is_auto_approved_with_its_explanation_when_a_rule_holds(
    world, django_capture_on_commit_callbacks
):
    rule(name="Small top-ups", max_amount="100.00", monthly_cap="500.00")
    before = balance(world.project_a)

    request = file_credit(world, "50.00", capture=django_capture_on_commit_callbacks)

    assert request.state == State.AUTO_APPROVED
    assert (request.decided_by, request.decided_via) == (None, "rule")
    assert request.decision_comment == (
        "Approved by rule “Small top-ups” because 50.00 EUR is at most 100.00 EUR; the credit approved by "
        "rules for Checkout this month comes to 50.00 EUR, within the cap of 500.00 EUR."
    )
    event = last_event(request)
    assert (event.from_state, event.to_state, event.via, event.actor, event.reason) == (
        "pending",
        "auto_approved",
        "rule",
        None,
        request.decision_comment,
    )
    assert balance(world.project_a) == before + Decimal("50.00")
    [note] = Notification.objects.filter(user=world.dev_a, kind="request_auto_approved")
    assert "approved by a rule" in note.title
    assert not Notification.objects.filter(user=world.manager).exists()  # nobody had to decide


def test_credit_request_waits_for_a_person_when_it_is_above_the_rules_maximum(
    world, django_capture_on_commit_callbacks
):
    rule(max_amount="100.00")
    before = balance(world.project_a)

    request = file_credit(world, "100.01", capture=django_capture_on_commit_callbacks)

    assert request.state == State.PENDING
    assert balance(world.project_a) == before
    [note] = Notification.objects.filter(user=world.manager, kind="approval_requested")
    assert "100.01 EUR" in note.title


def test_credit_request_of_exactly_the_maximum_is_approved(world, django_capture_on_commit_callbacks):
    rule(max_amount="100.00")

    assert file_credit(world, "100.00", capture=django_capture_on_commit_callbacks).state == State.AUTO_APPROVED


# --- the monthly cap ---


def test_monthly_cap_approves_up_to_the_cap_and_no_further(world, django_capture_on_commit_callbacks):
    rule(name="Capped", max_amount="60.00", monthly_cap="100.00")
    capture = django_capture_on_commit_callbacks

    first = file_credit(world, "60.00", capture=capture)
    second = file_credit(world, "40.00", capture=capture)  # 100.00: exactly the cap
    third = file_credit(world, "0.01", capture=capture)

    assert [first.state, second.state, third.state] == [State.AUTO_APPROVED, State.AUTO_APPROVED, State.PENDING]
    assert rules.auto_approved_credit(project_id=world.project_a.id) == Decimal("100.00")


def test_monthly_cap_is_per_project(world, django_capture_on_commit_callbacks):
    rule(max_amount="60.00", monthly_cap="60.00")
    capture = django_capture_on_commit_callbacks

    file_credit(world, "60.00", capture=capture)
    other = file_credit(world, "60.00", by=world.dev_b, project=world.project_b, capture=capture)

    assert other.state == State.AUTO_APPROVED


def test_monthly_cap_counts_only_this_months_rule_approvals(world, django_capture_on_commit_callbacks):
    rule(max_amount="60.00", monthly_cap="60.00")
    capture = django_capture_on_commit_callbacks
    with time_machine.travel(dt.datetime(2026, 10, 31, 23, 59, tzinfo=dt.UTC), tick=False):
        october = file_credit(world, "60.00", capture=capture)
    manual = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="500", reason="Big run")
    services.approve_request(kind="credit", request_id=manual.id, by=world.manager)  # a person's approval

    with time_machine.travel(dt.datetime(2026, 11, 1, 0, 1, tzinfo=dt.UTC), tick=False):
        november = file_credit(world, "60.00", capture=capture)

    assert (october.state, november.state) == (State.AUTO_APPROVED, State.AUTO_APPROVED)


def test_monthly_cap_counts_approvals_of_every_rule(world, django_capture_on_commit_callbacks):
    rule(name="First", priority=1, max_amount="30.00")
    rule(name="Second", priority=2, max_amount="100.00", monthly_cap="100.00")
    capture = django_capture_on_commit_callbacks

    file_credit(world, "30.00", capture=capture)  # by First, no cap of its own
    request = file_credit(world, "80.00", capture=capture)  # 30 + 80 > 100

    assert request.state == State.PENDING


# --- the business unit's budget ---


def test_headroom_rule_approves_when_the_units_cap_has_room_for_the_amount(world, django_capture_on_commit_callbacks):
    billing_services.set_budget(target=world.unit, monthly_limit="200.00")
    spend(world.project_a, "150.00")
    rule(name="Room", max_amount="100.00", unit_budget="headroom")
    capture = django_capture_on_commit_callbacks

    exact = file_credit(world, "50.00", capture=capture)
    too_much = file_credit(world, "50.01", capture=capture)

    assert (exact.state, too_much.state) == (State.AUTO_APPROVED, State.PENDING)
    assert "Retail's monthly cap has 50.00 EUR left" in exact.decision_comment


def test_headroom_rule_holds_for_a_unit_without_a_budget(world, django_capture_on_commit_callbacks):
    rule(max_amount="100.00", unit_budget="headroom")

    request = file_credit(world, capture=django_capture_on_commit_callbacks)

    assert request.state == State.AUTO_APPROVED
    assert "Retail has no monthly cap" in request.decision_comment


def test_deny_rule_refuses_credit_when_the_unit_has_spent_its_cap(world, django_capture_on_commit_callbacks):
    billing_services.set_budget(target=world.unit, monthly_limit="100.00")
    rule(name="Retail is over", action="deny", unit_budget="over", priority=1, business_unit=world.unit)
    rule(name="Small", max_amount="100.00", priority=2)
    capture = django_capture_on_commit_callbacks
    before = balance(world.project_a)

    under = file_credit(world, "10.00", capture=capture)
    spend(world.project_b, "100.00")
    over = file_credit(world, "10.00", capture=capture)

    assert (under.state, over.state) == (State.AUTO_APPROVED, State.AUTO_DENIED)
    assert over.decision_comment == (
        "Denied by rule “Retail is over” because Retail has spent 100.00 EUR of its monthly cap of 100.00 EUR."
    )
    assert balance(world.project_a) == before + Decimal("10.00")
    assert Notification.objects.filter(user=world.dev_a, kind="request_auto_denied").exists()


def test_deny_rule_for_over_budget_units_does_not_hold_without_a_budget(world, django_capture_on_commit_callbacks):
    rule(action="deny", unit_budget="over")

    assert file_credit(world, capture=django_capture_on_commit_callbacks).state == State.PENDING


# --- access: IdP groups, self-service units ---


def test_join_request_is_approved_for_a_member_of_a_configured_idp_group(world, django_capture_on_commit_callbacks):
    identity.sync_idp_roles(user=world.newcomer, groups={"staff", "cn=devs,ou=groups,dc=corp"})
    rule(name="Developers join", applies_to="join", idp_groups=["cn=devs,ou=groups,dc=corp"])

    with django_capture_on_commit_callbacks(execute=True):
        request = services.file_join_request(user=world.newcomer, project=world.project_a, reason="New in the team")
    request.refresh_from_db()

    assert request.state == State.AUTO_APPROVED
    assert request.decision_comment == (
        "Approved by rule “Developers join” because the requester is in the identity-provider group "
        "“cn=devs,ou=groups,dc=corp”."
    )
    assert Membership.objects.filter(project=world.project_a, user=world.newcomer, role="member").exists()


def test_join_request_waits_when_the_requester_is_in_none_of_the_groups(world, django_capture_on_commit_callbacks):
    identity.sync_idp_roles(user=world.newcomer, groups={"contractors"})
    rule(applies_to="join", idp_groups=["staff"])

    with django_capture_on_commit_callbacks(execute=True):
        request = services.file_join_request(user=world.newcomer, project=world.project_a, reason="Hi")
    request.refresh_from_db()

    assert request.state == State.PENDING
    assert not Membership.objects.filter(project=world.project_a, user=world.newcomer).exists()


def test_join_rule_reads_the_groups_of_the_last_sign_in(world, django_capture_on_commit_callbacks):
    identity.sync_idp_roles(user=world.newcomer, groups={"staff"})
    identity.sync_idp_roles(user=world.newcomer, groups=set())  # removed from the group since
    rule(applies_to="join", idp_groups=["staff"])

    with django_capture_on_commit_callbacks(execute=True):
        request = services.file_join_request(user=world.newcomer, project=world.project_a, reason="Hi")
    request.refresh_from_db()

    assert request.state == State.PENDING
    assert IdpGroups.objects.get(user=world.newcomer).groups == []


def test_new_project_is_created_at_once_in_a_self_service_unit(world, django_capture_on_commit_callbacks):
    lab = BusinessUnitFactory(name="Lab")
    rule(name="Lab self-service", applies_to="new_project", business_unit=lab)

    with django_capture_on_commit_callbacks(execute=True):
        in_lab = services.file_new_project_request(user=world.dev_a, business_unit=lab, name="Toy", reason="Try")
        in_retail = services.file_new_project_request(
            user=world.dev_a, business_unit=world.unit, name="Toy", reason="Try"
        )
    in_lab.refresh_from_db()
    in_retail.refresh_from_db()

    assert (in_lab.state, in_retail.state) == (State.AUTO_APPROVED, State.PENDING)
    assert in_lab.decision_comment == (
        "Approved by rule “Lab self-service” because it approves every request for a new project in Lab."
    )
    project = in_lab.created_project
    assert (project.name, project.business_unit) == ("Toy", lab)
    assert Membership.objects.filter(project=project, user=world.dev_a, role="owner").exists()


def test_new_project_rule_leaves_the_request_pending_when_the_name_was_taken_since(
    world, django_capture_on_commit_callbacks
):
    lab = BusinessUnitFactory(name="Lab")
    request = services.file_new_project_request(user=world.dev_a, business_unit=lab, name="Toy", reason="Try")
    gateway_services.create_project(name="toy", business_unit=lab)
    rule(applies_to="new_project", business_unit=lab)

    with django_capture_on_commit_callbacks(execute=True):
        services.apply_rules(kind="access", request_id=request.id)
    request.refresh_from_db()

    assert request.state == State.PENDING
    assert [e.to_state for e in selectors.request_events(request=request)] == ["pending"]
    # Lab has no managers: the administrators decide
    assert Notification.objects.filter(user=world.admin, kind="approval_requested").exists()


def test_model_request_is_denied_by_a_deny_rule(world, django_capture_on_commit_callbacks):
    rule(name="No new models", action="deny", applies_to="model")

    with django_capture_on_commit_callbacks(execute=True):
        request = services.file_model_request(
            user=world.dev_b, project=world.project_b, model=world.other_model, reason="Cheaper"
        )
    request.refresh_from_db()

    assert request.state == State.AUTO_DENIED
    assert request.decision_comment == "Denied by rule “No new models” because it denies every request for a model."
    assert not world.project_b.allowed_models.filter(id=world.other_model.id).exists()


# --- order, scope, enabled ---


def test_the_first_rule_in_priority_order_decides(world, django_capture_on_commit_callbacks):
    rule(name="Approve", priority=20, max_amount="100.00")
    rule(name="Deny", priority=10, action="deny", max_amount="100.00")

    request = file_credit(world, capture=django_capture_on_commit_callbacks)

    assert request.state == State.AUTO_DENIED
    assert "“Deny”" in request.decision_comment


def test_rules_of_equal_priority_run_in_the_order_they_were_made(world, django_capture_on_commit_callbacks):
    rule(name="Older", priority=5, action="deny", max_amount="100.00")
    rule(name="Newer", priority=5, max_amount="100.00")

    assert "“Older”" in file_credit(world, capture=django_capture_on_commit_callbacks).decision_comment


def test_a_rule_that_does_not_hold_lets_the_next_one_decide(world, django_capture_on_commit_callbacks):
    rule(name="Tiny", priority=1, max_amount="10.00")
    rule(name="Bigger", priority=2, max_amount="100.00")

    assert "“Bigger”" in file_credit(world, capture=django_capture_on_commit_callbacks).decision_comment


def test_disabled_rules_decide_nothing(world, django_capture_on_commit_callbacks):
    rule(enabled=False)

    assert file_credit(world, capture=django_capture_on_commit_callbacks).state == State.PENDING


def test_a_rule_scoped_to_another_unit_decides_nothing(world, django_capture_on_commit_callbacks):
    rule(business_unit=BusinessUnitFactory(name="Elsewhere"))

    assert file_credit(world, capture=django_capture_on_commit_callbacks).state == State.PENDING


def test_a_rule_for_another_kind_decides_nothing(world, django_capture_on_commit_callbacks):
    rule(applies_to="join")

    assert file_credit(world, capture=django_capture_on_commit_callbacks).state == State.PENDING


# --- the service: idempotent, and what it refuses ---


def test_apply_rules_leaves_a_request_alone_once_it_is_no_longer_pending(world, django_capture_on_commit_callbacks):
    request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="50", reason="x")
    services.deny_request(kind="credit", request_id=request.id, by=world.manager, comment="Not now")
    rule(max_amount="100.00")
    before = balance(world.project_a)

    again = services.apply_rules(kind="credit", request_id=request.id)

    assert again.state == State.DENIED
    assert balance(world.project_a) == before
    assert services.apply_rules(kind="credit", request_id=999_999) is None


def test_applying_the_rules_twice_grants_the_credit_once(world, django_capture_on_commit_callbacks):
    rule(max_amount="100.00")
    request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="50", reason="x")
    before = balance(world.project_a)

    services.apply_rules(kind="credit", request_id=request.id)
    services.apply_rules(kind="credit", request_id=request.id)

    assert balance(world.project_a) == before + Decimal("50")
    assert [e.to_state for e in selectors.request_events(request=request)] == ["pending", "auto_approved"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"applies_to": "join", "max_amount": "5"}, "__all__", "Only credit rules have a maximum amount"),
        ({"action": "deny", "max_amount": "5", "monthly_cap": "5"}, "__all__", "only approving rules have one"),
        ({"max_amount": None}, "__all__", "A rule that approves credit needs a maximum amount."),
        ({"max_amount": "0"}, "max_amount", "amount"),
        ({"max_amount": "ten"}, "max_amount", "amount"),
        ({"max_amount": "5.001"}, "max_amount", "amount"),
        ({"action": "allow"}, "action", "action must be one of approve, deny."),
        ({"applies_to": "keys"}, "applies_to", "applies_to must be one of credit, join, new_project, model."),
        ({"unit_budget": "some"}, "unit_budget", "unit_budget must be one of any, headroom, over."),
        ({"priority": -1}, "priority", "priority must be a whole number"),
        ({"priority": True}, "priority", "priority must be a whole number"),
        ({"enabled": "yes"}, "enabled", "enabled must be true or false."),
        ({"name": "  "}, "name", "Give the rule a name."),
        ({"idp_groups": ["ok", 3]}, "idp_groups", "idp_groups must be a list of group names."),
        ({"idp_groups": ["x" * 256]}, "idp_groups", "at most 255 characters"),
    ],
)
def test_contradictory_or_malformed_rules_are_refused_naming_the_field(world, fields, field, message):
    with pytest.raises(ValidationFailed) as refused:
        rule(**fields)

    assert message in str(refused.value)
    assert refused.value.field == (None if field == "__all__" else field)
    assert not ApprovalRule.objects.exists()


def test_rule_names_are_unique(world):
    rule(name="Once")

    with pytest.raises(ApprovalError, match="already exists") as refused:
        rule(name="Once")
    assert refused.value.field == "name"


def test_update_rule_checks_the_result(world):
    made = rule(applies_to="join", action="approve")

    with pytest.raises(ApprovalError, match="Only credit rules"):
        services.update_rule(rule=made, max_amount="5")
    services.update_rule(rule=made, enabled=False, idp_groups="staff\n\n staff \nops")
    made.refresh_from_db()

    assert (made.enabled, made.group_names) == (False, ["staff", "ops"])


def test_describe_says_what_a_rule_does(world):
    made = rule(name="R", max_amount="100", monthly_cap="500", unit_budget="headroom", business_unit=world.unit)

    assert rules.describe(made) == (
        "Approve credit requests in Retail up to 100.00 EUR while the project's credit approved by rules this month "
        "stays within 500.00 EUR while the unit's monthly cap has room."
    )


def test_access_request_kinds_map_to_rule_kinds(world):
    request = AccessRequest(kind="join", project=world.project_a)

    assert rules.applies_to(request) == "join"
