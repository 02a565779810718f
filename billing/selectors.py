"""Reads from billing: what a project may spend this month, what it spent, what a budget is."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum

from billing.models import Budget, LedgerEntry
from billing.periods import current_period
from billing.reports import spend_report
from gateway.errors import ValidationFailed

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


# --- the portal's pages: money per project, usage per day, by model and key, the ledger ---


@dataclass(frozen=True)
class ProjectMoney:
    """A project's money this month. `allowance` is its budget's monthly limit (None: no budget,
    so nothing stops it); `balance` is the sum of its ledger; `available` is what the month may
    spend in all (the balance before this month's usage: allowance and credits)."""

    project_id: int
    allowance: Decimal | None
    hard: bool
    spent: Decimal
    balance: Decimal

    @property
    def available(self) -> Decimal:
        return self.balance + self.spent

    @property
    def percent(self) -> int:
        """Percent of what is available spent, for a bar (0 with no budget)."""
        if self.allowance is None:
            return 0
        if self.available <= 0:
            return 100 if self.spent > 0 else 0
        return int(min(self.spent * 100 / self.available, Decimal(999)))

    @property
    def level(self) -> str:
        """ "ok", "warn" (80 % and more) or "over" (all of it spent)."""
        return "over" if self.percent >= 100 else "warn" if self.percent >= 80 else "ok"


def project_money(*, project_ids: list[int], period: date | None = None) -> dict[int, ProjectMoney]:
    """Each project's budget, this month's spend and balance: two queries for any number."""
    period = period or current_period()
    ids = list(project_ids)
    totals = {
        row["project_id"]: row
        for row in LedgerEntry.objects.filter(project_id__in=ids)
        .values("project_id")
        .annotate(balance=Sum("amount"), spent=Sum("amount", filter=Q(kind=LedgerEntry.Kind.USAGE, period=period)))
        .order_by()
    }
    budgets = {
        row["project_id"]: row
        for row in Budget.objects.filter(scope=Budget.Scope.PROJECT, project_id__in=ids).values(
            "project_id", "monthly_limit", "hard"
        )
    }
    money = {}
    for project_id in ids:
        total, budget = totals.get(project_id, {}), budgets.get(project_id)
        money[project_id] = ProjectMoney(
            project_id=project_id,
            allowance=budget["monthly_limit"] if budget else None,
            hard=bool(budget and budget["hard"]),
            spent=-(total.get("spent") or ZERO),
            balance=total.get("balance") or ZERO,
        )
    return money


@dataclass(frozen=True)
class DailyUsage:
    """Usage per UTC day over a range of days (every day present, zero when nothing was used):
    the totals of all the projects asked for, and each project's own series."""

    days: list[date]
    requests: list[int]
    tokens: list[int]
    spend: list[Decimal]
    by_project: dict[int, dict[str, list]]  # project id -> {"requests": [...], "tokens": [...]}

    def project_totals(self, project_id: int) -> tuple[int, int]:
        series = self.by_project.get(project_id)
        return (sum(series["requests"]), sum(series["tokens"])) if series else (0, 0)


def daily_usage(*, project_ids: list[int], days: int = 30, today: date | None = None) -> DailyUsage:
    """The last `days` days up to `today` (UTC), from the ledger's usage debits (requests that
    used tokens or money). One aggregate query (see billing/reports.py)."""
    end = today or datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    calendar = [start + timedelta(days=n) for n in range(days)]
    index = {day: n for n, day in enumerate(calendar)}
    requests, tokens, spend = [0] * days, [0] * days, [ZERO] * days
    by_project: dict[int, dict[str, list]] = {
        pid: {"requests": [0] * days, "tokens": [0] * days} for pid in project_ids
    }
    if project_ids:
        for row in spend_report(group_by="project", period="day", start=start, end=end, project_ids=project_ids):
            n = index[row.bucket]
            used = row.input_tokens + row.output_tokens
            requests[n] += row.requests
            tokens[n] += used
            spend[n] += row.spend
            series = by_project.setdefault(row.project_id, {"requests": [0] * days, "tokens": [0] * days})
            series["requests"][n] += row.requests
            series["tokens"][n] += used
    return DailyUsage(days=calendar, requests=requests, tokens=tokens, spend=spend, by_project=by_project)


@dataclass(frozen=True)
class UsageShare:
    """One model's (or key's) usage this month, with last month's beside it."""

    name: str  # the model, or the key's prefix
    key_id: int | None
    requests: int
    input_tokens: int
    output_tokens: int
    spend: Decimal
    last_requests: int
    last_spend: Decimal


def usage_by(*, project_id: int, group_by: str, today: date | None = None) -> list[UsageShare]:
    """A project's usage per model ("model") or per key ("key") this month and last month, the
    largest spend this month first. One aggregate query."""
    today = today or datetime.now(UTC).date()
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    rows = spend_report(group_by=group_by, period="month", start=last_month, end=today, project_ids=[project_id])
    shares: dict[tuple, dict] = {}
    for row in rows:
        name = row.model if group_by == "model" else row.key_prefix
        entry = shares.setdefault(
            (name, row.key_id),
            {"requests": 0, "input": 0, "output": 0, "spend": ZERO, "last_requests": 0, "last_spend": ZERO},
        )
        if row.bucket == this_month:
            entry["requests"] += row.requests
            entry["input"] += row.input_tokens
            entry["output"] += row.output_tokens
            entry["spend"] += row.spend
        else:
            entry["last_requests"] += row.requests
            entry["last_spend"] += row.spend
    result = [
        UsageShare(
            name=name or "",
            key_id=key_id,
            requests=e["requests"],
            input_tokens=e["input"],
            output_tokens=e["output"],
            spend=e["spend"],
            last_requests=e["last_requests"],
            last_spend=e["last_spend"],
        )
        for (name, key_id), e in shares.items()
    ]
    return sorted(result, key=lambda s: (-s.spend, -s.last_spend, s.name))


LEDGER_PAGE_MAX = 200


@dataclass(frozen=True)
class LedgerPage:
    entries: list[LedgerEntry]
    next_cursor: str | None  # None: these are the oldest entries


def ledger_page(*, project_id: int, cursor: str | None = None, limit: int = 50) -> LedgerPage:
    """A project's ledger, newest first, in keyset pages on (created_at, id): pass a page's
    `next_cursor` for the entries before it. An invalid cursor raises ValidationFailed."""
    if not 1 <= limit <= LEDGER_PAGE_MAX:
        raise ValidationFailed(f"limit must be between 1 and {LEDGER_PAGE_MAX}.", field="limit")
    entries = LedgerEntry.objects.filter(project_id=project_id).order_by("-created_at", "-id")
    if cursor:
        at, last_id = _decode_cursor(cursor)
        entries = entries.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=last_id))
    found = list(entries[: limit + 1])
    page = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        next_cursor = base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode()).decode().rstrip("=")
    return LedgerPage(entries=page, next_cursor=next_cursor)


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_text, id_text = raw.split("|")
        at, last_id = datetime.fromisoformat(at_text), int(id_text)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raise ValidationFailed("cursor is not valid: follow the page's own links.", field="cursor") from None
    if at.tzinfo is None:
        raise ValidationFailed("cursor is not valid: follow the page's own links.", field="cursor")
    return at, last_id
