"""The workflow's mails, HTML with a complete plain-text alternative.

To approvers (a new request, a reminder, an escalation): who asks for what, why, the project's
money this month, and a decision link of their own (approvals/tokens.py). In the plain-text part
the link stands alone on a line and starts with PUBLIC_URL (a fixed point: outside checks find it
there). To the requester: that the approvers were reminded, that it was escalated, how it ended.

Each mail is recorded once sent (SentMail, keyed by request, step and recipient), so a task that
is retried after a failure, or delivered twice, sends each mail once. People without an email
address are skipped (they still get the portal notification).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError
from django.template.loader import render_to_string
from django.urls import reverse

from approvals import selectors, tokens
from approvals.models import AccessRequest, CreditRequest, MailStep, SentMail, State
from approvals.selectors import AnyRequest

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "[Symbiosis]"
_RELATED = {
    "credit": ("requester", "project__business_unit", "decided_by"),
    "access": ("requester", "project__business_unit", "business_unit", "model", "created_project", "decided_by"),
}
_OUTCOMES = {
    State.APPROVED: "approved",
    State.AUTO_APPROVED: "approved by a rule",
    State.DENIED: "denied",
    State.AUTO_DENIED: "denied by a rule",
    State.EXPIRED: "expired",
}


def link_for(*, request: AnyRequest, user: Any) -> str:
    """The absolute decision link for `user` (PUBLIC_URL + /approvals/t/<token>/)."""
    token = tokens.make_token(request=request, user=user)
    return settings.PUBLIC_URL + reverse("approvals:open-link", kwargs={"token": token})


def page_url(request: AnyRequest) -> str:
    return settings.PUBLIC_URL + selectors.request_path(request)


def what(request: AnyRequest) -> str:
    """What is asked, in a few words ("50.00 EUR of credit for Checkout")."""
    if isinstance(request, CreditRequest):
        return f"{request.amount:,.2f} {request.currency} of credit for {request.project.name}"
    Kind = AccessRequest.Kind
    if request.kind == Kind.JOIN:
        return f"to join {request.project.name}"
    if request.kind == Kind.NEW_PROJECT:
        return f"a new project {request.new_project_name} in {request.business_unit.name}"
    return f"the model {request.model.name} in {request.project.name}"


def _name(user: Any) -> str:
    return user.get_full_name() or user.get_username()


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


def facts(request: AnyRequest) -> list[Fact]:
    requester = request.requester
    who = _name(requester) + (f" <{requester.email}>" if requester.email else f" ({requester.get_username()})")
    rows = [Fact("Requested by", who)]
    if isinstance(request, CreditRequest):
        rows.append(Fact("Amount", f"{request.amount:,.2f} {request.currency}"))
    else:
        rows.append(Fact("Request", request.get_kind_display()))
        if request.kind == AccessRequest.Kind.MODEL:
            rows.append(Fact("Model", request.model.name))
        if request.kind == AccessRequest.Kind.NEW_PROJECT:
            rows.append(Fact("New project", request.new_project_name))
            rows.append(Fact("Business unit", request.business_unit.name))
    if request.project is not None:
        rows.append(Fact("Project", f"{request.project.name} (business unit {request.project.business_unit.name})"))
        money = selectors.money_of_project(project=request.project)
        currency = settings.BILLING_CURRENCY
        rows.append(Fact("Balance now", f"{money.balance:,.2f} {currency}"))
        allowance = f" of {money.allowance:,.2f} {currency} a month" if money.allowance is not None else ""
        rows.append(Fact("Spent this month", f"{money.spent:,.2f} {currency}{allowance}"))
    rows.append(Fact("Filed", request.created_at.strftime("%Y-%m-%d %H:%M UTC")))
    return rows


def _load(kind: str, request_id: int) -> AnyRequest | None:
    table = selectors.table_of(kind)
    return table.objects.select_related(*_RELATED[kind]).filter(pk=request_id).first()


def _send(*, key: str, to: Any, subject: str, template: str, context: dict[str, Any]) -> bool:
    """Send one mail unless it went out before; record it once sent. SMTP errors propagate (the
    task retries)."""
    if not to.email or SentMail.objects.filter(key=key).exists():
        return False
    context = {"public_url": settings.PUBLIC_URL, "recipient": _name(to), **context}
    message = EmailMultiAlternatives(
        subject=f"{SUBJECT_PREFIX} {subject}"[:250],
        body=render_to_string(f"approvals/mail/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to.email],
    )
    message.attach_alternative(render_to_string(f"approvals/mail/{template}.html", context), "text/html")
    message.send()
    try:
        SentMail.objects.create(key=key[:120], to=to.email)
    except IntegrityError:  # a twin delivery of the task sent it at the same moment
        logger.info("approval mail %s was sent twice (a duplicate task delivery)", key)
    return True


_APPROVER_SUBJECTS = {
    MailStep.FILED: "{who} asks for {what}",
    MailStep.REMINDER: "Reminder: {who} asks for {what}",
    MailStep.ESCALATED: "Escalated to you: {who} asks for {what}",
}


def send_approver_mails(*, kind: str, request_id: int, step: str) -> int:
    """Mail each approver of a pending request (escalated: each administrator) their own decision
    link. Nothing for a request that is no longer pending. Returns how many mails went out."""
    request = _load(kind, request_id)
    if request is None or request.state != State.PENDING or step not in _APPROVER_SUBJECTS:
        return 0
    if step == MailStep.ESCALATED:
        people = list(selectors.administrators().exclude(pk=request.requester_id).order_by("username"))
    else:
        people = selectors.approvers_of(request)
    subject = _APPROVER_SUBJECTS[step].format(who=_name(request.requester), what=what(request))
    base = {
        "request": request,
        "step": step,
        "what": what(request),
        "who": _name(request.requester),
        "facts": facts(request),
        "page_url": page_url(request),
        "approvers_label": selectors.approvers_label(request),
        "link_hours": f"{settings.APPROVAL_LINK_MAX_AGE_HOURS:g}",
    }
    sent = 0
    for person in people:
        if not person.email:
            continue
        context = {**base, "link": link_for(request=request, user=person)}
        key = f"{kind}:{request_id}:{step}:{person.pk}"
        sent += _send(key=key, to=person, subject=subject, template="approver", context=context)
    return sent


def send_requester_mail(*, kind: str, request_id: int, step: str) -> int:
    """Tell the requester that the approvers were reminded, that the request was escalated, or how
    it ended (approved, denied, by a rule, expired). Returns 1 if a mail went out."""
    request = _load(kind, request_id)
    if request is None:
        return 0
    if step == MailStep.DECIDED:
        if request.state not in _OUTCOMES:
            return 0
        subject = f"Your request for {what(request)} was {_OUTCOMES[request.state]}"
        if request.state == State.EXPIRED:
            subject = f"Your request for {what(request)} expired: nobody decided it in time"
    elif step in (MailStep.REMINDED, MailStep.ESCALATED):
        if request.state != State.PENDING:
            return 0
        subject = (
            f"Your request for {what(request)} is still waiting"
            if step == MailStep.REMINDED
            else f"Your request for {what(request)} went to the administrators"
        )
    else:
        return 0
    context = {
        "request": request,
        "step": step,
        "what": what(request),
        "outcome": _OUTCOMES.get(request.state, ""),
        "approved": request.state in (State.APPROVED, State.AUTO_APPROVED),
        "decided_by": _name(request.decided_by) if request.decided_by_id else "",
        "approvers_label": selectors.approvers_label(request),
        "page_url": page_url(request),
        "project_url": _project_url(request),
    }
    key = f"{kind}:{request_id}:{step}:{request.requester_id}"
    return int(_send(key=key, to=request.requester, subject=subject, template="requester", context=context))


def _project_url(request: AnyRequest) -> str:
    project = getattr(request, "created_project", None) or request.project
    if project is None or request.state not in (State.APPROVED, State.AUTO_APPROVED):
        return ""
    return settings.PUBLIC_URL + reverse("portal:project", kwargs={"project_id": project.pk})
