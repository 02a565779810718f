"""The approvals workflow through its services: filing, deciding, cancelling, expiring; who may do
what; the effects of an approval, applied once; input refused with a message naming the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from approvals import selectors, services
from approvals.errors import AlreadyDecided, ApprovalError, DuplicateRequest, NotAllowed
from approvals.models import AccessRequest, CreditRequest, RequestEvent, State, Via
from billing import selectors as billing_selectors
from billing import services as billing_services
from gateway import services as gateway_services
from gateway.errors import ValidationFailed
from gateway.models import Membership, Notification, Project
from gateway.selectors import NotVisible

pytestmark = pytest.mark.django_db


def balance(project: Project) -> Decimal:
    return billing_selectors.project_money(project_ids=[project.id])[project.id].balance


def events(request) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(e.from_state, e.to_state, e.via) for e in selectors.request_events(request=request)]


def credit(world, *, by=None, amount="50.00", project=None):  # type: ignore[no-untyped-def]
    return services.file_credit_request(
        user=by or world.dev_a, project=project or world.project_a, amount=amount, reason="Load test next week"
    )


# --- credit ---


def test_credit_request_is_pending_and_its_approvers_are_told_when_filed(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = credit(world)

    assert (request.state, request.amount, request.currency) == (State.PENDING, Decimal("50.00"), "EUR")
    assert events(request) == [("", "pending", "portal")]
    [note] = Notification.objects.filter(user=world.manager)
    assert note.link == f"/requests/credit/{request.id}/" and "50.00 EUR of credit for Checkout" in note.title
    assert selectors.approvers_of(request) == [world.manager]


def test_approval_grants_the_credit_once_and_tells_the_requester(world, django_capture_on_commit_callbacks):
    request = credit(world)
    before = balance(world.project_a)

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(kind="credit", request_id=request.id, by=world.manager)
    with pytest.raises(AlreadyDecided):
        services.approve_request(kind="credit", request_id=request.id, by=world.admin)

    request.refresh_from_db()
    assert (request.state, request.decided_by, request.decided_via) == (State.APPROVED, world.manager, Via.PORTAL)
    assert balance(world.project_a) == before + Decimal("50.00")
    assert events(request) == [("", "pending", "portal"), ("pending", "approved", "portal")]
    [note] = Notification.objects.filter(user=world.dev_a, kind="request_approved")
    assert note.link == f"/requests/credit/{request.id}/"


def test_a_retried_grant_adds_nothing_when_the_request_was_approved(world):
    request = credit(world)
    services.approve_request(kind="credit", request_id=request.id, by=world.manager)
    after = balance(world.project_a)

    again = billing_services.grant_credits(
        project=world.project_a, amount="50.00", reason="retry", idempotency_key=f"credit-request:{request.id}"
    )

    assert again.created is False and balance(world.project_a) == after


def test_denial_needs_a_comment_and_changes_no_balance(world, django_capture_on_commit_callbacks):
    request = credit(world)
    before = balance(world.project_a)

    with pytest.raises(ApprovalError) as refused:
        services.deny_request(kind="credit", request_id=request.id, by=world.manager, comment="  ")
    assert refused.value.field == "comment"
    with django_capture_on_commit_callbacks(execute=True):
        services.deny_request(kind="credit", request_id=request.id, by=world.manager, comment="Use the pilot budget")

    request.refresh_from_db()
    assert (request.state, request.decision_comment) == (State.DENIED, "Use the pilot budget")
    assert balance(world.project_a) == before
    assert Notification.objects.filter(user=world.dev_a, kind="request_denied").count() == 1


@pytest.mark.parametrize(
    "amount", ["-5", "0", "0.00", "1e20", "10000000000", "NaN", "Infinity", "1.234", "", "abc", None, True, [], 1e400]
)
def test_credit_request_is_refused_naming_the_amount_when_it_is_not_a_positive_bounded_amount(world, amount):
    with pytest.raises(ValidationFailed) as refused:
        credit(world, amount=amount)
    assert refused.value.field == "amount"
    assert not CreditRequest.objects.exists()


@pytest.mark.parametrize("amount", ["0.01", "9999999999.99", "1e3", 25, "12.5"])
def test_credit_request_is_accepted_when_the_amount_is_positive_with_at_most_two_decimals(world, amount):
    assert credit(world, amount=amount).amount == Decimal(str(amount)).quantize(Decimal("0.01"))


@pytest.mark.parametrize("reason", ["", "   ", "nul\x00byte", "x" * 2001, None, 42])
def test_request_is_refused_naming_the_reason_when_it_is_missing_too_long_or_has_nul(world, reason):
    with pytest.raises(ValidationFailed) as refused:
        services.file_credit_request(user=world.dev_a, project=world.project_a, amount="5", reason=reason)
    assert refused.value.field == "reason"


def test_credit_request_is_refused_as_not_visible_when_the_user_cannot_see_the_project(world):
    with pytest.raises(NotVisible):
        credit(world, by=world.dev_b, project=world.project_a)


def test_second_pending_credit_request_is_refused_until_the_first_is_cancelled(world):
    first = credit(world)
    with pytest.raises(DuplicateRequest, match="already have a pending credit request for Checkout"):
        credit(world, amount="10")

    services.cancel_request(kind="credit", request_id=first.id, by=world.dev_a, reason="wrong amount")

    assert credit(world, amount="10").state == State.PENDING


# --- who decides, who cancels ---


def test_nobody_decides_their_own_request_and_administrators_step_in_when_the_only_manager_asks(world):
    request = credit(world, by=world.manager)

    assert selectors.approvers_of(request) == [world.admin]
    with pytest.raises(NotAllowed, match="your own request"):
        services.approve_request(kind="credit", request_id=request.id, by=world.manager)
    services.approve_request(kind="credit", request_id=request.id, by=world.admin)


def test_a_member_who_sees_the_request_may_not_decide_it(world):
    request = credit(world, by=world.admin, project=world.project_a)

    with pytest.raises(NotAllowed, match="managers of Retail"):
        services.approve_request(kind="credit", request_id=request.id, by=world.dev_a)  # owner of A, not a manager


def test_someone_who_may_not_see_the_request_gets_not_visible(world):
    request = credit(world)

    for action in (
        lambda: services.approve_request(kind="credit", request_id=request.id, by=world.dev_b),
        lambda: services.cancel_request(kind="credit", request_id=request.id, by=world.dev_b),
        lambda: selectors.get_request_for_user(user=world.newcomer, kind="credit", request_id=request.id),
        lambda: selectors.get_request_for_user(user=world.dev_a, kind="bogus", request_id=request.id),
        lambda: selectors.get_request_for_user(user=world.dev_a, kind="credit", request_id=request.id + 1000),
    ):
        with pytest.raises(NotVisible):
            action()


def test_only_the_requester_cancels_and_only_while_pending(world):
    request = credit(world)

    with pytest.raises(NotAllowed, match="Only the person who asked"):
        services.cancel_request(kind="credit", request_id=request.id, by=world.manager)
    services.cancel_request(kind="credit", request_id=request.id, by=world.dev_a)
    with pytest.raises(AlreadyDecided, match="already cancelled"):
        services.cancel_request(kind="credit", request_id=request.id, by=world.dev_a)
    with pytest.raises(AlreadyDecided):
        services.approve_request(kind="credit", request_id=request.id, by=world.manager)

    assert events(request)[-1] == ("pending", "cancelled", "portal")


def test_wrong_kind_is_not_visible_when_deciding(world):
    with pytest.raises(NotVisible):
        services.approve_request(kind="other", request_id=1, by=world.admin)


# --- access: join, new project, model ---


def test_join_request_goes_to_the_owners_and_approval_makes_a_member(world):
    request = services.file_join_request(user=world.newcomer, project=world.project_a, reason="New in the team")

    assert selectors.approvers_of(request) == [world.dev_a]
    assert not selectors.can_decide(user=world.manager, request=request)  # A has an owner
    assert selectors.can_decide(user=world.admin, request=request)  # administrators may always step in
    services.approve_request(kind="access", request_id=request.id, by=world.dev_a)

    assert Membership.objects.get(project=world.project_a, user=world.newcomer).role == "member"


def test_join_request_for_a_project_without_owners_goes_to_the_units_managers(world):
    request = services.file_join_request(user=world.newcomer, project=world.project_b, reason="Search work")

    assert selectors.approvers_of(request) == [world.manager]
    assert selectors.pending_for_approver(user=world.manager) == [request]


def test_join_request_is_refused_when_already_a_member_or_already_pending(world):
    with pytest.raises(ApprovalError, match="already a member"):
        services.file_join_request(user=world.dev_a, project=world.project_a, reason="again")
    services.file_join_request(user=world.dev_a, project=world.project_b, reason="help out")
    with pytest.raises(DuplicateRequest, match="already asked to join Search"):
        services.file_join_request(user=world.dev_a, project=world.project_b, reason="help out, please")


def test_new_project_request_creates_the_project_with_the_requester_as_owner_when_approved(world):
    request = services.file_new_project_request(
        user=world.newcomer, business_unit=world.unit, name="  Payments ", reason="The payments team"
    )
    assert request.new_project_name == "Payments"
    assert selectors.approvers_of(request) == [world.manager]

    services.approve_request(kind="access", request_id=request.id, by=world.manager)

    request.refresh_from_db()
    project = Project.objects.get(business_unit=world.unit, name="Payments")
    assert request.created_project == project
    assert Membership.objects.get(project=project, user=world.newcomer).role == "owner"


def test_new_project_request_is_refused_when_the_name_is_taken_in_the_unit(world):
    with pytest.raises(ApprovalError, match="already has a project named checkout") as refused:
        services.file_new_project_request(user=world.newcomer, business_unit=world.unit, name="checkout", reason="x")
    assert refused.value.field == "name"


def test_approval_changes_nothing_when_the_name_was_taken_since_the_request(world, django_capture_on_commit_callbacks):
    request = services.file_new_project_request(
        user=world.newcomer, business_unit=world.unit, name="Payments", reason="x"
    )
    gateway_services.create_project(name="Payments", business_unit=world.unit)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ApprovalError, match="created since this request was filed"),
    ):
        services.approve_request(kind="access", request_id=request.id, by=world.manager)

    request.refresh_from_db()
    assert request.state == State.PENDING and events(request) == [("", "pending", "portal")]
    assert callbacks == []  # nobody was told of a decision that did not happen


def test_model_request_goes_to_administrators_and_approval_allows_the_model(world):
    request = services.file_model_request(
        user=world.dev_b, project=world.project_b, model=world.other_model, reason="Cheaper for tagging"
    )

    assert selectors.approvers_of(request) == [world.admin]
    assert not selectors.can_decide(user=world.manager, request=request)
    services.approve_request(kind="access", request_id=request.id, by=world.admin)

    assert world.project_b.allowed_models.filter(id=world.other_model.id).exists()


def test_model_request_is_refused_when_the_project_may_already_use_it_or_is_not_visible(world):
    with pytest.raises(ApprovalError, match="may already use gpt-portal"):
        services.file_model_request(user=world.dev_a, project=world.project_a, model=world.model, reason="x")
    with pytest.raises(NotVisible):
        services.file_model_request(user=world.dev_b, project=world.project_a, model=world.other_model, reason="x")


# --- the seams for rules and the clock (issue 12) ---


def test_rule_decision_is_auto_approved_explained_and_applied(world, django_capture_on_commit_callbacks):
    request = credit(world, amount="5.00")
    before = balance(world.project_a)

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_by_rule(
            kind="credit", request_id=request.id, approve=True, rule="small-credits", explanation="under 10.00"
        )

    request.refresh_from_db()
    assert (request.state, request.decided_by, request.decided_via) == (State.AUTO_APPROVED, None, Via.RULE)
    assert balance(world.project_a) == before + Decimal("5.00")
    assert Notification.objects.filter(user=world.dev_a, kind="request_auto_approved").exists()


def test_expiry_ends_a_pending_request_and_tells_the_requester(world, django_capture_on_commit_callbacks):
    request = services.file_join_request(user=world.newcomer, project=world.project_a, reason="x")

    with django_capture_on_commit_callbacks(execute=True):
        services.expire_request(kind="access", request_id=request.id)

    request.refresh_from_db()
    assert request.state == State.EXPIRED and events(request)[-1] == ("pending", "expired", "system")
    assert Notification.objects.filter(user=world.newcomer, kind="request_expired").exists()
    with pytest.raises(AlreadyDecided):
        services.approve_request(kind="access", request_id=request.id, by=world.dev_a)


# --- lists ---


def test_pending_for_approver_lists_each_request_for_exactly_its_approvers(world):
    join_a = services.file_join_request(user=world.newcomer, project=world.project_a, reason="x")
    join_b = services.file_join_request(user=world.newcomer, project=world.project_b, reason="x")
    new = services.file_new_project_request(user=world.newcomer, business_unit=world.unit, name="Pay", reason="x")
    model = services.file_model_request(user=world.dev_b, project=world.project_b, model=world.other_model, reason="x")
    credit_a = credit(world)
    own = credit(world, by=world.manager, project=world.project_b)
    everyone = [world.dev_a, world.dev_b, world.manager, world.admin, world.newcomer]

    for request in (join_a, join_b, new, model, credit_a, own):
        listed = {u.username for u in everyone if request in selectors.pending_for_approver(user=u)}
        assert listed == {u.username for u in selectors.approvers_of(request)}, request
    assert selectors.pending_decision_count(user=world.manager) == 3  # join B, new project, credit A
    assert selectors.pending_decision_count(user=world.admin) == 2  # the model, the manager's own credit
    assert {r.id for r in selectors.my_requests(user=world.newcomer)} == {join_a.id, join_b.id, new.id}


def test_events_are_only_added(world):
    request = credit(world)
    services.approve_request(kind="credit", request_id=request.id, by=world.manager)

    assert RequestEvent.objects.filter(credit_request=request).count() == 2
    assert AccessRequest.objects.count() == 0
