"""Business units for their managers: the list (/units/), the report (/units/<id>/) and its CSV."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.urls import reverse

from approvals import services as approvals_services
from billing import reports
from billing import services as billing_services
from gateway import services

pytestmark = pytest.mark.django_db

UNITS = reverse("portal:units")
TODAY = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _march_2026():  # type: ignore[no-untyped-def]
    with time_machine.travel(TODAY, tick=False):
        yield


def spend(project: Any, *, on: str, cost: str, model: str = "gpt-portal", count: int = 1, **fields: Any) -> None:
    """`count` usage debits of `cost` each on day `on` (YYYY-MM-DD), as the metering writes them."""
    when = datetime.fromisoformat(f"{on}T10:00:00+00:00")
    billing_services.record_usage(
        entries=[
            {
                "request_id": f"req-unit-{next(_ids):06d}",
                "created_at": when,
                "project_id": project.id,
                "business_unit_id": project.business_unit_id,
                "model": model,
                "input_tokens": 1000,
                "output_tokens": 100,
                "cost": Decimal(cost),
            }
            | fields
            for _ in range(count)
        ]
    )


def report_url(unit: Any) -> str:
    return reverse("portal:unit-report", args=[unit.id])


def csv_url(unit: Any) -> str:
    return reverse("portal:unit-report-csv", args=[unit.id])


@pytest.fixture
def spent(world):  # type: ignore[no-untyped-def]
    """Checkout (A) and Search (B) over three months; March is this month."""
    spend(world.project_a, on="2026-03-02", cost="30.00", count=2)  # A, gpt-portal: 60 this month
    spend(world.project_a, on="2026-03-03", cost="5.00", model="gpt-portal-mini")  # A, mini: 5
    spend(world.project_a, on="2026-02-10", cost="40.00")  # A: 40 last month
    spend(world.project_b, on="2026-02-11", cost="10.00")  # B: 10 last month, nothing this month
    spend(world.project_b, on="2025-04-20", cost="7.00")  # 11 months ago: still in the report
    spend(world.project_b, on="2025-03-20", cost="99.00")  # 12 months ago: outside
    return world


# --- the list ---


def test_manager_sees_their_units_with_this_months_spend_against_the_budget(spent, login_as):
    billing_services.set_budget(target=spent.unit, monthly_limit="100.00")
    other = services.create_business_unit(name="Research")
    response = login_as(spent.manager).get(UNITS)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Retail" in html and "Research" not in html
    assert "€65.00" in html  # March: 60 + 5
    assert "€100.00" in html
    assert "65%" in html
    assert reverse("portal:unit-report", args=[spent.unit.id]) in html
    assert reverse("portal:unit-report", args=[other.id]) not in html


def test_administrator_sees_every_unit(spent, login_as):
    services.create_business_unit(name="Research")
    html = login_as(spent.admin).get(UNITS).content.decode()
    assert "Retail" in html and "Research" in html
    assert "No unit budget" in html


@pytest.mark.parametrize("persona", ["dev_a", "dev_b", "newcomer"])
def test_units_page_is_404_when_the_user_manages_no_unit(world, login_as, persona):
    assert login_as(getattr(world, persona)).get(UNITS).status_code == 404


def test_administrator_without_units_is_told_what_units_are(db, admin_user, login_as):
    html = login_as(admin_user).get(UNITS).content.decode()
    assert "No business units yet" in html


def test_anonymous_is_sent_to_sign_in(world, login_as):
    assert login_as(None).get(UNITS)["Location"].startswith("/accounts/login/")


def test_units_list_queries_stay_bounded(world, login_as, django_assert_max_num_queries):
    for i in range(10):
        unit = services.create_business_unit(name=f"Unit {i}")
        unit.managers.add(world.manager)
        project = services.create_project(name=f"P{i}", business_unit=unit)
        spend(project, on="2026-03-01", cost="1.00")
    client = login_as(world.manager)
    client.get(UNITS)
    with django_assert_max_num_queries(8):
        html = client.get(UNITS).content.decode()
    assert html.count("/report.csv") == 11


# --- the report ---


def test_report_compares_this_month_with_last_per_project_and_model(spent, login_as):
    response = login_as(spent.manager).get(report_url(spent.unit))
    assert response.status_code == 200
    html = response.content.decode()
    by_project = html.split('id="by-project"', 1)[1].split('id="by-model"', 1)[0]
    checkout = by_project.split("Checkout", 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"€[\d,.]+", checkout)[:2] == ["€65.00", "€40.00"]
    assert "+62.5%" in checkout  # 65 against 40
    search = by_project.split("Search", 1)[1].split("</tr>", 1)[0]
    assert "▼ -100.0%" in search
    by_model = html.split('id="by-model"', 1)[1]
    assert "gpt-portal-mini" in by_model
    assert "€65.00" in html and "+30.0%" in html  # the unit: 65 against 50


def test_report_trend_covers_twelve_months_in_the_chart_and_the_table(spent, login_as):
    html = login_as(spent.manager).get(report_url(spent.unit)).content.decode()
    data = json.loads(re.search(r'<script id="unit-trend" type="application/json">(.*?)</script>', html).group(1))
    assert len(data["x"]) == 12
    assert datetime.fromtimestamp(data["x"][0], UTC).date().isoformat() == "2025-04-01"
    assert data["series"][0]["values"][0] == 7.0  # April 2025
    assert data["series"][0]["values"][-2:] == [50.0, 65.0]
    assert "April 2025" in html and "March 2025" not in html
    assert 'data-chart="unit-trend"' in html


def test_report_lists_idle_projects_and_requests_and_tokens(world, login_as):
    spend(world.project_a, on="2026-03-02", cost="1.00", count=3)
    html = login_as(world.manager).get(report_url(world.unit)).content.decode()
    assert "Search" in html  # no spend at all, still listed
    assert "3,000" in html  # tokens in this month


def test_report_puts_pending_decisions_on_top_when_some_wait(spent, login_as, django_capture_on_commit_callbacks):
    client = login_as(spent.manager)
    assert "waits for your decision" not in client.get(report_url(spent.unit)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        approvals_services.file_credit_request(user=spent.dev_a, project=spent.project_a, amount="50", reason="demo")
    html = client.get(report_url(spent.unit)).content.decode()
    assert "1 request waits for your decision" in html
    assert f'href="{reverse("portal:requests")}"' in html
    assert csv_url(spent.unit) in html


@pytest.mark.parametrize(("persona", "status"), [("dev_a", 404), ("dev_b", 404), ("manager", 200), ("admin", 200)])
def test_report_and_csv_are_404_for_who_does_not_manage_the_unit(world, login_as, persona, status):
    client = login_as(world.persona(persona))
    assert client.get(report_url(world.unit)).status_code == status
    assert client.get(csv_url(world.unit)).status_code == status


def test_manager_gets_404_for_another_unit(world, login_as):
    other = services.create_business_unit(name="Research")
    client = login_as(world.manager)
    assert client.get(report_url(other)).status_code == 404
    assert client.get(csv_url(other)).status_code == 404
    assert client.get(reverse("portal:unit-report", args=[999999])).status_code == 404


def test_report_queries_stay_bounded(spent, login_as, django_assert_max_num_queries):
    for i in range(8):
        project = services.create_project(name=f"Extra {i}", business_unit=spent.unit)
        spend(project, on="2026-03-05", cost="2.00", model=f"model-{i}")
    client = login_as(spent.manager)
    client.get(report_url(spent.unit))
    with django_assert_max_num_queries(10):
        client.get(report_url(spent.unit))


def test_empty_report_says_nothing_was_spent(world, login_as):
    html = login_as(world.manager).get(report_url(world.unit)).content.decode()
    assert "Nothing spent yet" in html
    assert "no spend last month" in html


# --- the CSV ---


def read_csv(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_csv_has_one_row_per_month_project_and_model(spent, login_as):
    response = login_as(spent.manager).get(csv_url(spent.unit))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="retail-spend-2025-04-to-2026-03.csv"'
    rows = read_csv(response)
    assert list(rows[0]) == [
        "month",
        "project",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "spend",
        "currency",
    ]
    assert rows[0] == {
        "month": "2025-04",
        "project": "Search",
        "model": "gpt-portal",
        "requests": "1",
        "input_tokens": "1000",
        "output_tokens": "100",
        "spend": "7.000000",
        "currency": "EUR",
    }
    march = [(r["project"], r["model"], r["requests"], r["spend"]) for r in rows if r["month"] == "2026-03"]
    assert march == [("Checkout", "gpt-portal", "2", "60.000000"), ("Checkout", "gpt-portal-mini", "1", "5.000000")]
    assert sum(Decimal(r["spend"]) for r in rows) == Decimal("122")


def test_csv_neutralises_formulas_and_quotes_commas(world, login_as):
    evil = services.create_project(name='=HYPERLINK("http://x.test","click")', business_unit=world.unit)
    comma = services.create_project(name='Search, "beta"', business_unit=world.unit)
    spend(evil, on="2026-03-02", cost="1.00", model="@SUM(A1:A9)")
    spend(comma, on="2026-03-02", cost="1.00", model="-2+3")
    spend(comma, on="2026-03-02", cost="1.00", model="+cmd")
    response = login_as(world.manager).get(csv_url(world.unit))
    text = response.content.decode()
    rows = read_csv(response)
    assert {r["project"] for r in rows} == {'\'=HYPERLINK("http://x.test","click")', 'Search, "beta"'}
    assert {r["model"] for r in rows} == {"'@SUM(A1:A9)", "'-2+3", "'+cmd"}
    assert '"Search, ""beta"""' in text  # quoted as CSV quotes
    for line in text.splitlines()[1:]:
        for cell in next(csv.reader([line])):
            assert not cell.startswith(("=", "+", "-", "@")), cell


def test_csv_filename_is_safe_when_the_unit_name_is_odd(db, admin_user, login_as):
    unit = services.create_business_unit(name='Ünïts "R&D"; x=1\r\n')
    response = login_as(admin_user).get(csv_url(unit))
    disposition = response["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+\.csv"', disposition), disposition


# --- the report's numbers (billing.reports) ---


def test_unit_report_counts_only_usage_of_this_unit(world):
    other = services.create_business_unit(name="Research")
    elsewhere = services.create_project(name="Lab", business_unit=other)
    spend(world.project_a, on="2026-03-02", cost="3.00")
    spend(elsewhere, on="2026-03-02", cost="100.00")
    billing_services.grant_credits(project=world.project_a, amount="500", reason="top-up", idempotency_key="t1")
    data = reports.unit_report(business_unit_id=world.unit.id)
    assert data.this_month.spend == Decimal("3.00")
    assert data.months[0].month.isoformat() == "2025-04-01"
    assert len(data.months) == 12
    assert data.change is None
    months = reports.unit_months(business_unit_ids=[world.unit.id, other.id])
    assert months[other.id].spend == Decimal("100.00")
    assert months[world.unit.id].requests == 1
