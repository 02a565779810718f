"""Spend reports: GET /api/v1/reports/spend (JSON and CSV) and the `spend_report` selector."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from dataclasses import dataclass
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from billing.models import LedgerEntry
from billing.reports import spend_report
from gateway import services
from gateway.models import BusinessUnit, Project, VirtualKey

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/spend"
_request_ids = itertools.count(1)


@pytest.fixture
def api(admin_user) -> Client:  # type: ignore[no-untyped-def]
    token = services.issue_admin_token(username=admin_user.username)
    return Client(headers={"Authorization": f"Bearer {token.secret}"})


@dataclass
class World:
    retail: BusinessUnit
    research: BusinessUnit
    shop: Project
    lab: Project
    shop_ci: VirtualKey
    shop_web: VirtualKey
    lab_key: VirtualKey


@pytest.fixture
def world() -> World:
    retail = services.create_business_unit(name="Retail")
    research = services.create_business_unit(name="Research")
    shop = services.create_project(name="Shop", business_unit=retail)
    lab = services.create_project(name="Lab", business_unit=research)
    return World(
        retail=retail,
        research=research,
        shop=shop,
        lab=lab,
        shop_ci=services.create_virtual_key(project=shop, name="ci").key,
        shop_web=services.create_virtual_key(project=shop, name="web").key,
        lab_key=services.create_virtual_key(project=lab, name="lab").key,
    )


def at(day: str, time: str = "12:00:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time}+00:00")


def usage(
    key: VirtualKey,
    when: dt.datetime,
    cost: str,
    *,
    model: str = "gpt-4o",
    input_tokens: int = 100,
    output_tokens: int = 10,
    cached_tokens: int = 0,
    estimated: bool = False,
    priced: bool = True,
) -> LedgerEntry:
    """One request's debit, as the metering writes it: a negative amount."""
    project = key.project
    return LedgerEntry.objects.create(
        created_at=when,
        period=when.date().replace(day=1),
        kind=LedgerEntry.Kind.USAGE,
        amount=-Decimal(cost),
        project_id=project.id,
        business_unit_id=project.business_unit_id,
        key_id=key.id,
        key_prefix=key.prefix,
        request_id=f"req-{next(_request_ids)}",
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        estimated=estimated,
        priced=priced,
    )


def report(client: Client, **params: str) -> dict:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def csv_rows(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


# --- grouping ---


def test_sums_usage_per_business_unit_when_grouped_by_business_unit(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1.5", input_tokens=100, output_tokens=20, cached_tokens=5)
    usage(world.shop_web, at("2026-11-20"), "0.5", input_tokens=50, output_tokens=10, cached_tokens=0)
    usage(world.lab_key, at("2026-11-03"), "3")

    body = report(api, group_by="business_unit", period="month", start="2026-11-01", end="2026-11-30")

    assert body["group_by"] == "business_unit"
    assert body["period"] == "month"
    assert body["start"] == "2026-11-01"
    assert body["end"] == "2026-11-30"
    assert body["currency"] == "EUR"
    research, retail = body["rows"]
    assert research == {
        "period": "2026-11-01",
        "business_unit_id": world.research.id,
        "business_unit": "Research",
        "project_id": None,
        "project": None,
        "model": None,
        "key_id": None,
        "key": None,
        "requests": 1,
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_tokens": 0,
        "spend": "3.000000",
        "estimated_requests": 0,
        "unpriced_requests": 0,
    }
    assert (retail["business_unit"], retail["requests"], retail["spend"]) == ("Retail", 2, "2.000000")
    assert (retail["input_tokens"], retail["output_tokens"], retail["cached_tokens"]) == (150, 30, 5)


def test_names_project_and_its_unit_when_grouped_by_project(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1")
    usage(world.shop_web, at("2026-11-02"), "2")
    usage(world.lab_key, at("2026-11-02"), "0.25")

    rows = report(api, group_by="project", period="month", start="2026-11-01", end="2026-11-30")["rows"]

    assert [(r["project_id"], r["project"], r["business_unit"], r["requests"], r["spend"]) for r in rows] == [
        (world.shop.id, "Shop", "Retail", 2, "3.000000"),
        (world.lab.id, "Lab", "Research", 1, "0.250000"),
    ]
    assert all(r["model"] is None and r["key"] is None for r in rows)


def test_sums_across_projects_per_model_when_grouped_by_model(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1", model="gpt-4o")
    usage(world.lab_key, at("2026-11-05"), "2", model="gpt-4o")
    usage(world.lab_key, at("2026-11-05"), "0.5", model="claude-sonnet")

    rows = report(api, group_by="model", period="month", start="2026-11-01", end="2026-11-30")["rows"]

    assert [(r["model"], r["requests"], r["spend"]) for r in rows] == [
        ("gpt-4o", 2, "3.000000"),
        ("claude-sonnet", 1, "0.500000"),
    ]
    assert all(r["project"] is None and r["business_unit"] is None for r in rows)


def test_shows_key_prefix_with_its_project_when_grouped_by_key(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1")
    usage(world.shop_ci, at("2026-11-03"), "1")
    usage(world.shop_web, at("2026-11-02"), "5")

    rows = report(api, group_by="key", period="month", start="2026-11-01", end="2026-11-30")["rows"]

    assert [(r["key_id"], r["key"], r["project"], r["business_unit"], r["requests"]) for r in rows] == [
        (world.shop_web.id, world.shop_web.prefix, "Shop", "Retail", 1),
        (world.shop_ci.id, world.shop_ci.prefix, "Shop", "Retail", 2),
    ]


def test_keeps_spend_under_the_unit_it_was_charged_to_when_project_moved_later(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1")
    services.update_project(project=world.shop, business_unit=world.research)
    usage(world.shop_ci, at("2026-11-03"), "2")

    units = report(api, group_by="business_unit", start="2026-11-01", end="2026-11-30")["rows"]
    projects = report(api, group_by="project", start="2026-11-01", end="2026-11-30")["rows"]

    assert [(r["business_unit"], r["spend"]) for r in units] == [("Research", "2.000000"), ("Retail", "1.000000")]
    assert [(r["project"], r["business_unit"], r["spend"]) for r in projects] == [
        ("Shop", "Research", "2.000000"),
        ("Shop", "Retail", "1.000000"),
    ]


def test_reports_ids_without_names_when_project_was_deleted(api, world):
    usage(world.lab_key, at("2026-11-02"), "1")
    lab_id = world.lab.id
    services.delete_project(project=world.lab)

    (row,) = report(api, group_by="project", start="2026-11-01", end="2026-11-30")["rows"]

    assert (row["project_id"], row["project"], row["business_unit"]) == (lab_id, None, "Research")


# --- buckets and dates ---


def test_one_row_per_day_and_group_when_period_is_day(api, world):
    usage(world.shop_ci, at("2026-11-02", "00:00:00"), "1")
    usage(world.shop_ci, at("2026-11-02", "23:59:59"), "1")
    usage(world.shop_ci, at("2026-11-03"), "4")
    usage(world.lab_key, at("2026-11-03"), "5")

    rows = report(api, group_by="project", period="day", start="2026-11-01", end="2026-11-30")["rows"]

    assert [(r["period"], r["project"], r["requests"], r["spend"]) for r in rows] == [
        ("2026-11-02", "Shop", 2, "2.000000"),
        ("2026-11-03", "Lab", 1, "5.000000"),
        ("2026-11-03", "Shop", 1, "4.000000"),
    ]


def test_one_row_per_month_dated_the_first_when_period_is_month(api, world):
    usage(world.shop_ci, at("2026-10-31", "23:59:59"), "1")
    usage(world.shop_ci, at("2026-11-01", "00:00:00"), "2")
    usage(world.shop_ci, at("2026-11-30"), "3")
    usage(world.shop_ci, at("2026-12-01"), "4")

    rows = report(api, group_by="project", period="month", start="2026-10-01", end="2026-12-31")["rows"]

    assert [(r["period"], r["requests"], r["spend"]) for r in rows] == [
        ("2026-10-01", 1, "1.000000"),
        ("2026-11-01", 2, "5.000000"),
        ("2026-12-01", 1, "4.000000"),
    ]


def test_includes_both_start_and_end_days_when_filtering_by_date(api, world):
    usage(world.shop_ci, at("2026-11-09", "23:59:59"), "100")  # before start
    usage(world.shop_ci, at("2026-11-10", "00:00:00"), "1")
    usage(world.shop_ci, at("2026-11-12", "23:59:59"), "2")
    usage(world.shop_ci, at("2026-11-13", "00:00:00"), "200")  # after end

    body = report(api, group_by="project", period="month", start="2026-11-10", end="2026-11-12")

    assert [(r["period"], r["requests"], r["spend"]) for r in body["rows"]] == [("2026-11-01", 2, "3.000000")]


def test_reports_current_month_to_today_when_no_dates_are_given(api, world):
    usage(world.shop_ci, at("2026-10-31"), "1")
    usage(world.shop_ci, at("2026-11-01"), "2")
    usage(world.shop_ci, at("2026-11-15", "08:00:00"), "3")

    with time_machine.travel(at("2026-11-15", "09:00:00"), tick=False):
        body = report(api, group_by="project")

    assert (body["start"], body["end"], body["period"]) == ("2026-11-01", "2026-11-15", "month")
    assert [(r["period"], r["spend"]) for r in body["rows"]] == [("2026-11-01", "5.000000")]


def test_starts_at_first_of_end_month_when_only_end_is_given(api, world):
    usage(world.shop_ci, at("2026-09-30"), "1")
    usage(world.shop_ci, at("2026-10-01"), "2")

    body = report(api, group_by="project", end="2026-10-31")

    assert (body["start"], body["end"]) == ("2026-10-01", "2026-10-31")
    assert body["totals"]["spend"] == "2.000000"


# --- what counts, filters, totals, ordering ---


def test_counts_only_usage_when_ledger_holds_grants_and_allowances(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1")
    for kind, amount in [("grant", "50"), ("allowance", "100"), ("adjustment", "-7"), ("expiry", "-20")]:
        LedgerEntry.objects.create(
            created_at=at("2026-11-02"),
            period=dt.date(2026, 11, 1),
            kind=kind,
            amount=Decimal(amount),
            project_id=world.shop.id,
            business_unit_id=world.retail.id,
        )

    body = report(api, group_by="project", start="2026-11-01", end="2026-11-30")

    assert [(r["requests"], r["spend"]) for r in body["rows"]] == [(1, "1.000000")]


def test_totals_sum_every_row_when_report_has_several(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1.25", input_tokens=10, output_tokens=1, cached_tokens=2, estimated=True)
    usage(world.lab_key, at("2026-11-03"), "0", input_tokens=20, output_tokens=2, cached_tokens=0, priced=False)
    usage(world.lab_key, at("2026-11-04"), "0.75", input_tokens=30, output_tokens=3, cached_tokens=4)

    body = report(api, group_by="key", period="day", start="2026-11-01", end="2026-11-30")

    assert len(body["rows"]) == 3
    assert body["totals"] == {
        "requests": 3,
        "input_tokens": 60,
        "output_tokens": 6,
        "cached_tokens": 6,
        "spend": "2.000000",
        "estimated_requests": 1,
        "unpriced_requests": 1,
    }


def test_spend_is_a_six_place_decimal_string_when_costs_have_more_places(api, world):
    usage(world.shop_ci, at("2026-11-02"), "0.0000004")
    usage(world.shop_ci, at("2026-11-02"), "0.1234561")

    body = report(api, group_by="project", start="2026-11-01", end="2026-11-30")

    assert body["rows"][0]["spend"] == "0.123457"
    assert body["totals"]["spend"] == "0.123457"


def test_sorts_by_period_then_largest_spend_when_several_groups_spent(api, world):
    usage(world.shop_ci, at("2026-11-01"), "1", model="small")
    usage(world.shop_ci, at("2026-11-01"), "9", model="large")
    usage(world.shop_ci, at("2026-11-01"), "5", model="medium")
    usage(world.shop_ci, at("2026-11-02"), "0.1", model="large")

    rows = report(api, group_by="model", period="day", start="2026-11-01", end="2026-11-02")["rows"]

    assert [(r["period"], r["model"]) for r in rows] == [
        ("2026-11-01", "large"),
        ("2026-11-01", "medium"),
        ("2026-11-01", "small"),
        ("2026-11-02", "large"),
    ]


def test_reports_only_those_projects_when_filtered_by_project(api, world):
    other = services.create_project(name="Other", business_unit=world.retail)
    other_key = services.create_virtual_key(project=other, name="k").key
    usage(world.shop_ci, at("2026-11-02"), "1")
    usage(world.lab_key, at("2026-11-02"), "2")
    usage(other_key, at("2026-11-02"), "4")

    response = api.get(
        f"{URL}?group_by=project&start=2026-11-01&end=2026-11-30&project={world.shop.id}&project={world.lab.id}"
    )

    assert sorted(r["project"] for r in response.json()["rows"]) == ["Lab", "Shop"]


def test_reports_only_that_unit_when_filtered_by_business_unit(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1", model="a")
    usage(world.lab_key, at("2026-11-02"), "2", model="b")

    body = report(api, group_by="model", start="2026-11-01", end="2026-11-30", business_unit=str(world.research.id))

    assert [r["model"] for r in body["rows"]] == ["b"]


def test_runs_one_query_per_kind_of_name_when_report_has_many_rows(world, django_assert_num_queries):
    for day in range(1, 29):
        usage(world.shop_ci, at(f"2026-11-{day:02}"), "1")
        usage(world.lab_key, at(f"2026-11-{day:02}"), "2")

    with django_assert_num_queries(3):  # the sums, the units' names, the projects' names
        rows = spend_report(group_by="key", period="day", start=dt.date(2026, 11, 1), end=dt.date(2026, 11, 30))
    with django_assert_num_queries(1):
        spend_report(group_by="model", period="day", start=dt.date(2026, 11, 1), end=dt.date(2026, 11, 30))

    assert len(rows) == 56
    assert rows[0].bucket == dt.date(2026, 11, 1)
    assert rows[0].spend == Decimal(2)


# --- CSV ---


def test_answers_csv_when_accept_asks_for_text_csv(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1.5", input_tokens=7)

    response = api.get(
        URL,
        {"group_by": "project", "period": "day", "start": "2026-11-01", "end": "2026-11-30"},
        headers={"Accept": "text/csv"},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="spend-project-day-2026-11-01-2026-11-30.csv"'
    (row,) = csv_rows(response)
    assert row == {
        "period": "2026-11-02",
        "business_unit_id": str(world.retail.id),
        "business_unit": "Retail",
        "project_id": str(world.shop.id),
        "project": "Shop",
        "model": "",
        "key_id": "",
        "key": "",
        "requests": "1",
        "input_tokens": "7",
        "output_tokens": "10",
        "cached_tokens": "0",
        "spend": "1.500000",
        "estimated_requests": "0",
        "unpriced_requests": "0",
    }


def test_answers_csv_when_format_is_csv(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1")
    usage(world.lab_key, at("2026-11-02"), "2")

    response = api.get(URL, {"group_by": "business_unit", "start": "2026-11-01", "end": "2026-11-30", "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "spend-business_unit-month-2026-11-01-2026-11-30.csv" in response["Content-Disposition"]
    assert [(r["business_unit"], r["spend"]) for r in csv_rows(response)] == [
        ("Research", "2.000000"),
        ("Retail", "1.000000"),
    ]


def test_answers_json_when_format_is_json_despite_accept_csv(api, world):
    response = api.get(URL, {"format": "json"}, headers={"Accept": "text/csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")


def test_answers_header_only_csv_when_nothing_was_spent(api, world):
    response = api.get(URL, {"format": "csv"})

    lines = response.content.decode().splitlines()
    assert lines == [
        "period,business_unit_id,business_unit,project_id,project,model,key_id,key,requests,input_tokens,"
        "output_tokens,cached_tokens,spend,estimated_requests,unpriced_requests"
    ]


def test_escapes_names_that_start_like_formulas_when_answering_csv(api, world):
    evil_unit = services.create_business_unit(name='=HYPERLINK("http://x")')
    evil_project = services.create_project(name="@SUM(A1)", business_unit=evil_unit)
    key = services.create_virtual_key(project=evil_project, name="k").key
    usage(key, at("2026-11-02"), "1", model="+cmd")
    usage(key, at("2026-11-02"), "1", model="-1+1")

    units = csv_rows(api.get(URL, {"group_by": "project", "start": "2026-11-01", "end": "2026-11-30", "format": "csv"}))
    models = csv_rows(api.get(URL, {"group_by": "model", "start": "2026-11-01", "end": "2026-11-30", "format": "csv"}))

    assert (units[0]["business_unit"], units[0]["project"]) == ('\'=HYPERLINK("http://x")', "'@SUM(A1)")
    assert units[0]["spend"] == "2.000000"
    assert sorted(r["model"] for r in models) == ["'+cmd", "'-1+1"]


def test_json_keeps_names_as_they_are_when_they_start_like_formulas(api, world):
    usage(world.shop_ci, at("2026-11-02"), "1", model="=1+1")

    rows = report(api, group_by="model", start="2026-11-01", end="2026-11-30")["rows"]

    assert rows[0]["model"] == "=1+1"


# --- refusals ---


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "team"}, "group_by"),
        ({"period": "week"}, "period"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-01"}, "end"),
        ({"start": "2026-11-30", "end": "2026-11-01"}, "start"),
        ({"period": "day", "start": "2025-01-01", "end": "2026-02-05"}, "end"),
        ({"format": "xml"}, "format"),
    ],
)
def test_answers_400_naming_the_field_when_input_is_invalid(api, params, field):
    response = api.get(URL, params)

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field
    assert body["detail"]


def test_accepts_400_days_when_period_is_day(api):
    assert api.get(URL, {"period": "day", "start": "2025-01-01", "end": "2026-02-04"}).status_code == 200


def test_accepts_long_ranges_when_period_is_month(api):
    assert api.get(URL, {"period": "month", "start": "2020-01-01", "end": "2026-12-31"}).status_code == 200


def test_answers_401_when_no_token_is_sent(client):
    response = client.get(URL, {"format": "csv"})

    assert response.status_code == 401
    assert "Missing admin token" in response.json()["detail"]
