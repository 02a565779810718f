"""Spend reports: usage from the ledger, summed in the database per day or month and per group.

A report reads only `usage` entries (grants, allowances, expiries and adjustments move money but are
not spend). Each entry carries the business unit, project, key and model it was charged to when it
was written, so a report groups by those columns and stays right after a project moves to another
unit or a key is deleted. Buckets are UTC days or months of `created_at`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from django.db.models import Count, DateField, Q, Sum
from django.db.models.functions import TruncDay, TruncMonth

from billing.models import Budget, LedgerEntry
from billing.periods import current_period
from gateway import selectors
from gateway.errors import ValidationFailed

GroupBy = Literal["business_unit", "project", "model", "key"]
Period = Literal["day", "month"]

# The ledger columns each grouping sums over. A project (and a key) stays under the unit it was
# charged to, so the rows of a "project" report add up to the rows of a "business_unit" report.
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "business_unit": ("business_unit_id",),
    "project": ("business_unit_id", "project_id"),
    "model": ("model",),
    "key": ("business_unit_id", "project_id", "key_id", "key_prefix"),
}
TRUNCATE = {"day": TruncDay, "month": TruncMonth}
MAX_DAY_BUCKETS = 400


@dataclass(frozen=True)
class SpendRow:
    """One group's usage in one day or month. Fields that are not part of the grouping are None."""

    bucket: dt.date  # the day, or the first day of the month
    business_unit_id: int | None
    business_unit: str | None  # None also when the unit has since been deleted
    project_id: int | None
    project: str | None
    model: str | None
    key_id: int | None
    key_prefix: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    spend: Decimal  # positive: what the requests cost
    estimated_requests: int  # tokens counted by the gateway, not reported by the provider
    unpriced_requests: int  # the model had no price: counted at zero


def spend_report(
    *,
    group_by: GroupBy,
    period: Period,
    start: dt.date,
    end: dt.date,
    project_ids: Iterable[int] | None = None,
    business_unit_id: int | None = None,
) -> list[SpendRow]:
    """Usage from `start` to `end` (both included, UTC) per bucket and group, by bucket then spend
    (largest first). One aggregate query, plus one query per kind of name shown (units, projects)."""
    _check(group_by=group_by, period=period, start=start, end=end)
    entries = LedgerEntry.objects.filter(
        kind=LedgerEntry.Kind.USAGE,
        created_at__gte=_midnight(start),
        created_at__lt=_midnight(end + dt.timedelta(days=1)),
    )
    if project_ids is not None:
        entries = entries.filter(project_id__in=list(project_ids))
    if business_unit_id is not None:
        entries = entries.filter(business_unit_id=business_unit_id)

    columns = GROUP_COLUMNS[group_by]
    bucket = TRUNCATE[period]("created_at", output_field=DateField(), tzinfo=dt.UTC)
    rows = list(
        entries.annotate(bucket=bucket)
        .values("bucket", *columns)
        .annotate(
            requests=Count("id"),
            input_tokens_sum=Sum("input_tokens"),
            output_tokens_sum=Sum("output_tokens"),
            cached_tokens_sum=Sum("cached_tokens"),
            total=Sum("amount"),  # usage is negative: the lowest total is the largest spend
            estimated_requests=Count("id", filter=Q(estimated=True)),
            unpriced_requests=Count("id", filter=Q(priced=False)),
        )
        .order_by("bucket", "total", *columns)
    )

    unit_names = _names(selectors.list_business_units(), rows, "business_unit_id")
    project_names = _names(selectors.list_projects(), rows, "project_id")
    return [_row(row, unit_names=unit_names, project_names=project_names) for row in rows]


def _check(*, group_by: str, period: str, start: dt.date, end: dt.date) -> None:
    if group_by not in GROUP_COLUMNS:
        raise ValidationFailed(f"group_by must be one of: {', '.join(GROUP_COLUMNS)}.", field="group_by")
    if period not in TRUNCATE:
        raise ValidationFailed(f"period must be one of: {', '.join(TRUNCATE)}.", field="period")
    if start > end:
        raise ValidationFailed("start must not be after end.", field="start")
    if period == "day" and (end - start).days + 1 > MAX_DAY_BUCKETS:
        raise ValidationFailed(
            f"A daily report covers at most {MAX_DAY_BUCKETS} days; use period=month for longer ranges.",
            field="end",
        )


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _names(queryset: Any, rows: list[dict[str, Any]], column: str) -> dict[int, str]:
    """The names of the objects the rows refer to, in one query (none when no row has the column)."""
    ids = {row[column] for row in rows if row.get(column) is not None}
    if not ids:
        return {}
    return dict(queryset.filter(pk__in=ids).order_by().prefetch_related(None).values_list("pk", "name"))


def _row(row: Mapping[str, Any], *, unit_names: dict[int, str], project_names: dict[int, str]) -> SpendRow:
    unit_id, project_id = row.get("business_unit_id"), row.get("project_id")
    return SpendRow(
        bucket=row["bucket"],
        business_unit_id=unit_id,
        business_unit=unit_names.get(unit_id) if unit_id is not None else None,
        project_id=project_id,
        project=project_names.get(project_id) if project_id is not None else None,
        model=row.get("model"),
        key_id=row.get("key_id"),
        key_prefix=row.get("key_prefix"),
        requests=row["requests"],
        input_tokens=row["input_tokens_sum"] or 0,
        output_tokens=row["output_tokens_sum"] or 0,
        cached_tokens=row["cached_tokens_sum"] or 0,
        spend=-(row["total"] or Decimal(0)),
        estimated_requests=row["estimated_requests"],
        unpriced_requests=row["unpriced_requests"],
    )


# --- the business-unit report of the portal (managers) ---


@dataclass(frozen=True)
class UnitMonth:
    """A business unit's current month: its usage and its monthly cap (None: the unit has none)."""

    business_unit_id: int
    period: dt.date
    spend: Decimal
    requests: int
    budget: Decimal | None
    hard: bool

    @property
    def utilisation(self) -> int:
        """Percent of the cap spent, for a bar (0 without a cap)."""
        if not self.budget:
            return 100 if self.budget is not None and self.spend > 0 else 0
        return int(min(self.spend * 100 / self.budget, Decimal(999)))


def unit_months(*, business_unit_ids: Iterable[int], period: dt.date | None = None) -> dict[int, UnitMonth]:
    """Each unit's usage in `period` (default: this month) with its cap: two queries for any number of units."""
    ids = list(business_unit_ids)
    period = period or current_period()
    totals = {
        row["business_unit_id"]: row
        for row in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, period=period, business_unit_id__in=ids)
        .values("business_unit_id")
        .annotate(total=Sum("amount"), requests=Count("id"))
        .order_by()
    }
    caps = {
        budget.business_unit_id: budget
        for budget in Budget.objects.filter(scope=Budget.Scope.BUSINESS_UNIT, business_unit_id__in=ids)
    }
    months = {}
    for unit_id in ids:
        row, cap = totals.get(unit_id, {}), caps.get(unit_id)
        months[unit_id] = UnitMonth(
            business_unit_id=unit_id,
            period=period,
            spend=-(row.get("total") or Decimal(0)),
            requests=row.get("requests", 0),
            budget=cap.monthly_limit if cap else None,
            hard=cap.hard if cap else False,
        )
    return months


@dataclass(frozen=True)
class MonthTotal:
    month: dt.date  # the first day
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend: Decimal = Decimal(0)


@dataclass(frozen=True)
class Comparison:
    """One project or model: this month against last month, and the whole report's range."""

    name: str
    project_id: int | None
    this_month: Decimal
    last_month: Decimal
    requests: int  # this month
    input_tokens: int  # this month
    output_tokens: int  # this month
    range_spend: Decimal  # the twelve months
    range_requests: int

    @property
    def change(self) -> Decimal | None:
        """Percent change from last month (None when last month had no spend)."""
        if self.last_month == 0:
            return None
        return ((self.this_month - self.last_month) * 100 / self.last_month).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class UnitReport:
    business_unit_id: int
    months: list[MonthTotal]  # oldest first, every month of the range (zero when nothing was spent)
    this_month: MonthTotal
    last_month: MonthTotal
    projects: list[Comparison]  # every project of the unit, and any that was charged to it
    models: list[Comparison]
    rows: list[SpendRow]  # per month, project and model (the CSV export)

    @property
    def change(self) -> Decimal | None:
        if self.last_month.spend == 0:
            return None
        return ((self.this_month.spend - self.last_month.spend) * 100 / self.last_month.spend).quantize(Decimal("0.1"))


REPORT_MONTHS = 12


def unit_report(*, business_unit_id: int, today: dt.date | None = None, months: int = REPORT_MONTHS) -> UnitReport:
    """A business unit's usage in the last `months` months (this one included), per month, project
    and model: one aggregate query and one for project names, whatever the number of ledger entries."""
    today = today or dt.datetime.now(dt.UTC).date()
    this_month = today.replace(day=1)
    periods = [_add_months(this_month, -back) for back in range(months - 1, -1, -1)]
    rows = _unit_rows(business_unit_id=business_unit_id, start=periods[0], end=today)

    per_month: dict[dt.date, list[SpendRow]] = {period: [] for period in periods}
    for row in rows:
        per_month.setdefault(row.bucket, []).append(row)
    totals = [_month_total(period, per_month[period]) for period in periods]
    last_month = totals[-2] if len(totals) > 1 else MonthTotal(month=_add_months(this_month, -1))

    charged = {row.project_id for row in rows if row.project_id is not None}
    names = dict(
        selectors.list_projects()
        .filter(Q(business_unit_id=business_unit_id) | Q(pk__in=charged))
        .order_by()
        .prefetch_related(None)
        .values_list("pk", "name")
    )
    rows = [replace(row, project=names.get(row.project_id)) for row in rows]
    projects = _compare(
        rows,
        key=lambda row: row.project_id,
        name=lambda row: row.project or f"Project #{row.project_id} (deleted)",
        this_month=this_month,
        last_month=last_month.month,
        everyone=names,  # the unit's projects, also those that spent nothing
    )
    models = _compare(
        rows,
        key=lambda row: row.model,
        name=lambda row: row.model or "(no model)",
        this_month=this_month,
        last_month=last_month.month,
        everyone={},
    )
    return UnitReport(
        business_unit_id=business_unit_id,
        months=totals,
        this_month=totals[-1],
        last_month=last_month,
        projects=projects,
        models=models,
        rows=rows,
    )


def _unit_rows(*, business_unit_id: int, start: dt.date, end: dt.date) -> list[SpendRow]:
    columns = ("business_unit_id", "project_id", "model")
    rows = list(
        LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.USAGE,
            business_unit_id=business_unit_id,
            created_at__gte=_midnight(start),
            created_at__lt=_midnight(end + dt.timedelta(days=1)),
        )
        .annotate(bucket=TruncMonth("created_at", output_field=DateField(), tzinfo=dt.UTC))
        .values("bucket", *columns)
        .annotate(
            requests=Count("id"),
            input_tokens_sum=Sum("input_tokens"),
            output_tokens_sum=Sum("output_tokens"),
            cached_tokens_sum=Sum("cached_tokens"),
            total=Sum("amount"),
            estimated_requests=Count("id", filter=Q(estimated=True)),
            unpriced_requests=Count("id", filter=Q(priced=False)),
        )
        .order_by("bucket", "project_id", "model")
    )
    return [_row(row, unit_names={}, project_names={}) for row in rows]  # names: see unit_report


def _month_total(period: dt.date, rows: list[SpendRow]) -> MonthTotal:
    return MonthTotal(
        month=period,
        requests=sum(row.requests for row in rows),
        input_tokens=sum(row.input_tokens for row in rows),
        output_tokens=sum(row.output_tokens for row in rows),
        spend=sum((row.spend for row in rows), Decimal(0)),
    )


def _compare(
    rows: list[SpendRow],
    *,
    key: Any,
    name: Any,
    this_month: dt.date,
    last_month: dt.date,
    everyone: dict[Any, str],
) -> list[Comparison]:
    """Rows summed per key (a project id or a model name), largest spend this month first."""

    def empty(label: str) -> dict[str, Any]:
        return {
            "name": label,
            "this": Decimal(0),
            "last": Decimal(0),
            "req": 0,
            "in": 0,
            "out": 0,
            "all": Decimal(0),
            "n": 0,
        }

    sums: dict[Any, dict[str, Any]] = {k: empty(label) for k, label in everyone.items()}
    for row in rows:
        entry = sums.get(key(row)) or sums.setdefault(key(row), empty(name(row)))
        entry["all"] += row.spend
        entry["n"] += row.requests
        if row.bucket == this_month:
            entry["this"] += row.spend
            entry["req"] += row.requests
            entry["in"] += row.input_tokens
            entry["out"] += row.output_tokens
        elif row.bucket == last_month:
            entry["last"] += row.spend
    found = [
        Comparison(
            name=entry["name"],
            project_id=k if isinstance(k, int) else None,
            this_month=entry["this"],
            last_month=entry["last"],
            requests=entry["req"],
            input_tokens=entry["in"],
            output_tokens=entry["out"],
            range_spend=entry["all"],
            range_requests=entry["n"],
        )
        for k, entry in sums.items()
    ]
    return sorted(found, key=lambda c: (-c.this_month, -c.range_spend, c.name.lower()))


def _add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)
