"""Spend reports: usage from the ledger, summed in the database per day or month and per group.

A report reads only `usage` entries (grants, allowances, expiries and adjustments move money but are
not spend). Each entry carries the business unit, project, key and model it was charged to when it
was written, so a report groups by those columns and stays right after a project moves to another
unit or a key is deleted. Buckets are UTC days or months of `created_at`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from django.db.models import Count, DateField, Q, Sum
from django.db.models.functions import TruncDay, TruncMonth

from billing.models import LedgerEntry
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
