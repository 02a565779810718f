"""Reads from billing: what a project may spend this month, what it spent, what a budget is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Q, Sum

from billing.models import Budget, LedgerEntry
from billing.periods import current_period

ZERO = Decimal(0)


@dataclass(frozen=True)
class Standing:
    """One budget in one month. `limit` is what may be spent in the month: for a project its
    allowance plus the credit it has (balance before this month's usage); for a key or a business
    unit its monthly cap. `spent` is the month's usage as the ledger has it."""

    budget: Budget
    period: date
    limit: Decimal
    spent: Decimal

    @property
    def utilisation(self) -> Decimal:
        """Percent of the limit spent (a limit of zero with spend counts as fully used)."""
        if self.limit > 0:
            return self.spent * 100 / self.limit
        return Decimal(100) if self.spent > 0 else ZERO


def project_budget(project_id: int) -> Budget | None:
    return Budget.objects.filter(scope=Budget.Scope.PROJECT, project_id=project_id).first()


def key_budget(key_id: int) -> Budget | None:
    return Budget.objects.filter(scope=Budget.Scope.KEY, key_id=key_id).first()


def business_unit_budget(business_unit_id: int) -> Budget | None:
    return Budget.objects.filter(scope=Budget.Scope.BUSINESS_UNIT, business_unit_id=business_unit_id).first()


def project_standing(budget: Budget, period: date | None = None) -> Standing:
    period = period or current_period()
    usage_now = Q(kind=LedgerEntry.Kind.USAGE, period=period)
    totals = LedgerEntry.objects.filter(project_id=budget.project_id).aggregate(
        before=Sum("amount", filter=~usage_now), spent=Sum("amount", filter=usage_now)
    )
    return Standing(budget, period, limit=totals["before"] or ZERO, spent=-(totals["spent"] or ZERO))


def cap_standing(budget: Budget, period: date | None = None) -> Standing:
    """A key's or a business unit's month: its cap and its usage."""
    period = period or current_period()
    target = (
        {"key_id": budget.key_id} if budget.scope == Budget.Scope.KEY else {"business_unit_id": budget.business_unit_id}
    )
    spent = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, period=period, **target).aggregate(
        total=Sum("amount")
    )["total"]
    return Standing(budget, period, limit=budget.monthly_limit, spent=-(spent or ZERO))


def standing(budget: Budget, period: date | None = None) -> Standing:
    if budget.scope == Budget.Scope.PROJECT:
        return project_standing(budget, period)
    return cap_standing(budget, period)


def budgets_concerning(*, project_id: int, key_ids: list[int], business_unit_id: int | None) -> list[Budget]:
    """The project's budget, its keys' and its business unit's: every budget a request can touch."""
    where = Q(scope=Budget.Scope.PROJECT, project_id=project_id) | Q(scope=Budget.Scope.KEY, key_id__in=key_ids)
    if business_unit_id is not None:
        where |= Q(scope=Budget.Scope.BUSINESS_UNIT, business_unit_id=business_unit_id)
    return list(Budget.objects.filter(where).select_related("project", "key", "business_unit"))


def ledger(*, project_id: int, limit: int = 100, kinds: list[str] | None = None) -> list[LedgerEntry]:
    entries = LedgerEntry.objects.filter(project_id=project_id)
    if kinds:
        entries = entries.filter(kind__in=kinds)
    return list(entries.order_by("-created_at", "-id")[:limit])


def month_spend(*, project_id: int, period: date | None = None) -> Decimal:
    """A project's usage in a month (whether or not it has a budget)."""
    total = LedgerEntry.objects.filter(
        project_id=project_id, kind=LedgerEntry.Kind.USAGE, period=period or current_period()
    ).aggregate(total=Sum("amount"))["total"]
    return -(total or ZERO)
