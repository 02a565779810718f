"""The budget, credit and balance operations of the management API (/api/v1/...).

Amounts travel as decimal strings in BILLING_CURRENCY. Errors are `{"detail", "field"}`: 400 when
a service refuses a value, 422 when the body does not even have the schema's shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.test import Client

from billing import budget, services
from billing.models import Budget, LedgerEntry
from gateway import services as gateway_services
from gateway.models import BusinessUnit, Project, VirtualKey
from tests.factories import BusinessUnitFactory, ProjectFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1"
MID_APRIL = datetime(2026, 4, 15, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _mid_month() -> Iterator[None]:
    """Every test runs mid-month, so none straddles the end of a billing period."""
    with time_machine.travel(MID_APRIL, tick=True):
        yield


class Api:
    """Django's test client speaking JSON to /api/v1, with or without an admin token."""

    def __init__(self, token: str | None) -> None:
        self.client = Client(headers={"Authorization": f"Bearer {token}"} if token else {})

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(BASE + path, params)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(BASE + path, json.dumps(body), content_type="application/json")

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(BASE + path, json.dumps(body), content_type="application/json")

    def delete(self, path: str) -> Any:
        return self.client.delete(BASE + path)


@pytest.fixture
def api(admin_user) -> Api:  # type: ignore[no-untyped-def]
    return Api(gateway_services.issue_admin_token(username=admin_user.username).secret)


@pytest.fixture
def anonymous(db) -> Api:  # type: ignore[no-untyped-def]
    return Api(None)


@pytest.fixture
def project() -> Project:
    return ProjectFactory(name="Shop")


@pytest.fixture
def key(project: Project) -> VirtualKey:
    return gateway_services.create_virtual_key(project=project, name="ci").key


@pytest.fixture
def unit() -> BusinessUnit:
    return BusinessUnitFactory(name="Retail")


def spend(project: Project, cost: str, *, request_id: str | None = None, key: VirtualKey | None = None) -> None:
    services.record_usage(
        entries=[
            {
                "request_id": request_id or uuid.uuid4().hex,
                "created_at": datetime.now(UTC),
                "project_id": project.id,
                "business_unit_id": project.business_unit_id,
                "key_id": key.id if key else None,
                "key_prefix": key.prefix if key else "",
                "model": "m",
                "input_tokens": 10,
                "output_tokens": 5,
                "cached_tokens": 0,
                "usage_estimated": False,
                "cost": Decimal(cost),
            }
        ]
    )


def grant(api: Api, project: Project, amount: str = "25.00", key: str = "order-1", **extra: Any) -> Any:
    body = {"amount": amount, "reason": "Pilot extension", "idempotency_key": key, **extra}
    return api.post(f"/projects/{project.id}/credits", body)


def error(response: Any) -> tuple[int, str | None]:
    body = response.json()
    assert body["detail"]
    return response.status_code, body["field"]


# --- project budgets ---


def test_put_project_budget_returns_the_budget_when_input_is_valid(api, project):
    response = api.put(
        f"/projects/{project.id}/budget", {"monthly_limit": "100.00", "hard": True, "thresholds": [50, 80, 100]}
    )

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("scope", "project", "key", "business_unit", "monthly_limit", "hard")} == {
        "scope": "project",
        "project": project.id,
        "key": None,
        "business_unit": None,
        "monthly_limit": "100.00",
        "hard": True,
    }
    assert body["thresholds"] == [50, 80, 100]
    assert body["webhook_url"] == ""
    assert body["currency"] == "EUR"


def test_put_project_budget_writes_this_months_allowance_when_budget_is_new(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})

    [entry] = LedgerEntry.objects.filter(project=project)
    assert (entry.kind, entry.amount, str(entry.period)) == ("allowance", Decimal("100.00"), "2026-04-01")


def test_put_project_budget_replaces_the_budget_when_one_exists(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00", "thresholds": [80]})

    response = api.put(
        f"/projects/{project.id}/budget",
        {"monthly_limit": "150.00", "hard": False, "webhook_url": "https://hooks.example.test/budget"},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["monthly_limit"], body["hard"], body["thresholds"]) == ("150.00", False, [80])
    assert body["webhook_url"] == "https://hooks.example.test/budget"
    assert Budget.objects.filter(project=project).count() == 1


def test_put_project_budget_uses_the_default_thresholds_when_none_are_sent(api, project):
    response = api.put(f"/projects/{project.id}/budget", {"monthly_limit": 20})

    assert response.json()["thresholds"] == [50, 80, 100]
    assert response.json()["monthly_limit"] == "20.00"


def test_put_project_budget_sorts_thresholds_and_drops_duplicates_when_sent_unordered(api, project):
    response = api.put(f"/projects/{project.id}/budget", {"monthly_limit": "10", "thresholds": [100, 50, 50]})

    assert response.json()["thresholds"] == [50, 100]


@pytest.mark.parametrize(("sent", "answered"), [(100, "100.00"), (12.5, "12.50"), ("1E+2", "100.00"), ("7", "7.00")])
def test_put_budget_answers_the_limit_with_cents_as_get_does_when_sent_as_a_number(api, key, sent, answered):
    put = api.put(f"/keys/{key.id}/budget", {"monthly_limit": sent})
    got = api.get(f"/keys/{key.id}/budget")

    assert put.json()["monthly_limit"] == got.json()["monthly_limit"] == answered


def test_get_project_budget_returns_the_budget_when_one_is_set(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00", "hard": False})

    response = api.get(f"/projects/{project.id}/budget")

    assert response.status_code == 200
    assert (response.json()["monthly_limit"], response.json()["hard"]) == ("100.00", False)


def test_get_project_budget_returns_404_when_project_has_no_budget(api, project):
    response = api.get(f"/projects/{project.id}/budget")

    assert response.status_code == 404
    assert response.json()["detail"] == f"Project {project.id} has no budget."


def test_delete_project_budget_removes_it_and_keeps_the_ledger_when_budget_exists(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})

    response = api.delete(f"/projects/{project.id}/budget")

    assert response.status_code == 204
    assert api.get(f"/projects/{project.id}/budget").status_code == 404
    assert list(LedgerEntry.objects.filter(project=project).values_list("kind", flat=True)) == ["allowance"]


def test_delete_project_budget_returns_404_when_project_has_no_budget(api, project):
    assert api.delete(f"/projects/{project.id}/budget").status_code == 404


def test_readding_a_budget_in_the_same_month_allows_the_new_limit_when_the_old_one_was_deleted(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})
    api.delete(f"/projects/{project.id}/budget")

    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "150.00"})

    assert api.get(f"/projects/{project.id}/balance").json()["limit"] == "150.000000"


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_project_budget_returns_404_when_project_does_not_exist(api, method):
    path = "/projects/999999/budget"
    response = api.put(path, {"monthly_limit": "1.00"}) if method == "put" else getattr(api, method)(path)

    assert response.status_code == 404
    assert response.json()["detail"]


# --- key and business-unit budgets ---


def test_key_budget_can_be_set_read_and_deleted_when_key_exists(api, key):
    put = api.put(f"/keys/{key.id}/budget", {"monthly_limit": "5.50", "hard": True, "thresholds": [90]})
    got = api.get(f"/keys/{key.id}/budget")
    deleted = api.delete(f"/keys/{key.id}/budget")

    assert put.status_code == 200
    assert {k: put.json()[k] for k in ("scope", "project", "key", "business_unit", "monthly_limit")} == {
        "scope": "key",
        "project": None,
        "key": key.id,
        "business_unit": None,
        "monthly_limit": "5.50",
    }
    assert got.status_code == 200
    assert got.json()["thresholds"] == [90]
    assert deleted.status_code == 204
    assert api.get(f"/keys/{key.id}/budget").status_code == 404
    assert api.delete(f"/keys/{key.id}/budget").status_code == 404


def test_key_budget_writes_no_ledger_entry_when_set(api, key):
    api.put(f"/keys/{key.id}/budget", {"monthly_limit": "5.00"})

    assert not LedgerEntry.objects.exists()


def test_business_unit_budget_can_be_set_read_and_deleted_when_unit_exists(api, unit):
    put = api.put(f"/business-units/{unit.id}/budget", {"monthly_limit": "1000", "hard": False})
    got = api.get(f"/business-units/{unit.id}/budget")
    deleted = api.delete(f"/business-units/{unit.id}/budget")

    assert put.status_code == 200
    assert {k: put.json()[k] for k in ("scope", "project", "key", "business_unit", "monthly_limit", "hard")} == {
        "scope": "business_unit",
        "project": None,
        "key": None,
        "business_unit": unit.id,
        "monthly_limit": "1000.00",
        "hard": False,
    }
    assert got.json()["monthly_limit"] == "1000.00"
    assert deleted.status_code == 204
    assert api.get(f"/business-units/{unit.id}/budget").status_code == 404
    assert api.delete(f"/business-units/{unit.id}/budget").status_code == 404


@pytest.mark.parametrize("path", ["/keys/999999/budget", "/business-units/999999/budget"])
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_budget_returns_404_when_key_or_unit_does_not_exist(api, path, method):
    response = api.put(path, {"monthly_limit": "1.00"}) if method == "put" else getattr(api, method)(path)

    assert response.status_code == 404
    assert response.json()["detail"]


# --- bad budgets ---


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"monthly_limit": "-1.00"}, "monthly_limit"),
        ({"monthly_limit": "10.001"}, "monthly_limit"),
        ({"monthly_limit": "abc"}, "monthly_limit"),
        ({"monthly_limit": "NaN"}, "monthly_limit"),
        ({"monthly_limit": "1e15"}, "monthly_limit"),
        ({"monthly_limit": "10.00", "thresholds": [0]}, "thresholds"),
        ({"monthly_limit": "10.00", "thresholds": [50, 1001]}, "thresholds"),
        ({"monthly_limit": "10.00", "webhook_url": "not a url"}, "webhook_url"),
        ({"monthly_limit": "10.00", "webhook_url": "ftp://hooks.example.test/x"}, "webhook_url"),
    ],
)
def test_put_budget_returns_400_naming_the_field_when_a_value_is_refused(api, project, key, unit, body, field):
    for path in (f"/projects/{project.id}/budget", f"/keys/{key.id}/budget", f"/business-units/{unit.id}/budget"):
        response = api.put(path, body)

        assert error(response) == (400, field), path
    assert not Budget.objects.exists()
    assert not LedgerEntry.objects.exists()


# Amounts that once answered 500 (decimal.InvalidOperation) or were coerced, sent as JSON exactly
# as written here (json.dumps writes NaN and Infinity as the bare literals Python's parser reads).
HOSTILE_AMOUNTS = [
    pytest.param(2.47e38, id="float-2.47e38"),
    pytest.param("1e30", id="string-1e30"),
    pytest.param(123456789012345678901234567890, id="30-digit-int"),
    pytest.param("1000000000000", id="one-past-the-column"),
    pytest.param("999999999999.995", id="too-many-places-at-the-top"),
    pytest.param("10.001", id="three-places"),
    pytest.param(1e-30, id="float-1e-30"),
    pytest.param(float("nan"), id="NaN-literal"),
    pytest.param(float("inf"), id="Infinity-literal"),
    pytest.param(float("-inf"), id="minus-Infinity-literal"),
    pytest.param("NaN", id="string-NaN"),
    pytest.param("-Infinity", id="string-minus-Infinity"),
    pytest.param("1e99999999999999999999", id="exponent-beyond-Decimal"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="null"),
    pytest.param("abc", id="not-a-number"),
    pytest.param("5_0", id="underscore"),
    pytest.param("0x10", id="hex"),
    pytest.param([1], id="list"),
    pytest.param({"value": 1}, id="object"),
]


@pytest.mark.parametrize("sent", [*HOSTILE_AMOUNTS, pytest.param("-1", id="negative")])
def test_put_budget_returns_400_naming_monthly_limit_and_its_range_when_the_limit_is_hostile(
    api, project, key, unit, sent
):
    for path in (f"/projects/{project.id}/budget", f"/keys/{key.id}/budget", f"/business-units/{unit.id}/budget"):
        response = api.put(path, {"monthly_limit": sent})

        assert error(response) == (400, "monthly_limit"), path
        detail = response.json()["detail"]
        assert detail.startswith("monthly_limit must be a decimal number from 0 to 999999999999.99"), detail
        assert "at most 2 decimal places" in detail
    assert not Budget.objects.exists()
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ("1e2", "100.00"),
        (1e2, "100.00"),
        ("2.5E1", "25.00"),
        ("10.100", "10.10"),
        ("999999999999.99", "999999999999.99"),
    ],
)
def test_put_budget_stores_the_limit_when_it_is_in_exponent_form_or_at_the_top_of_the_range(
    api, project, sent, answered
):
    response = api.put(f"/projects/{project.id}/budget", {"monthly_limit": sent})

    assert (response.status_code, response.json()["monthly_limit"]) == (200, answered)
    assert Budget.objects.get().monthly_limit == Decimal(answered)


@pytest.mark.parametrize(
    "thresholds",
    [[True], [1e30], [50.5], [50.0], ["50"], [[50]], [None], "50", {"a": 50}],
    ids=["true", "1e30", "50.5", "50.0", "string", "nested-list", "null-item", "not-a-list", "object"],
)
def test_put_budget_returns_400_naming_thresholds_and_their_range_when_a_threshold_is_no_whole_number(
    api, project, thresholds
):
    response = api.put(f"/projects/{project.id}/budget", {"monthly_limit": "10.00", "thresholds": thresholds})

    assert error(response) == (400, "thresholds")
    assert "whole percentages between 1 and 1000" in response.json()["detail"]
    assert not Budget.objects.exists()


def test_put_budget_returns_422_naming_monthly_limit_when_it_is_missing(api, project):
    assert error(api.put(f"/projects/{project.id}/budget", {"hard": True})) == (422, "monthly_limit")


def test_budget_operations_return_401_when_no_token_is_sent(anonymous, project):
    responses = [
        anonymous.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"}),
        anonymous.get(f"/projects/{project.id}/budget"),
        anonymous.delete(f"/projects/{project.id}/budget"),
        anonymous.post(f"/projects/{project.id}/credits", {"amount": "1", "reason": "r", "idempotency_key": "k"}),
        anonymous.post(f"/projects/{project.id}/adjustments", {"amount": "1", "reason": "r"}),
        anonymous.get(f"/projects/{project.id}/balance"),
        anonymous.get(f"/projects/{project.id}/ledger"),
    ]

    assert [r.status_code for r in responses] == [401] * len(responses)
    assert not Budget.objects.exists()
    assert not LedgerEntry.objects.exists()


# --- credits ---


def test_grant_credits_returns_201_with_the_entry_when_key_is_new(api, project):
    response = grant(api, project, "25.00", key="order-1")

    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["amount"], body["reason"]) == ("grant", "25.00", "Pilot extension")
    assert body["idempotency_key"] == "order-1"
    assert body["actor"] == "root (management API)"
    assert LedgerEntry.objects.get(kind="grant").amount == Decimal("25.00")


def test_grant_credits_returns_200_and_grants_nothing_more_when_key_is_repeated(api, project):
    first = grant(api, project, "25.00", key="order-1")

    again = grant(api, project, "25.00", key="order-1")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert LedgerEntry.objects.filter(kind="grant").count() == 1


def test_grant_credits_answers_a_decimal_string_when_amount_is_sent_as_a_number(api, project):
    response = api.post(f"/projects/{project.id}/credits", {"amount": 25, "reason": "Pilot", "idempotency_key": "k"})
    again = api.post(f"/projects/{project.id}/credits", {"amount": "25.00", "reason": "Pilot", "idempotency_key": "k"})

    assert (response.status_code, response.json()["amount"]) == (201, "25.00")
    assert (again.status_code, again.json()["amount"]) == (200, "25.00")


def test_grant_credits_returns_400_naming_idempotency_key_when_key_is_repeated_with_another_amount(api, project):
    grant(api, project, "25.00", key="order-1")

    response = grant(api, project, "30.00", key="order-1")

    assert error(response) == (400, "idempotency_key")
    assert [e.amount for e in LedgerEntry.objects.filter(kind="grant")] == [Decimal("25.00")]


def test_grant_credits_returns_400_naming_idempotency_key_when_key_was_used_for_another_project(api, project):
    grant(api, project, "25.00", key="order-1")

    response = grant(api, ProjectFactory(), "25.00", key="order-1")

    assert error(response) == (400, "idempotency_key")
    assert LedgerEntry.objects.filter(kind="grant").count() == 1


def test_grant_credits_gives_a_project_without_budget_a_hard_zero_budget_when_granted(api, project):
    grant(api, project, "25.00")

    body = api.get(f"/projects/{project.id}/budget").json()
    assert (body["monthly_limit"], body["hard"]) == ("0.00", True)
    assert api.get(f"/projects/{project.id}/balance").json()["limit"] == "25.000000"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "1.005"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 151}, "idempotency_key"),
    ],
)
def test_grant_credits_returns_400_naming_the_field_when_a_value_is_refused(api, project, changes, field):
    body = {"amount": "25.00", "reason": "Pilot extension", "idempotency_key": "order-1", **changes}

    response = api.post(f"/projects/{project.id}/credits", body)

    assert error(response) == (400, field)
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("sent", [*HOSTILE_AMOUNTS, pytest.param("0", id="zero"), pytest.param("-5", id="negative")])
def test_grant_credits_returns_400_naming_amount_and_its_range_when_the_amount_is_hostile(api, project, sent):
    response = api.post(f"/projects/{project.id}/credits", {"amount": sent, "reason": "r", "idempotency_key": "k"})

    assert error(response) == (400, "amount")
    detail = response.json()["detail"]
    assert detail.startswith("amount must be a decimal number from 0.01 to 999999999999.99"), detail
    assert "at most 2 decimal places" in detail
    assert not LedgerEntry.objects.exists()
    assert not Budget.objects.exists()


def test_grant_credits_grants_the_amount_when_it_is_in_exponent_form(api, project):
    response = api.post(f"/projects/{project.id}/credits", {"amount": "1e2", "reason": "r", "idempotency_key": "k"})

    assert (response.status_code, response.json()["amount"]) == (201, "100.00")


@pytest.mark.parametrize("missing", ["reason", "idempotency_key", "amount"])
def test_grant_credits_returns_422_naming_the_field_when_it_is_missing(api, project, missing):
    body = {"amount": "25.00", "reason": "Pilot extension", "idempotency_key": "order-1"}
    del body[missing]

    response = api.post(f"/projects/{project.id}/credits", body)

    assert error(response) == (422, missing)
    assert not LedgerEntry.objects.exists()


def test_grant_credits_returns_404_when_project_does_not_exist(api):
    response = api.post("/projects/999999/credits", {"amount": "1", "reason": "r", "idempotency_key": "k"})

    assert response.status_code == 404


# --- adjustments ---


def test_adjustment_returns_201_and_takes_money_away_when_amount_is_negative(api, project):
    response = api.post(f"/projects/{project.id}/adjustments", {"amount": "-5.00", "reason": "Upstream charge"})

    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["amount"], body["reason"], body["idempotency_key"]) == (
        "adjustment",
        "-5.00",
        "Upstream charge",
        None,
    )
    assert LedgerEntry.objects.get().amount == Decimal("-5.00")


def test_adjustment_returns_201_and_adds_money_when_amount_is_positive(api, project):
    response = api.post(f"/projects/{project.id}/adjustments", {"amount": "2.50", "reason": "Refund"})

    assert response.status_code == 201
    assert LedgerEntry.objects.get().amount == Decimal("2.50")


def test_adjustment_returns_400_naming_idempotency_key_when_key_is_repeated(api, project):
    body = {"amount": "2.50", "reason": "Refund", "idempotency_key": "refund-7"}
    first = api.post(f"/projects/{project.id}/adjustments", body)

    again = api.post(f"/projects/{project.id}/adjustments", body)

    assert first.json()["idempotency_key"] == "refund-7"
    assert error(again) == (400, "idempotency_key")
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"amount": "0"}, "amount"), ({"amount": "0.001"}, "amount"), ({"reason": ""}, "reason")],
)
def test_adjustment_returns_400_naming_the_field_when_a_value_is_refused(api, project, changes, field):
    response = api.post(f"/projects/{project.id}/adjustments", {"amount": "-5.00", "reason": "Fix", **changes})

    assert error(response) == (400, field)
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    "sent",
    [*HOSTILE_AMOUNTS, pytest.param("-1e30", id="string-minus-1e30"), pytest.param(-2.47e38, id="float-minus-2.47e38")],
)
def test_adjustment_returns_400_naming_amount_and_its_range_when_the_amount_is_hostile(api, project, sent):
    response = api.post(f"/projects/{project.id}/adjustments", {"amount": sent, "reason": "Fix"})

    assert error(response) == (400, "amount")
    detail = response.json()["detail"]
    assert detail.startswith("amount must be a decimal number from -999999999999.99 to 999999999999.99, not zero"), (
        detail
    )
    assert not LedgerEntry.objects.exists()


def test_adjustment_takes_the_amount_away_when_it_is_negative_in_exponent_form(api, project):
    response = api.post(f"/projects/{project.id}/adjustments", {"amount": "-1e2", "reason": "Fix"})

    assert (response.status_code, response.json()["amount"]) == (201, "-100.00")


def test_adjustment_returns_404_when_project_does_not_exist(api):
    assert api.post("/projects/999999/adjustments", {"amount": "1", "reason": "r"}).status_code == 404


# --- balance ---


def test_balance_adds_credit_to_allowance_and_subtracts_usage_when_project_has_both(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00", "hard": True})
    grant(api, project, "25.00")
    spend(project, "1.50")
    spend(project, "2.25")

    response = api.get(f"/projects/{project.id}/balance")

    assert response.status_code == 200
    assert response.json() == {
        "project": project.id,
        "period": "2026-04",
        "currency": "EUR",
        "limit": "125.000000",
        "spent": "3.750000",
        "reserved": "0.000000",
        "remaining": "121.250000",
        "monthly_limit": "100.00",
        "hard": True,
    }


def test_balance_keeps_cents_exact_when_costs_have_many_decimal_places(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "1.00"})
    for _ in range(3):
        spend(project, "0.1000003")

    body = api.get(f"/projects/{project.id}/balance").json()

    assert (body["limit"], body["spent"], body["remaining"]) == ("1.000000", "0.300001", "0.699999")


def test_balance_goes_negative_when_usage_exceeds_allowance_and_credit(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "10.00"})
    spend(project, "12.00")

    body = api.get(f"/projects/{project.id}/balance").json()

    assert (body["limit"], body["spent"], body["remaining"]) == ("10.000000", "12.000000", "-2.000000")


def test_balance_counts_adjustments_in_the_limit_when_balance_was_adjusted(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})
    api.post(f"/projects/{project.id}/adjustments", {"amount": "-30.00", "reason": "Upstream charge"})

    assert api.get(f"/projects/{project.id}/balance").json()["limit"] == "70.000000"


def test_balance_shows_what_requests_in_flight_hold_when_a_reservation_is_open(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})
    spend(project, "1.50")
    cap = budget.Cap(
        scope=budget.project_scope(project.id), limit=budget.micros(Decimal(100)), spent=0, name="p", remedy="r"
    )
    caps = budget.Caps(period="2026-04", caps=(cap,), budgeted=True)
    hold = async_to_sync(budget.reserve)(caps, request_id=uuid.uuid4().hex, amount=Decimal("0.75"))
    try:
        held = api.get(f"/projects/{project.id}/balance").json()
    finally:
        async_to_sync(budget.settle)(hold, cost=None)
    settled = api.get(f"/projects/{project.id}/balance").json()

    assert (held["spent"], held["reserved"], held["remaining"]) == ("1.500000", "0.750000", "97.750000")
    assert (settled["reserved"], settled["remaining"]) == ("0.000000", "98.500000")


def test_balance_shows_spend_without_limit_when_project_has_no_budget(api, project, settings):
    settings.BILLING_CURRENCY = "CHF"
    spend(project, "4.00")

    body = api.get(f"/projects/{project.id}/balance").json()

    assert body == {
        "project": project.id,
        "period": "2026-04",
        "currency": "CHF",
        "limit": None,
        "spent": "4.000000",
        "reserved": "0.000000",
        "remaining": None,
        "monthly_limit": None,
        "hard": None,
    }


def test_balance_counts_only_this_months_usage_as_spent_when_last_month_had_usage(api, project):
    with time_machine.travel(datetime(2026, 3, 20, 12, tzinfo=UTC)):
        api.put(f"/projects/{project.id}/budget", {"monthly_limit": "10.00"})
        grant(api, project, "5.00")
        spend(project, "4.00")
    spend(project, "1.00")

    body = api.get(f"/projects/{project.id}/balance").json()

    # March: 10 allowance - 4 usage - 6 expired; April: 10 allowance; credit 5 carries over.
    assert (body["limit"], body["spent"], body["remaining"]) == ("15.000000", "1.000000", "14.000000")


def test_balance_returns_404_when_project_does_not_exist(api):
    assert api.get("/projects/999999/balance").status_code == 404


# --- the ledger ---


def test_ledger_lists_entries_newest_first_when_project_has_several(api, project):
    with time_machine.travel(datetime(2026, 4, 1, 9, tzinfo=UTC), tick=False):
        api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})
    with time_machine.travel(datetime(2026, 4, 2, 9, tzinfo=UTC), tick=False):
        grant(api, project, "25.00")
    with time_machine.travel(datetime(2026, 4, 3, 9, tzinfo=UTC), tick=False):
        spend(project, "1.50", request_id="r1")
    with time_machine.travel(datetime(2026, 4, 4, 9, tzinfo=UTC), tick=False):
        api.post(f"/projects/{project.id}/adjustments", {"amount": "-2.00", "reason": "Fix"})

    response = api.get(f"/projects/{project.id}/ledger")

    assert response.status_code == 200
    rows = response.json()
    assert [(r["kind"], r["amount"]) for r in rows] == [
        ("adjustment", "-2.00"),
        ("usage", "-1.50"),
        ("grant", "25.00"),
        ("allowance", "100.00"),
    ]
    usage = rows[1]
    assert (usage["request_id"], usage["model"], usage["input_tokens"], usage["output_tokens"]) == ("r1", "m", 10, 5)
    assert (usage["period"], usage["priced"], usage["estimated"]) == ("2026-04-01", True, False)


def test_ledger_returns_only_the_newest_entries_when_limit_is_given(api, project):
    for n in range(5):
        with time_machine.travel(datetime(2026, 4, 2 + n, tzinfo=UTC), tick=False):
            spend(project, f"{n + 1}.00")

    rows = api.get(f"/projects/{project.id}/ledger", limit=2).json()

    assert [r["amount"] for r in rows] == ["-5.00", "-4.00"]


def test_ledger_returns_only_those_kinds_when_kind_is_given(api, project):
    api.put(f"/projects/{project.id}/budget", {"monthly_limit": "100.00"})
    grant(api, project, "25.00")
    spend(project, "1.50")
    api.post(f"/projects/{project.id}/adjustments", {"amount": "-2.00", "reason": "Fix"})

    grants = api.get(f"/projects/{project.id}/ledger", kind="grant").json()
    money_in = api.get(f"/projects/{project.id}/ledger", kind=["grant", "allowance"]).json()

    assert [r["kind"] for r in grants] == ["grant"]
    assert sorted(r["kind"] for r in money_in) == ["allowance", "grant"]


def test_ledger_shows_only_the_projects_own_entries_when_others_have_entries(api, project):
    spend(project, "1.00")
    spend(ProjectFactory(), "2.00")

    rows = api.get(f"/projects/{project.id}/ledger").json()

    assert [r["amount"] for r in rows] == ["-1.00"]


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"kind": "x"}, "kind")]
)
def test_ledger_returns_422_naming_the_parameter_when_it_is_out_of_range(api, project, params, field):
    response = api.get(f"/projects/{project.id}/ledger", **params)

    assert response.status_code == 422
    assert response.json()["field"].startswith(field)


def test_ledger_returns_404_when_project_does_not_exist(api):
    assert api.get("/projects/999999/ledger").status_code == 404
