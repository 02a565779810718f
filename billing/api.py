"""Billing operations of the management API (/api/v1/...), mounted by `gateway.admin_api.api` by
dotted path (the gateway never imports billing). Authentication is the API's admin bearer token."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema

from billing import reports
from gateway.admin_api.schemas import ErrorOut
from gateway.errors import ValidationFailed

reports_router = Router(tags=["reports"])

MICRO = Decimal("0.000001")
CSV_COLUMNS = [
    "period",
    "business_unit_id",
    "business_unit",
    "project_id",
    "project",
    "model",
    "key_id",
    "key",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "spend",
    "estimated_requests",
    "unpriced_requests",
]
TEXT_COLUMNS = {"business_unit", "project", "model", "key"}  # names people chose: escaped in CSV
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


class SpendRowOut(Schema):
    period: dt.date = Field(description="The day, or the first day of the month (UTC).")
    business_unit_id: int | None
    business_unit: str | None
    project_id: int | None
    project: str | None
    model: str | None
    key_id: int | None
    key: str | None = Field(description="The key's visible prefix.")
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    spend: str = Field(description="Decimal string, 6 places, in `currency`.")
    estimated_requests: int = Field(description="Requests whose tokens the gateway counted itself.")
    unpriced_requests: int = Field(description="Requests on a model without a price (counted at zero).")


class SpendTotalsOut(Schema):
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    spend: str
    estimated_requests: int
    unpriced_requests: int


class SpendReportOut(Schema):
    group_by: str
    period: str
    start: dt.date
    end: dt.date
    currency: str
    rows: list[SpendRowOut]
    totals: SpendTotalsOut


class SpendQuery(Schema):
    group_by: str = Field("business_unit", description="business_unit, project, model or key.")
    period: str = Field("month", description="day or month (UTC).")
    start: str | None = Field(None, description="YYYY-MM-DD, included. Default: the first day of end's month.")
    end: str | None = Field(None, description="YYYY-MM-DD, included. Default: today (UTC).")
    project: list[int] | None = Field(None, description="Only these projects (repeat to give several).")
    business_unit: int | None = Field(None, description="Only this business unit.")
    output: str | None = Field(None, alias="format", description="json or csv (default: from the Accept header).")


@reports_router.get("/spend", response={200: SpendReportOut, 400: ErrorOut})
def spend(request: HttpRequest, filters: Query[SpendQuery]) -> Any:
    """Spend and tokens of usage per day or month and per business unit, project, model or key.
    Sorted by period, then spend (largest first). CSV with `?format=csv` or `Accept: text/csv`."""
    last = _date(filters.end, field="end") if filters.end else timezone.now().astimezone(dt.UTC).date()
    first = _date(filters.start, field="start") if filters.start else last.replace(day=1)
    if filters.output not in (None, "json", "csv"):
        raise ValidationFailed("format must be json or csv.", field="format")
    rows = reports.spend_report(
        group_by=filters.group_by,  # type: ignore[arg-type]  # spend_report refuses others: 400 naming the field
        period=filters.period,  # type: ignore[arg-type]
        start=first,
        end=last,
        project_ids=filters.project,
        business_unit_id=filters.business_unit,
    )
    cells = [_cells(row) for row in rows]
    wants_csv = request.get_preferred_type(["application/json", "text/csv"]) == "text/csv"
    if filters.output == "csv" or (filters.output is None and wants_csv):
        return _csv(cells, filename=f"spend-{filters.group_by}-{filters.period}-{first}-{last}.csv")
    return {
        "group_by": filters.group_by,
        "period": filters.period,
        "start": first,
        "end": last,
        "currency": settings.BILLING_CURRENCY,
        "rows": cells,
        "totals": _totals(rows),
    }


def _date(value: str, *, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{field} must be a date as YYYY-MM-DD.", field=field) from None


def _money(amount: Decimal) -> str:
    return format(amount.quantize(MICRO, rounding=ROUND_HALF_UP), "f")


def _cells(row: reports.SpendRow) -> dict[str, Any]:
    return {
        "period": row.bucket,
        "business_unit_id": row.business_unit_id,
        "business_unit": row.business_unit,
        "project_id": row.project_id,
        "project": row.project,
        "model": row.model,
        "key_id": row.key_id,
        "key": row.key_prefix,
        "requests": row.requests,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cached_tokens": row.cached_tokens,
        "spend": _money(row.spend),
        "estimated_requests": row.estimated_requests,
        "unpriced_requests": row.unpriced_requests,
    }


def _totals(rows: list[reports.SpendRow]) -> dict[str, Any]:
    counts = ("requests", "input_tokens", "output_tokens", "cached_tokens", "estimated_requests", "unpriced_requests")
    totals: dict[str, Any] = {name: sum(getattr(row, name) for row in rows) for name in counts}
    totals["spend"] = _money(sum((row.spend for row in rows), Decimal(0)))
    return totals


def _csv(cells: list[dict[str, Any]], *, filename: str) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in cells:
        writer.writerow([_csv_value(row[column], text=column in TEXT_COLUMNS) for column in CSV_COLUMNS])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _csv_value(value: Any, *, text: bool) -> str:
    if value is None:
        return ""
    value = str(value)
    # A name such as "=HYPERLINK(...)" must stay text when the file is opened in a spreadsheet.
    return f"'{value}" if text and value.startswith(FORMULA_STARTS) else value
