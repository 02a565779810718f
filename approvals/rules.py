"""Which approval rule decides a pending request, and why (reads only).

`services.apply_rules` takes the locks, calls `first_verdict` and writes the decision; the admin
and the management API edit the rules (`services.create_rule`, ...). The semantics, in full:

- Enabled rules for the request's kind (credit, join, new_project, model) whose scope is every
  unit or the request's unit (a project's unit; the unit a new project would belong to) are
  tried in order: priority (lower first), then id. The first whose conditions all hold decides,
  approving or denying; later rules are not tried. When none holds, a person decides.
- Conditions (an empty one always holds):
  - `max_amount` (credit): the amount is at most this;
  - `monthly_cap` (credit, approving rules): the credit rules approved for the project this
    calendar month (UTC), plus this amount, is at most the cap. Every rule's approvals count,
    not only this rule's; approvals by people do not;
  - `unit_budget`: `headroom`: the unit has no budget, or its monthly cap minus this month's
    usage is at least the amount (credit) or above zero (other kinds); `over`: the unit has a
    budget and this month's usage has reached its cap;
  - `idp_groups`: the requester was in one of these groups at their last SSO sign-in
    (`gateway.identity.idp_groups_of`).
- The explanation names the rule and every condition that held, with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from approvals.models import MAX_REASON, ApprovalRule, CreditRequest, State
from approvals.selectors import AnyRequest
from billing import selectors as billing_selectors
from billing.periods import period_of
from gateway import identity

if TYPE_CHECKING:  # names for type hints only: approvals reaches the core through its selectors and services
    from gateway.models import BusinessUnit

CENT = Decimal("0.01")
ZERO = Decimal(0)
_WHAT = {
    ApprovalRule.AppliesTo.CREDIT: "credit request",
    ApprovalRule.AppliesTo.JOIN: "request to join a project",
    ApprovalRule.AppliesTo.NEW_PROJECT: "request for a new project",
    ApprovalRule.AppliesTo.MODEL: "request for a model",
}


@dataclass(frozen=True)
class Verdict:
    rule: ApprovalRule
    approve: bool
    explanation: str


def applies_to(request: AnyRequest) -> str:
    """The rules' name for the request's kind."""
    return ApprovalRule.AppliesTo.CREDIT if isinstance(request, CreditRequest) else request.kind


def unit_of(request: AnyRequest) -> BusinessUnit | None:
    """The business unit the request is about (its project's, or the new project's)."""
    if request.project_id is not None:
        return request.project.business_unit
    return request.business_unit


def month_start(now: datetime) -> datetime:
    """The first instant of `now`'s billing month (calendar months in UTC, billing/periods.py)."""
    period = period_of(now)
    return datetime(period.year, period.month, 1, tzinfo=UTC)


def auto_approved_credit(*, project_id: int, now: datetime | None = None) -> Decimal:
    """The credit rules approved for a project in `now`'s month (UTC)."""
    since = month_start(now or timezone.now())
    total = CreditRequest.objects.filter(
        project_id=project_id, state=State.AUTO_APPROVED, decided_at__gte=since
    ).aggregate(total=Sum("amount"))["total"]
    return total or ZERO


def candidate_rules(request: AnyRequest) -> list[ApprovalRule]:
    """The enabled rules that may decide this request, in the order they are tried."""
    unit = unit_of(request)
    scope = Q(business_unit__isnull=True) | Q(business_unit_id=unit.pk if unit else None)
    rules = ApprovalRule.objects.filter(scope, enabled=True, applies_to=applies_to(request))
    return list(rules.select_related("business_unit").order_by("priority", "id"))


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):,} {settings.BILLING_CURRENCY}"


class _Facts:
    """What the rules read about one request, each fetched once and only when a rule asks."""

    def __init__(self, request: AnyRequest, now: datetime) -> None:
        self.request, self.now = request, now
        self.unit = unit_of(request)

    @cached_property
    def groups(self) -> set[str]:
        return identity.idp_groups_of(user=self.request.requester)

    @cached_property
    def auto_approved(self) -> Decimal:
        return auto_approved_credit(project_id=self.request.project_id, now=self.now)

    @cached_property
    def unit_standing(self) -> billing_selectors.Standing | None:
        budget = billing_selectors.business_unit_budget(self.unit.pk) if self.unit else None
        return billing_selectors.cap_standing(budget, period_of(self.now)) if budget else None


def _holds(rule: ApprovalRule, request: AnyRequest, facts: _Facts) -> list[str] | None:
    """Why the rule holds for the request (one clause per condition), or None if it does not."""
    reasons: list[str] = []
    amount = request.amount if isinstance(request, CreditRequest) else None
    if rule.max_amount is not None and amount is not None:
        if amount > rule.max_amount:
            return None
        reasons.append(f"{_money(amount)} is at most {_money(rule.max_amount)}")
    if rule.monthly_cap is not None and amount is not None:
        total = facts.auto_approved + amount
        if total > rule.monthly_cap:
            return None
        reasons.append(
            f"the credit approved by rules for {request.project} this month comes to {_money(total)}, "
            f"within the cap of {_money(rule.monthly_cap)}"
        )
    if rule.unit_budget != ApprovalRule.UnitBudget.ANY:
        standing, unit = facts.unit_standing, facts.unit
        if rule.unit_budget == ApprovalRule.UnitBudget.HEADROOM:
            if standing is None:
                reasons.append(f"{unit or 'the unit'} has no monthly cap")
            else:
                left = standing.limit - standing.spent
                if left <= 0 or (amount is not None and left < amount):
                    return None
                reasons.append(f"{unit}'s monthly cap has {_money(left)} left")
        else:  # OVER
            if standing is None or standing.spent < standing.limit:
                return None
            reasons.append(f"{unit} has spent {_money(standing.spent)} of its monthly cap of {_money(standing.limit)}")
    if groups := rule.group_names:
        found = [group for group in groups if group in facts.groups]
        if not found:
            return None
        reasons.append(f"the requester is in the identity-provider group “{found[0]}”")
    if not reasons:
        where = f" in {rule.business_unit}" if rule.business_unit_id else ""
        verb = "approves" if rule.action == ApprovalRule.Action.APPROVE else "denies"
        reasons.append(f"it {verb} every {_WHAT[rule.applies_to]}{where}")
    return reasons


def explain(rule: ApprovalRule, reasons: list[str]) -> str:
    verb = "Approved" if rule.action == ApprovalRule.Action.APPROVE else "Denied"
    return f"{verb} by rule “{rule.name}” because {'; '.join(reasons)}."[:MAX_REASON]


def first_verdict(request: AnyRequest, *, now: datetime | None = None) -> Verdict | None:
    """The decision of the first rule that holds for this pending request, or None (a person
    decides). The caller holds the locks that make the reads current (services.apply_rules)."""
    facts = _Facts(request, now or timezone.now())
    for rule in candidate_rules(request):
        reasons = _holds(rule, request, facts)
        if reasons is not None:
            return Verdict(
                rule=rule, approve=rule.action == ApprovalRule.Action.APPROVE, explanation=explain(rule, reasons)
            )
    return None


def describe(rule: ApprovalRule) -> str:
    """The rule in one sentence, for the admin's list and the API."""
    parts = [f"{rule.get_action_display()} {_WHAT[rule.applies_to]}s"]
    parts.append(f"in {rule.business_unit}" if rule.business_unit_id else "in every unit")
    if rule.max_amount is not None:
        parts.append(f"up to {_money(rule.max_amount)}")
    if rule.monthly_cap is not None:
        parts.append(f"while the project's credit approved by rules this month stays within {_money(rule.monthly_cap)}")
    if rule.unit_budget == ApprovalRule.UnitBudget.HEADROOM:
        parts.append("while the unit's monthly cap has room")
    elif rule.unit_budget == ApprovalRule.UnitBudget.OVER:
        parts.append("when the unit has spent its monthly cap")
    if groups := rule.group_names:
        parts.append("from members of " + ", ".join(f"“{g}”" for g in groups))
    return " ".join(parts) + "."
