"""Business units for their managers (administrators: every unit): this month's spend against the
unit's budget, the report (per project and model, this month against last, a 12-month trend) and
its CSV export. A user who manages no unit has no such pages: 404, as for anything not theirs."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from billing import reports
from gateway import selectors
from portal.views.common import portal_view, render_page

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|", "%")


@portal_view
@require_GET
def unit_list(request: HttpRequest) -> HttpResponse:
    units = list(selectors.managed_business_units(user=request.user))
    if not units and not selectors.is_administrator(request.user):
        raise Http404("No business units.")
    months = reports.unit_months(business_unit_ids=[unit.id for unit in units])
    rows = [(unit, months[unit.id]) for unit in units]
    context = {"rows": rows, "currency": settings.BILLING_CURRENCY, "period": _period()}
    return render_page(request, "portal/units.html", context)


@portal_view
@require_GET
def report(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = selectors.get_managed_business_unit(user=request.user, unit_id=unit_id)
    data = reports.unit_report(business_unit_id=unit.id)
    month = reports.unit_months(business_unit_ids=[unit.id])[unit.id]
    chart = {
        "x": [int(datetime(m.month.year, m.month.month, 1, tzinfo=UTC).timestamp()) for m in data.months],
        "series": [
            {"label": "Spend", "values": [float(m.spend) for m in data.months], "unit": settings.BILLING_CURRENCY}
        ],
    }
    context = {
        "unit": unit,
        "report": data,
        "month": month,
        "chart": chart,
        "currency": settings.BILLING_CURRENCY,
        "months_desc": list(reversed(data.months)),
        "max_spend": max((m.spend for m in data.months), default=Decimal(0)),
    }
    return render_page(request, "portal/unit_report.html", context)


@portal_view
@require_GET
def report_csv(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = selectors.get_managed_business_unit(user=request.user, unit_id=unit_id)
    data = reports.unit_report(business_unit_id=unit.id)
    first, last = data.months[0].month, data.months[-1].month
    filename = f"{slugify(unit.name) or 'unit'}-spend-{first:%Y-%m}-to-{last:%Y-%m}.csv"
    filename = re.sub(r"[^A-Za-z0-9._-]", "", filename)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(["month", "project", "model", "requests", "input_tokens", "output_tokens", "spend", "currency"])
    for row in data.rows:
        writer.writerow(
            [
                f"{row.bucket:%Y-%m}",
                _cell(row.project or (f"#{row.project_id}" if row.project_id else "")),
                _cell(row.model or ""),
                row.requests,
                row.input_tokens,
                row.output_tokens,
                f"{row.spend:.6f}",
                settings.BILLING_CURRENCY,
            ]
        )
    return response


def _cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading formula character gets a quote before it."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


def _period() -> datetime:
    return datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
