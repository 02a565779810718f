"""Budget alerts: each threshold of a budget (default 50/80/100%) is raised once per month.

Raising an alert writes an `AlertEvent` and a notification for each person concerned, in one
transaction; the unique (budget, month, threshold) constraint decides when two workers race, so
only one of them raises it. After commit, one mail per alert goes to those people and, when the
budget has one, its incoming webhook (Teams, Slack) is posted to. A failed mail or webhook is
logged and recorded on the event, never raised: the alert has been raised either way.

Who is concerned: a project's or a key's budget concerns the project's owners and its business
unit's managers (a key's also the member who created the key); a business unit's budget concerns
its managers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction

from billing.models import AlertEvent, Budget
from billing.periods import current_period, label
from billing.selectors import Standing, budgets_concerning, standing
from gateway import selectors as gateway_selectors
from gateway import telemetry
from gateway.services import notify

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import Project

logger = logging.getLogger(__name__)

NOTIFICATION_KIND = "budget_alert"
WEBHOOK_TIMEOUT = 5.0
_CENT = Decimal("0.01")


@dataclass
class _Raised:
    """An alert raised in this transaction, with what to deliver once it is committed."""

    event: AlertEvent
    recipients: list[AbstractBaseUser]
    headline: str
    body: str
    summary: str
    webhook_url: str = field(repr=False)


def check_project(*, project_id: int, key_ids: list[int] | None = None) -> list[AlertEvent]:
    """Raise the alerts of every budget a project's spend counts against: its own, its keys'
    (`key_ids`, or all of its keys with a budget when None) and its business unit's (whose
    standing is the spend of all the unit's projects). Returns the alerts raised by this call."""
    project = gateway_selectors.get_project(project_id=project_id)
    if project is None:
        return []
    if key_ids is None:
        key_ids = list(
            Budget.objects.filter(scope=Budget.Scope.KEY, key__project_id=project_id).values_list("key_id", flat=True)
        )
    period = current_period()
    raised: list[_Raised] = []
    with transaction.atomic(durable=True):
        for budget in budgets_concerning(
            project_id=project_id, key_ids=key_ids, business_unit_id=project.business_unit_id
        ):
            if budget.scope == Budget.Scope.KEY and budget.key.project_id != project_id:
                continue  # another project's key: checked with its own project
            now = standing(budget, period)
            owner = budget.project_id or budget.key_id or budget.business_unit_id
            telemetry.set_budget_utilisation(scope=budget.scope, owner_id=owner, ratio=float(now.utilisation) / 100)
            raised += _raise_crossed(budget, now, project)
        if raised:
            transaction.on_commit(lambda: _deliver(raised), robust=True)
    return [alert.event for alert in raised]


def _raise_crossed(budget: Budget, now: Standing, project: Project) -> list[_Raised]:
    already = set(AlertEvent.objects.filter(budget=budget, period=now.period).values_list("threshold", flat=True))
    raised = []
    for threshold in sorted(set(budget.thresholds)):
        if threshold > now.utilisation:
            break
        if threshold in already:
            continue
        try:
            with transaction.atomic():
                event = AlertEvent.objects.create(
                    budget=budget, period=now.period, threshold=threshold, spent=now.spent, limit=now.limit
                )
        except IntegrityError:
            continue  # raised by a concurrent check: it delivers it
        recipients = _recipients(budget, project)
        headline, body, summary = _message(budget, now, threshold, project)
        notify(
            users=recipients,
            kind=NOTIFICATION_KIND,
            title=headline,
            body=body,
            project_id=None if budget.scope == Budget.Scope.BUSINESS_UNIT else project.id,
        )
        raised.append(_Raised(event, recipients, headline, body, summary, webhook_url=budget.webhook_url))
    return raised


def _recipients(budget: Budget, project: Project) -> list[AbstractBaseUser]:
    return gateway_selectors.people_concerned(
        business_unit_id=project.business_unit_id,
        owners_of_project_id=None if budget.scope == Budget.Scope.BUSINESS_UNIT else project.id,
        user_id=budget.key.created_by_id if budget.scope == Budget.Scope.KEY else None,
    )


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(_CENT)} {settings.BILLING_CURRENCY}"


def _message(budget: Budget, now: Standing, threshold: int, project: Project) -> tuple[str, str, str]:
    """A headline (mail subject, notification title), the mail body and a one-paragraph summary
    (the webhook's text).
    Names, amounts and the key's visible prefix only: never a secret or the webhook URL."""
    unit = project.business_unit.name
    if budget.scope == Budget.Scope.BUSINESS_UNIT:
        target, refused = f"Business unit '{unit}'", f"requests from all projects of business unit '{unit}'"
        ask = "To raise the unit's monthly limit, ask a gateway administrator."
        why = f"a manager of business unit '{unit}'"
    elif budget.scope == Budget.Scope.KEY:
        key = budget.key
        target = f"Key '{key.name}' ({key.prefix}...) of project '{project.name}'"
        refused = "requests with this key"
        ask = (
            f"To raise the key's monthly limit, ask an owner of project '{project.name}' "
            f"or a manager of business unit '{unit}'."
        )
        why = f"an owner of project '{project.name}', a manager of business unit '{unit}' or the key's creator"
    else:
        target, refused = f"Project '{project.name}'", f"requests from project '{project.name}'"
        ask = (
            f"To ask for more credit, open a credit request for project '{project.name}' in the portal, "
            f"or ask a manager of business unit '{unit}'."
        )
        why = f"an owner of project '{project.name}' or a manager of business unit '{unit}'"
    month = label(now.period)
    used = now.utilisation.quantize(Decimal(1), rounding=ROUND_DOWN)
    headline = f"{target} has used {threshold}% of its monthly budget"
    limit_name = (
        "Available this month (allowance and credits)" if budget.scope == Budget.Scope.PROJECT else "Monthly limit"
    )
    if threshold >= 100 and budget.hard:
        until = "more credit is granted" if budget.scope == Budget.Scope.PROJECT else "its limit is raised"
        consequence = f"This is a hard budget: {refused} are now refused until {until} or the next month begins. {ask}"
    elif threshold >= 100:
        consequence = "This is a soft budget: requests are still served, and spend above it is recorded."
    elif budget.hard:
        consequence = f"This is a hard budget: {refused} will be refused once 100% is used. {ask}"
    else:
        consequence = "This is a soft budget: it raises alerts and refuses nothing."
    body = (
        f"{headline} for {month}.\n\n"
        f"Spent in {month}: {_money(now.spent)}\n"
        f"{limit_name}: {_money(now.limit)}\n"
        f"Used: {used}%\n\n"
        f"{consequence}\n\n"
        f"You receive this as {why}. Each threshold is announced once a month.\n"
    )
    summary = f"{headline}: {_money(now.spent)} of {_money(now.limit)} spent in {month}. {consequence}"
    return headline, body, summary


def _deliver(raised: list[_Raised]) -> None:
    for alert in raised:
        emailed_to = _send_mail(alert)
        webhook_status = _post_webhook(alert) if alert.webhook_url else ""
        alert.event.emailed_to, alert.event.webhook_status = emailed_to, webhook_status
        AlertEvent.objects.filter(pk=alert.event.pk).update(emailed_to=emailed_to, webhook_status=webhook_status)


def _send_mail(alert: _Raised) -> list[str]:
    addresses = sorted({user.email for user in alert.recipients if user.email})
    if not addresses:
        return []
    message = EmailMessage(
        subject=f"[Symbiosis] {alert.headline}",
        body=alert.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=addresses,
        headers={"Auto-Submitted": "auto-generated"},
    )
    try:
        message.send()
    except Exception:
        logger.exception("Budget alert %s: the mail to %d recipients failed", alert.event.pk, len(addresses))
        return []
    return addresses


def _post_webhook(alert: _Raised) -> str:
    """POST {"text": ...}, which Slack and Teams incoming webhooks both accept. The URL's path
    is its secret: only the host is ever logged or stored."""
    host = urlsplit(alert.webhook_url).hostname or "?"
    try:
        response = httpx.post(alert.webhook_url, json={"text": alert.summary}, timeout=WEBHOOK_TIMEOUT)
    except Exception as exc:  # a webhook never breaks the alert; the error's text may hold the URL
        outcome = type(exc).__name__
    else:
        if response.is_success:
            return f"ok: HTTP {response.status_code} ({host})"[:200]
        outcome = f"HTTP {response.status_code}"
    logger.warning("Budget alert %s: the webhook to %s failed (%s)", alert.event.pk, host, outcome)
    return f"failed: {outcome} ({host})"[:200]
