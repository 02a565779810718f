"""Writes of the approvals workflow: file a request, decide it, cancel it, expire it.

The state machine (one per request, access or credit):

    (new) -> pending                      file_*: by the requester (portal or API)
    pending -> approved | denied          decide_request: by an approver (portal, email link, API)
    pending -> auto_approved | auto_denied  decide_by_rule: by a rule (issue 12)
    pending -> cancelled                  cancel_request: by the requester only
    pending -> expired                    expire_request: by the clock (a periodic task, issue 12)

Nothing leaves a final state. Every transition is one RequestEvent (from, to, actor, via, reason,
at). A request leaves `pending` exactly once: the row is locked (select_for_update) and the state
changed with a conditional UPDATE (`WHERE state = 'pending'`), so two approvers clicking at the
same moment make one decision; the other gets AlreadyDecided. An approval's effect (membership,
project, allow-list, ledger grant) is applied in the same transaction as the decision: both
happen or neither. People are notified after commit (`transaction.on_commit`): a rolled-back
decision tells nobody. `notify_approvers` and `notify_requester` take ids, so the Celery tasks
of issue 12 can call them (and send mail) unchanged.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import rules, selectors, tasks, tokens
from approvals.errors import AlreadyDecided, ApprovalError, DuplicateRequest, NotAllowed
from approvals.models import (
    MAX_PROJECT_NAME,
    MAX_REASON,
    AccessRequest,
    ApprovalRule,
    CreditRequest,
    MailStep,
    RequestEvent,
    State,
    Via,
)
from approvals.selectors import AnyRequest
from billing import services as billing_services
from gateway import audit
from gateway import selectors as gateway_selectors
from gateway import services as gateway_services
from gateway.money import parse_amount
from gateway.selectors import NotVisible, visible_projects

if TYPE_CHECKING:  # names for type hints only: approvals reaches the core through its selectors and services
    from gateway.models import BusinessUnit, Model, Project

logger = logging.getLogger("approvals")

FINAL_LABELS = {
    State.APPROVED: "approved",
    State.AUTO_APPROVED: "approved by a rule",
    State.DENIED: "denied",
    State.AUTO_DENIED: "denied by a rule",
    State.CANCELLED: "cancelled",
    State.EXPIRED: "expired",
}


def _text(value: Any, *, field: str, required: bool, limit: int = MAX_REASON, what: str = "") -> str:
    """Free text from outside: a string, stripped, without NUL bytes, at most `limit` characters."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApprovalError(f"{field} must be text.", field=field)
    if "\x00" in value:
        raise ApprovalError(f"{field} must not contain NUL characters.", field=field)
    value = value.strip()
    if required and not value:
        raise ApprovalError(what or f"{field} is required.", field=field)
    if len(value) > limit:
        raise ApprovalError(f"{field} is too long: at most {limit} characters (it has {len(value)}).", field=field)
    return value


def _reason(value: Any) -> str:
    return _text(value, field="reason", required=True, what="Say why you need it: the approver reads this first.")


def _via(value: str) -> str:
    if value not in Via.values:
        raise ApprovalError(f"via must be one of {', '.join(Via.values)}.", field="via")
    return value


def _record(
    request: AnyRequest, *, from_state: str, to_state: str, actor: AbstractBaseUser | None, via: str, reason: str = ""
) -> RequestEvent:
    target = {"credit_request": request} if isinstance(request, CreditRequest) else {"access_request": request}
    return RequestEvent.objects.create(
        **target, from_state=from_state, to_state=to_state, actor=actor, via=via, reason=reason
    )


def _filed(request: AnyRequest, *, via: str, duplicate: str) -> AnyRequest:
    """Save a new pending request and its first event. After commit the approval rules run
    (`apply_rules`, a Celery task); they tell the approvers when no rule decides."""
    try:
        with transaction.atomic(durable=True):
            request.save()
            _record(request, from_state="", to_state=State.PENDING, actor=request.requester, via=via)
    except IntegrityError:
        # Two submissions raced past the check below: the partial unique index kept one.
        raise DuplicateRequest(duplicate) from None
    kind, request_id = request.KIND, request.pk
    transaction.on_commit(lambda: _apply_rules_later(kind=kind, request_id=request_id))
    return request


def _apply_rules_later(*, kind: str, request_id: int) -> None:
    """Queue the rules for a request just filed (eagerly in the embedded profile: they decide
    during the POST). If the broker does not take the task, or the eager task fails, the approvers
    are told now: a person decides, and the filing never fails after its commit."""
    try:
        tasks.apply_rules.delay(kind, request_id)
    except Exception:
        logger.exception("approval rules not applied to %s request %s; its approvers decide", kind, request_id)
        notify_approvers(kind=kind, request_id=request_id)


# --- filing ---


def file_join_request(*, user: AbstractBaseUser, project: Project, reason: Any, via: str = Via.PORTAL) -> AccessRequest:
    """Ask to become a member of `project` (its owners decide; without owners, its unit's managers)."""
    reason, via = _reason(reason), _via(via)
    if gateway_selectors.is_member(project_id=project.id, user_id=user.pk):
        raise ApprovalError(f"You are already a member of {project}.", field="project")
    duplicate = f"You already asked to join {project}; that request is pending. Cancel it to ask again."
    if AccessRequest.objects.filter(
        requester=user, kind=AccessRequest.Kind.JOIN, project=project, state=State.PENDING
    ).exists():
        raise DuplicateRequest(duplicate, field="project")
    request = AccessRequest(requester=user, kind=AccessRequest.Kind.JOIN, project=project, reason=reason)
    return _filed(request, via=via, duplicate=duplicate)


def file_new_project_request(
    *, user: AbstractBaseUser, business_unit: BusinessUnit, name: Any, reason: Any, via: str = Via.PORTAL
) -> AccessRequest:
    """Ask for a new project in `business_unit`, with the requester as its owner (the unit's
    managers decide)."""
    reason, via = _reason(reason), _via(via)
    name = _text(name, field="name", required=True, limit=MAX_PROJECT_NAME, what="Give the project a name.")
    if gateway_selectors.project_name_taken(business_unit=business_unit, name=name):
        raise ApprovalError(
            f"{business_unit} already has a project named {name}: ask to join it, or choose another name.",
            field="name",
        )
    duplicate = f"You already asked for a project named {name} in {business_unit}; that request is pending."
    if AccessRequest.objects.filter(
        requester=user,
        kind=AccessRequest.Kind.NEW_PROJECT,
        business_unit=business_unit,
        new_project_name__iexact=name,
        state=State.PENDING,
    ).exists():
        raise DuplicateRequest(duplicate, field="name")
    request = AccessRequest(
        requester=user,
        kind=AccessRequest.Kind.NEW_PROJECT,
        business_unit=business_unit,
        new_project_name=name,
        reason=reason,
    )
    return _filed(request, via=via, duplicate=duplicate)


def file_model_request(
    *, user: AbstractBaseUser, project: Project, model: Model, reason: Any, via: str = Via.PORTAL
) -> AccessRequest:
    """Ask for `model` to be added to the allow-list of `project`, a project the user may see
    (administrators decide)."""
    reason, via = _reason(reason), _via(via)
    if not visible_projects(user=user).filter(id=project.id).exists():
        raise NotVisible("No such project.", field="project")
    if not selectors.requestable_models().filter(id=model.id).exists():
        raise ApprovalError(f"{model} is not offered by the gateway at the moment.", field="model")
    if project.allowed_models.filter(id=model.id).exists():
        raise ApprovalError(f"{project} may already use {model}.", field="model")
    duplicate = f"You already asked for {model} in {project}; that request is pending."
    if AccessRequest.objects.filter(
        requester=user, kind=AccessRequest.Kind.MODEL, project=project, model=model, state=State.PENDING
    ).exists():
        raise DuplicateRequest(duplicate, field="model")
    request = AccessRequest(requester=user, kind=AccessRequest.Kind.MODEL, project=project, model=model, reason=reason)
    return _filed(request, via=via, duplicate=duplicate)


def parse_credit_amount(value: Any) -> Decimal:
    """A credit amount: more than zero, at most two decimals, below 10^10 (the column's range)."""
    return parse_amount(value, field="amount", column=CreditRequest._meta.get_field("amount"), allow_zero=False)


def file_credit_request(
    *, user: AbstractBaseUser, project: Project, amount: Any, reason: Any, via: str = Via.PORTAL
) -> CreditRequest:
    """Ask for `amount` (BILLING_CURRENCY) of credit for `project`, a project the user may see
    (its unit's managers decide)."""
    value = parse_credit_amount(amount)
    reason, via = _reason(reason), _via(via)
    if not visible_projects(user=user).filter(id=project.id).exists():
        raise NotVisible("No such project.", field="project")
    duplicate = (
        f"You already have a pending credit request for {project}. Cancel it first to ask for a different amount."
    )
    if CreditRequest.objects.filter(requester=user, project=project, state=State.PENDING).exists():
        raise DuplicateRequest(duplicate, field="project")
    request = CreditRequest(
        requester=user, project=project, amount=value, currency=settings.BILLING_CURRENCY, reason=reason
    )
    return _filed(request, via=via, duplicate=duplicate)


# --- leaving the pending state ---


def _locked(kind: str, request_id: int) -> AnyRequest:
    table = selectors.table_of(kind)
    request = (
        table.objects.select_for_update(of=("self",))
        .select_related("project__business_unit")
        .filter(pk=request_id)
        .first()
    )
    if request is None:
        raise NotVisible("No such request.", field="request")
    return request


def _still_pending(request: AnyRequest) -> None:
    if request.state != State.PENDING:
        raise AlreadyDecided(
            f"This request was already {FINAL_LABELS.get(request.state, request.state)}; nothing was changed.",
            field="state",
        )


def _leave_pending(request: AnyRequest, *, to: str, actor: AbstractBaseUser | None, via: str, reason: str) -> None:
    """Move a locked, pending request to `to` with one conditional UPDATE, and record the event
    (and the audit event: who decided, through which door)."""
    before = audit.snapshot(request)
    now = timezone.now()
    changed = (
        type(request)
        .objects.filter(pk=request.pk, state=State.PENDING)
        .update(state=to, decided_at=now, decided_by=actor, decided_via=via, decision_comment=reason)
    )
    if changed != 1:  # only without row locks (SQLite): the UPDATE is the arbiter
        request.refresh_from_db(fields=["state"])
        _still_pending(request)
    request.state, request.decided_at, request.decided_by, request.decided_via = to, now, actor, via
    request.decision_comment = reason
    _record(request, from_state=State.PENDING, to_state=to, actor=actor, via=via, reason=reason)
    audit.record(
        action=f"{audit.object_type_of(request)}.{_VERBS[to]}",
        target=request,
        before=before,
        after=audit.snapshot(request),
    )


_VERBS = {
    State.APPROVED: "approve",
    State.AUTO_APPROVED: "approve",
    State.DENIED: "deny",
    State.AUTO_DENIED: "deny",
    State.CANCELLED: "cancel",
    State.EXPIRED: "expire",
}


def _apply(request: AnyRequest, *, actor: str) -> None:
    """The approved request's effect, inside the decision's transaction."""
    if isinstance(request, CreditRequest):
        billing_services.grant_credits_in_transaction(
            project=request.project,
            amount=request.amount,
            reason=f"Credit request #{request.pk}: {request.reason}"[:500],
            idempotency_key=f"credit-request:{request.pk}",  # a retried apply grants once
            actor=actor,
        )
        return
    Kind = AccessRequest.Kind
    if request.kind == Kind.JOIN:
        if not gateway_selectors.is_member(project_id=request.project_id, user_id=request.requester_id):
            gateway_services.add_member_in_transaction(project=request.project, user=request.requester)
    elif request.kind == Kind.NEW_PROJECT:
        unit, name = request.business_unit, request.new_project_name
        if gateway_selectors.project_name_taken(business_unit=unit, name=name):
            raise ApprovalError(
                f"{unit} already has a project named {name} (created since this request was filed). "
                "Deny this request and tell the requester to ask to join it or to choose another name.",
                field="name",
            )
        project = gateway_services.create_project_in_transaction(name=name, business_unit=unit)
        gateway_services.add_member_in_transaction(
            project=project, user=request.requester, role=gateway_selectors.OWNER_ROLE
        )
        request.created_project = project
        request.save(update_fields=["created_project"])
    else:
        gateway_services.allow_model_in_transaction(project=request.project, model=request.model)


def _after_decision(request: AnyRequest) -> None:
    kind, request_id = request.KIND, request.pk
    transaction.on_commit(lambda: notify_requester(kind=kind, request_id=request_id))


def decide_request(
    *,
    kind: str,
    request_id: int,
    by: AbstractBaseUser,
    approve: bool,
    comment: Any = "",
    via: str = Via.PORTAL,
) -> AnyRequest:
    """Approve or deny a pending request as `by`, one of its approvers (or an administrator).

    A denial needs a comment (the requester is told why). Raises NotVisible if `by` may not see
    the request, NotAllowed if they may see but not decide it (their own, not an approver),
    AlreadyDecided if it has left the pending state, ApprovalError if the effect cannot be applied
    (then nothing changed)."""
    comment = _text(
        comment,
        field="comment",
        required=not approve,
        what="Say why you deny it, so the requester knows what to do next.",
    )
    via = _via(via)
    with transaction.atomic(durable=True):
        request = _locked(kind, request_id)
        selectors.get_request_for_user(user=by, kind=kind, request_id=request.pk)  # NotVisible
        _still_pending(request)
        if request.requester_id == by.pk:
            raise NotAllowed("You cannot decide your own request; another approver will.", field="request")
        if not selectors.can_decide(user=by, request=request):
            raise NotAllowed(
                f"Only {selectors.approvers_label(request)} (or an administrator) may decide this request.",
                field="request",
            )
        to = State.APPROVED if approve else State.DENIED
        _leave_pending(request, to=to, actor=by, via=via, reason=comment)
        if approve:
            _apply(request, actor=by.get_username())
        _after_decision(request)
    return request


def approve_request(
    *, kind: str, request_id: int, by: AbstractBaseUser, comment: Any = "", via: str = Via.PORTAL
) -> AnyRequest:
    return decide_request(kind=kind, request_id=request_id, by=by, approve=True, comment=comment, via=via)


def deny_request(
    *, kind: str, request_id: int, by: AbstractBaseUser, comment: Any, via: str = Via.PORTAL
) -> AnyRequest:
    return decide_request(kind=kind, request_id=request_id, by=by, approve=False, comment=comment, via=via)


def decide_by_rule(
    *, kind: str, request_id: int, approve: bool, rule: str, explanation: Any, rule_id: int | None = None
) -> AnyRequest:
    """A rule's decision (issue 12): auto_approved (effect applied) or auto_denied, explained
    ("approved by rule X because ..."), with no actor."""
    explanation = _text(explanation, field="explanation", required=True)
    with transaction.atomic(durable=True):
        request = _locked(kind, request_id)
        _still_pending(request)
        _rule_decides(request, approve=approve, rule=rule, rule_id=rule_id, explanation=explanation)
    return request


def _rule_decides(request: AnyRequest, *, approve: bool, rule: str, rule_id: int | None, explanation: str) -> None:
    to = State.AUTO_APPROVED if approve else State.AUTO_DENIED
    actor = audit.Actor(audit.ActorType.RULE, "" if rule_id is None else str(rule_id), rule)
    with audit.acting(actor=actor, source=audit.Source.RULE):  # the decision and its effect are the rule's
        _leave_pending(request, to=to, actor=None, via=Via.RULE, reason=explanation)
        if approve:
            _apply(request, actor=f"rule:{rule}"[:150])
    _after_decision(request)


def cancel_request(*, kind: str, request_id: int, by: AbstractBaseUser, reason: Any = "") -> AnyRequest:
    """The requester withdraws their pending request. Nobody else may cancel it."""
    reason = _text(reason, field="reason", required=False)
    with transaction.atomic(durable=True):
        request = _locked(kind, request_id)
        selectors.get_request_for_user(user=by, kind=kind, request_id=request.pk)  # NotVisible
        if request.requester_id != by.pk:
            raise NotAllowed("Only the person who asked may cancel a request.", field="request")
        _still_pending(request)
        _leave_pending(request, to=State.CANCELLED, actor=by, via=Via.PORTAL, reason=reason)
    return request


def expire_request(*, kind: str, request_id: int, reason: str = "No decision in time.") -> AnyRequest:
    """The clock ends a request nobody decided (the periodic task of issue 12 calls this). The
    requester is told."""
    with transaction.atomic(durable=True):
        request = _locked(kind, request_id)
        _still_pending(request)
        _leave_pending(request, to=State.EXPIRED, actor=None, via=Via.SYSTEM, reason=reason[:MAX_REASON])
        _after_decision(request)
    return request


# --- notifications (after commit; issue 12's tasks call these and add mail) ---


def _describe(request: AnyRequest) -> str:
    if isinstance(request, CreditRequest):
        return f"{request.amount} {request.currency} of credit for {request.project}"
    Kind = AccessRequest.Kind
    if request.kind == Kind.JOIN:
        return f"to join {request.project}"
    if request.kind == Kind.NEW_PROJECT:
        return f"a new project {request.new_project_name} in {request.business_unit}"
    return f"{request.model} in {request.project}"


def notify_approvers(*, kind: str, request_id: int) -> int:
    """Tell each approver of a pending request that it waits for them (a portal notification)."""
    request = selectors.table_of(kind).objects.filter(pk=request_id).first()
    if request is None or request.state != State.PENDING:
        return 0
    who = request.requester.get_full_name() or request.requester.get_username()
    _queue_mail(tasks.send_approver_mails, kind, request_id, MailStep.FILED)
    return gateway_services.notify(
        users=selectors.approvers_of(request),
        kind="approval_requested",
        title=f"{who} asks for {_describe(request)}"[:200],
        body=request.reason,
        link=selectors.request_path(request),
        project_id=request.project_id,
    )


def notify_requester(*, kind: str, request_id: int) -> int:
    """Tell the requester how their request ended (approved, denied, expired, by a rule)."""
    request = selectors.table_of(kind).objects.filter(pk=request_id).first()
    if request is None or request.state in (State.PENDING, State.CANCELLED):
        return 0
    outcome = FINAL_LABELS.get(request.state, request.state)
    project_id = request.project_id or getattr(request, "created_project_id", None)
    _queue_mail(tasks.send_requester_mail, kind, request_id, MailStep.DECIDED)
    return gateway_services.notify(
        users=[request.requester],
        kind=f"request_{request.state}",
        title=f"Your request for {_describe(request)} was {outcome}"[:200],
        body=request.decision_comment,
        link=selectors.request_path(request),
        project_id=project_id,
    )


# --- mail, reminders, escalation and expiry (the clock: approvals/tasks.py, beat) ---


def _queue_mail(task: Any, kind: str, request_id: int, step: str) -> None:
    """Queue a mail task once the transaction commits (at once outside one). A broker that is
    down, or an eager task that fails, is logged and costs the caller nothing (robust)."""
    transaction.on_commit(lambda: task.delay(kind, request_id, step), robust=True)


def _take_step(kind: str, request_id: int, *, field: str, skip_if: tuple[str, ...] = ()) -> AnyRequest | None:
    """Record a clock step (`field` = now) on a pending request that has not taken it (nor any of
    `skip_if`), under the row lock. The request, or None when there was nothing to do."""
    request = _locked(kind, request_id)
    if request.state != State.PENDING or any(getattr(request, name) for name in (field, *skip_if)):
        return None
    now = timezone.now()
    unset = {f"{name}__isnull": True for name in (field, *skip_if)}
    if type(request).objects.filter(pk=request.pk, state=State.PENDING, **unset).update(**{field: now}) != 1:
        return None  # only without row locks (SQLite): another run took the step
    setattr(request, field, now)
    return request


def remind_request(*, kind: str, request_id: int) -> bool:
    """Remind the approvers of a pending request (once; not after an escalation) and tell the
    requester. False when there was nothing to do."""
    with transaction.atomic(durable=True):
        request = _take_step(kind, request_id, field="reminded_at", skip_if=("escalated_at",))
        if request is None:
            return False
        _queue_mail(tasks.send_approver_mails, kind, request_id, MailStep.REMINDER)
        _queue_mail(tasks.send_requester_mail, kind, request_id, MailStep.REMINDED)
    return True


def escalation_targets(request: AnyRequest) -> list[Any]:
    """Who a request is escalated to: the administrators, but the requester (see selectors)."""
    return list(selectors.administrators().exclude(pk=request.requester_id).order_by("username"))


def escalate_request(*, kind: str, request_id: int) -> bool:
    """Escalate a pending request to the administrators (once): they get the decision mail, the
    requester is told. False when there was nothing to do."""
    with transaction.atomic(durable=True):
        request = _take_step(kind, request_id, field="escalated_at")
        if request is None:
            return False
        users = escalation_targets(request)
        _queue_mail(tasks.send_approver_mails, kind, request_id, MailStep.ESCALATED)
        _queue_mail(tasks.send_requester_mail, kind, request_id, MailStep.ESCALATED)
        title = f"Escalated to you: a request for {_describe(request)}"[:200]
        link = selectors.request_path(request)
        transaction.on_commit(
            lambda: gateway_services.notify(
                users=users, kind="approval_escalated", title=title, body=request.reason, link=link
            ),
            robust=True,
        )
    return True


def _hours_ago(hours: float) -> Any:
    return timezone.now() - timedelta(hours=hours) if hours else None


def _due(*, after: float, before: tuple[float, ...] = (), **where: Any) -> list[tuple[str, int]]:
    """(kind, id) of the pending requests older than `after` hours and younger than each of
    `before` (a later step takes over), oldest first; `after` = 0: the step is off."""
    if not after:
        return []
    found = []
    for kind, table in selectors.TABLES.items():
        rows = table.objects.filter(state=State.PENDING, created_at__lte=_hours_ago(after), **where)
        for hours in before:
            if hours:
                rows = rows.filter(created_at__gt=_hours_ago(hours))
        found += [(kind, pk) for pk in rows.order_by("created_at", "id").values_list("pk", flat=True)]
    return found


def remind_due_requests() -> int:
    """Remind the approvers of each pending request older than APPROVAL_REMIND_AFTER_HOURS (beat).
    Returns how many were reminded; a second run finds nothing more to do."""
    cfg = settings
    due = _due(
        after=cfg.APPROVAL_REMIND_AFTER_HOURS,
        before=(cfg.APPROVAL_ESCALATE_AFTER_HOURS, cfg.APPROVAL_EXPIRE_AFTER_HOURS),
        reminded_at__isnull=True,
        escalated_at__isnull=True,
    )
    return sum(remind_request(kind=kind, request_id=pk) for kind, pk in due)


def escalate_due_requests() -> int:
    """Escalate each pending request older than APPROVAL_ESCALATE_AFTER_HOURS (beat)."""
    cfg = settings
    due = _due(
        after=cfg.APPROVAL_ESCALATE_AFTER_HOURS, before=(cfg.APPROVAL_EXPIRE_AFTER_HOURS,), escalated_at__isnull=True
    )
    return sum(escalate_request(kind=kind, request_id=pk) for kind, pk in due)


def expire_due_requests() -> int:
    """Expire each pending request older than APPROVAL_EXPIRE_AFTER_HOURS (beat); the requester is
    told. A request decided meanwhile is left alone."""
    hours = settings.APPROVAL_EXPIRE_AFTER_HOURS
    expired = 0
    for kind, pk in _due(after=hours):
        try:
            expire_request(kind=kind, request_id=pk, reason=f"Nobody decided it within {hours:g} hours.")
        except AlreadyDecided:
            continue
        expired += 1
    return expired


def decide_by_link(*, token: str, by: AbstractBaseUser, approve: bool, comment: Any = "") -> AnyRequest:
    """Decide the request of a mail's decision link (approvals/tokens.py) as `by`, the approver the
    link was sent to: via=email. LinkRefused when the link may not be used (someone else's,
    expired, the request changed since); then the rules of decide_request."""
    claim = tokens.read_token(token)
    request = selectors.table_of(claim.kind).objects.filter(pk=claim.request_id).first()
    tokens.check_link(claim, user=by, request=request)
    with audit.acting(source=audit.Source.EMAIL_LINK):
        return decide_request(
            kind=claim.kind, request_id=claim.request_id, by=by, approve=approve, comment=comment, via=Via.EMAIL
        )


# --- approval rules (approvals/rules.py says what they mean) ---


def apply_rules(*, kind: str, request_id: int) -> AnyRequest | None:
    """Let the approval rules decide a pending request (the task approvals.apply_rules calls this
    after the request is filed). The first rule that holds approves it, the effect applied in this
    transaction, or denies it, explained in the decision comment and the event (via=rule). When
    none holds, its approvers are told (after commit).

    Idempotent: a request that is gone (None) or no longer pending is left alone. A credit
    request's project row is locked (after the request's own row, the order decide_request
    follows), so one project's requests are decided one after the other and the monthly cap holds
    under concurrent requests. An approval whose effect cannot be applied (a new project's name
    was taken since) leaves the request pending for a person."""
    with transaction.atomic(durable=True):
        try:
            request = _locked(kind, request_id)
        except NotVisible:
            return None
        if request.state != State.PENDING:
            return request
        if isinstance(request, CreditRequest):
            # FOR NO KEY UPDATE: serializes the rules of one project without blocking the rows that
            # merely refer to it (new requests, ledger entries, request logs).
            gateway_services.lock_project(project_id=request.project_id)
        verdict = rules.first_verdict(request)
        if verdict is not None:
            try:
                with transaction.atomic():
                    _rule_decides(
                        request,
                        approve=verdict.approve,
                        rule=verdict.rule.name,
                        rule_id=verdict.rule.pk,
                        explanation=verdict.explanation,
                    )
                return request
            except ApprovalError as exc:
                logger.warning("rule %s could not decide %s request %s: %s", verdict.rule.pk, kind, request_id, exc)
                request.refresh_from_db()
        transaction.on_commit(lambda: notify_approvers(kind=kind, request_id=request_id))
    return request


RULE_FIELDS = (
    "name",
    "description",
    "enabled",
    "priority",
    "action",
    "applies_to",
    "business_unit",
    "max_amount",
    "monthly_cap",
    "unit_budget",
    "idp_groups",
)
MAX_PRIORITY = 2_147_483_647  # PositiveIntegerField's range on every database


def _choice(value: Any, *, field: str, choices: type[Any]) -> str:
    if value not in choices.values:
        raise ApprovalError(f"{field} must be one of {', '.join(choices.values)}.", field=field)
    return value


def _groups(value: Any) -> str:
    """IdP group names, as a list of strings or text with one name per line; stored one per line."""
    names = value.splitlines() if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        raise ApprovalError("idp_groups must be a list of group names.", field="idp_groups")
    cleaned = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if "\x00" in name or "\n" in name or "\r" in name:
            raise ApprovalError("A group name must be one line without NUL characters.", field="idp_groups")
        if len(name) > 255:
            raise ApprovalError("A group name has at most 255 characters.", field="idp_groups")
        cleaned.append(name)
    text = "\n".join(dict.fromkeys(cleaned))
    if len(text) > MAX_REASON:
        raise ApprovalError(f"idp_groups is too long: at most {MAX_REASON} characters in all.", field="idp_groups")
    return text


def _rule_value(field: str, value: Any) -> Any:
    """One rule field from outside (the API), checked; the model's checks follow in _save_rule."""
    if field == "name":
        return _text(value, field="name", required=True, limit=120, what="Give the rule a name.")
    if field == "description":
        return _text(value, field="description", required=False)
    if field == "enabled":
        if not isinstance(value, bool):
            raise ApprovalError("enabled must be true or false.", field="enabled")
        return value
    if field == "priority":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PRIORITY:
            raise ApprovalError(f"priority must be a whole number from 0 to {MAX_PRIORITY}.", field="priority")
        return value
    if field == "action":
        return _choice(value, field=field, choices=ApprovalRule.Action)
    if field == "applies_to":
        return _choice(value, field=field, choices=ApprovalRule.AppliesTo)
    if field == "unit_budget":
        return _choice(value, field=field, choices=ApprovalRule.UnitBudget)
    if field == "business_unit":
        # The core's class, as the rule's own foreign key names it (approvals imports no core model).
        if value is not None and not isinstance(value, ApprovalRule._meta.get_field(field).related_model):
            raise ApprovalError("business_unit must be a business unit, or none for every unit.", field=field)
        return value
    if field in ("max_amount", "monthly_cap"):
        column = ApprovalRule._meta.get_field(field)
        return None if value is None else parse_amount(value, field=field, column=column, allow_zero=False)
    if field == "idp_groups":
        return _groups(value)
    raise TypeError(f"ApprovalRule has no field {field!r}")


def _save_rule(rule: ApprovalRule, fields: dict[str, Any]) -> ApprovalRule:
    for field, value in fields.items():
        setattr(rule, field, _rule_value(field, value))
    try:
        rule.full_clean()
    except DjangoValidationError as exc:
        errors = exc.message_dict
        field = next(iter(errors))
        raise ApprovalError(" ".join(errors[field]), field=None if field == "__all__" else field) from None
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:  # two rules named alike at the same moment
        raise ApprovalError(f"A rule named {rule.name} already exists.", field="name") from None
    return rule


@transaction.atomic(durable=True)
def create_rule(**fields: Any) -> ApprovalRule:
    """A new approval rule. Required: name, action, applies_to; the others have defaults
    (enabled, priority 100, every unit, no conditions). Refused with ApprovalError naming the
    field: unknown choices, amounts on a rule that is not for credit, a credit approval without
    max_amount, a monthly cap on a denying rule, a name already taken."""
    rule = _save_rule(ApprovalRule(), fields)
    audit.record(action="approval_rule.create", target=rule, after=audit.snapshot(rule))
    return rule


@transaction.atomic(durable=True)
def update_rule(*, rule: ApprovalRule, **changes: Any) -> ApprovalRule:
    """Change some fields of a rule (the same checks as create_rule, on the result)."""
    locked = ApprovalRule.objects.select_for_update().get(pk=rule.pk)
    before = audit.snapshot(locked)
    _save_rule(locked, changes)
    audit.record(action="approval_rule.update", target=locked, before=before, after=audit.snapshot(locked))
    return locked


@transaction.atomic(durable=True)
def delete_rule(*, rule: ApprovalRule) -> None:
    """Delete a rule. What it decided stays decided; its explanation keeps its name."""
    if (locked := ApprovalRule.objects.select_for_update().filter(pk=rule.pk).first()) is not None:
        audit.record_deletion(action="approval_rule.delete", target=locked, delete=locked.delete)
