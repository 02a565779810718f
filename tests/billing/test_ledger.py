"""The ledger: append-only, usage debited once per request, months opened and closed without
losing or double-counting a cent, credit grants exact under concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum

from billing import selectors, services
from billing.models import LedgerEntry
from gateway import services as gateway_services
from gateway.models import Project
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

OCTOBER, NOVEMBER = date(2026, 10, 1), date(2026, 11, 1)


@pytest.fixture(autouse=True)
def _mid_month() -> Iterator[None]:
    """Every test starts mid-month, so none straddles the end of a billing period by accident."""
    with time_machine.travel(datetime(2026, 10, 14, 10, tzinfo=UTC), tick=True):
        yield


@pytest.fixture
def project() -> Project:
    return ProjectFactory(name="Shop")


def usage(project: Project, cost: Decimal | None, **changes: Any) -> dict[str, Any]:
    return {
        "request_id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC),
        "project_id": project.id,
        "business_unit_id": project.business_unit_id,
        "key_id": None,
        "key_prefix": "",
        "model": "m",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "usage_estimated": False,
        "cost": cost,
        **changes,
    }


def spend(project: Project, cost: str) -> None:
    services.record_usage(entries=[usage(project, Decimal(cost))])


def entries(project: Project, **filters: Any) -> list[tuple[str, str, Decimal]]:
    """(kind, month, amount) of the project's entries, oldest first."""
    rows = LedgerEntry.objects.filter(project=project, **filters).order_by("created_at", "id")
    return [(e.kind, f"{e.period:%Y-%m}", e.amount) for e in rows]


def total(project: Project) -> Decimal:
    return LedgerEntry.objects.filter(project=project).aggregate(total=Sum("amount"))["total"] or Decimal(0)


def november_standing(project: Project) -> selectors.Standing:
    return selectors.project_standing(selectors.project_budget(project.id), NOVEMBER)


# --- append-only ---


def test_saving_an_entry_again_raises_when_it_exists(project):
    services.adjust_balance(project=project, amount="5.00", reason="Refund")
    entry = LedgerEntry.objects.get()
    entry.amount = Decimal("500.00")

    with pytest.raises(ValidationError, match="never changed"):
        entry.save()

    assert LedgerEntry.objects.get().amount == Decimal("5.00")


def test_deleting_an_entry_raises_when_it_exists(project):
    services.adjust_balance(project=project, amount="5.00", reason="Refund")
    entry = LedgerEntry.objects.get()

    with pytest.raises(ValidationError, match="never deleted"):
        entry.delete()

    assert LedgerEntry.objects.count() == 1


def test_database_refuses_a_raw_update_when_an_entry_exists(project):
    entry = services.adjust_balance(project=project, amount="5.00", reason="Refund")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_ledgerentry SET amount = 500 WHERE id = %s", [entry.id])

    assert LedgerEntry.objects.get().amount == Decimal("5.00")


@pytest.mark.postgres
def test_database_refuses_a_raw_delete_when_an_entry_exists(project):
    # SQLite keeps no delete guard: its flush between tests deletes row by row (see migration 0002).
    entry = services.adjust_balance(project=project, amount="5.00", reason="Refund")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_ledgerentry WHERE id = %s", [entry.id])

    assert LedgerEntry.objects.count() == 1


# --- usage debits ---


def test_record_usage_debits_the_cost_once_when_the_same_request_is_recorded_twice(project):
    row = usage(project, Decimal("1.50"), request_id="r1")

    services.record_usage(entries=[row])
    services.record_usage(entries=[row, usage(project, Decimal("0.25"), request_id="r2")])

    debits = LedgerEntry.objects.filter(kind="usage").order_by("request_id")
    assert [(d.request_id, d.amount) for d in debits] == [("r1", Decimal("-1.50")), ("r2", Decimal("-0.25"))]
    assert selectors.month_spend(project_id=project.id) == Decimal("1.75")


def test_record_usage_copies_the_request_onto_the_debit_when_recorded(project):
    row = usage(project, Decimal("0.1234567891"), request_id="r1", input_tokens=7, output_tokens=3, cached_tokens=2)
    row.update(usage_estimated=True, answered_model="gpt-4o-2024", key_prefix="sk-abc")

    services.record_usage(entries=[row])

    debit = LedgerEntry.objects.get()
    assert (debit.kind, debit.amount, debit.period, debit.created_at) == (
        "usage",
        Decimal("-0.1234567891"),
        OCTOBER,
        row["created_at"],
    )
    assert (debit.input_tokens, debit.output_tokens, debit.cached_tokens) == (7, 3, 2)
    assert (debit.model, debit.key_prefix, debit.estimated, debit.priced) == ("gpt-4o-2024", "sk-abc", True, True)
    assert debit.business_unit_id == project.business_unit_id


def test_record_usage_skips_the_request_when_it_used_no_tokens_and_no_money(project):
    services.record_usage(
        entries=[
            usage(project, None, input_tokens=0, output_tokens=0),
            usage(project, Decimal(0), input_tokens=0, output_tokens=0),
            usage(project, Decimal("1.00"), project_id=None),
        ]
    )

    assert not LedgerEntry.objects.exists()


def test_record_usage_debits_nothing_and_marks_unpriced_when_cost_is_unknown(project):
    services.record_usage(entries=[usage(project, None, request_id="r1")])

    debit = LedgerEntry.objects.get()
    assert (debit.request_id, debit.amount, debit.priced, debit.input_tokens) == ("r1", Decimal(0), False, 10)


def test_record_usage_debits_the_month_the_request_was_made_when_recorded_later(project):
    with time_machine.travel(datetime(2026, 11, 1, 0, 0, 5, tzinfo=UTC), tick=False):
        services.record_usage(
            entries=[usage(project, Decimal("2.00"), created_at=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))]
        )

    assert entries(project) == [("usage", "2026-10", Decimal("-2.00"))]


# --- monthly allowance and limit changes ---


def test_setting_a_budget_writes_this_months_allowance_once_when_set_twice(project):
    services.set_budget(target=project, monthly_limit="100.00")
    services.set_budget(target=project, monthly_limit="100.00", hard=False)

    assert entries(project) == [("allowance", "2026-10", Decimal("100.00"))]


def test_changing_the_monthly_limit_adds_the_difference_when_the_month_is_open(project):
    services.set_budget(target=project, monthly_limit="100.00")

    services.set_budget(target=project, monthly_limit="150.00", actor="root")
    services.set_budget(target=project, monthly_limit="80.00")

    assert entries(project) == [
        ("allowance", "2026-10", Decimal("100.00")),
        ("allowance", "2026-10", Decimal("50.00")),
        ("allowance", "2026-10", Decimal("-70.00")),
    ]
    change = LedgerEntry.objects.filter(amount=Decimal("50.00")).get()
    assert (change.reason, change.actor) == ("Monthly limit changed from 100.00 to 150.00", "root")
    assert selectors.project_standing(selectors.project_budget(project.id)).limit == Decimal("80.00")


def test_changing_the_monthly_limit_keeps_credit_and_spend_when_money_was_spent(project):
    services.set_budget(target=project, monthly_limit="100.00")
    services.grant_credits(project=project, amount="20.00", reason="Pilot", idempotency_key="g1")
    spend(project, "30.00")

    services.set_budget(target=project, monthly_limit="50.00")

    standing = selectors.project_standing(selectors.project_budget(project.id))
    assert (standing.limit, standing.spent) == (Decimal("70.00"), Decimal("30.00"))


def test_a_key_or_unit_budget_writes_no_allowance_when_set(project):
    key = gateway_services.create_virtual_key(project=project, name="ci").key
    services.set_budget(target=key, monthly_limit="5.00")
    services.set_budget(target=project.business_unit, monthly_limit="500.00")

    assert not LedgerEntry.objects.exists()


# --- the month boundary ---


def test_new_month_expires_unused_allowance_and_keeps_credit_when_opened_twice(project):
    with time_machine.travel(datetime(2026, 10, 10, 12, tzinfo=UTC), tick=False):
        services.set_budget(target=project, monthly_limit="10.00")
        spend(project, "4.00")
        services.grant_credits(project=project, amount="5.00", reason="Pilot", idempotency_key="g1")
    before = total(project)

    with time_machine.travel(datetime(2026, 11, 1, 0, 5, tzinfo=UTC), tick=False):
        services.open_period(project_id=project.id)
        services.open_period(project_id=project.id)
        standing = november_standing(project)

    assert before == Decimal("11.00")
    assert entries(project, kind__in=["expiry", "allowance"], period__gte=OCTOBER) == [
        ("allowance", "2026-10", Decimal("10.00")),
        ("expiry", "2026-10", Decimal("-6.00")),
        ("allowance", "2026-11", Decimal("10.00")),
    ]
    assert (standing.limit, standing.spent) == (Decimal("15.00"), Decimal(0))
    assert total(project) == standing.limit == before - Decimal("6.00") + Decimal("10.00")


def test_new_month_expires_nothing_and_credit_pays_the_overspend_when_last_month_overspent(project):
    with time_machine.travel(datetime(2026, 10, 10, 12, tzinfo=UTC), tick=False):
        services.set_budget(target=project, monthly_limit="10.00")
        services.grant_credits(project=project, amount="5.00", reason="Pilot", idempotency_key="g1")
        spend(project, "13.00")

    with time_machine.travel(datetime(2026, 11, 2, 9, tzinfo=UTC), tick=False):
        services.open_period(project_id=project.id)
        standing = november_standing(project)

    [expiry] = LedgerEntry.objects.filter(kind="expiry")
    assert (expiry.period, expiry.amount) == (OCTOBER, Decimal(0))
    assert (standing.limit, standing.spent) == (Decimal("12.00"), Decimal(0))  # 2 credit left + 10 allowance
    assert total(project) == standing.limit


def test_new_month_counts_usage_recorded_late_in_the_month_it_was_made_when_opened(project):
    with time_machine.travel(datetime(2026, 10, 10, 12, tzinfo=UTC), tick=False):
        services.set_budget(target=project, monthly_limit="10.00")

    with time_machine.travel(datetime(2026, 11, 1, 0, 0, 3, tzinfo=UTC), tick=False):
        late = usage(project, Decimal("3.00"), created_at=datetime(2026, 10, 31, 23, 59, 58, tzinfo=UTC))
        services.record_usage(entries=[late, usage(project, Decimal("1.00"))])
        services.open_period(project_id=project.id)
        standing = november_standing(project)

    assert LedgerEntry.objects.get(kind="expiry").amount == Decimal("-7.00")
    assert (standing.limit, standing.spent) == (Decimal("10.00"), Decimal("1.00"))
    assert total(project) == standing.limit - standing.spent


def test_each_past_month_is_closed_once_when_the_next_month_opened_is_weeks_later(project):
    with time_machine.travel(datetime(2026, 9, 10, 12, tzinfo=UTC), tick=False):
        services.set_budget(target=project, monthly_limit="10.00")
        spend(project, "1.00")
    with time_machine.travel(datetime(2026, 10, 10, 12, tzinfo=UTC), tick=False):
        services.open_period(project_id=project.id)
        spend(project, "2.00")

    with time_machine.travel(datetime(2026, 12, 3, 12, tzinfo=UTC), tick=False):
        services.open_period(project_id=project.id)
        services.open_period(project_id=project.id)

    assert entries(project, kind__in=["expiry", "allowance"]) == [
        ("allowance", "2026-09", Decimal("10.00")),
        ("expiry", "2026-09", Decimal("-9.00")),
        ("allowance", "2026-10", Decimal("10.00")),
        ("expiry", "2026-10", Decimal("-8.00")),
        ("allowance", "2026-12", Decimal("10.00")),
    ]
    assert total(project) == Decimal("10.00")


def test_setting_a_budget_in_a_new_month_closes_the_last_one_at_the_new_limit_when_not_yet_opened(project):
    with time_machine.travel(datetime(2026, 10, 10, 12, tzinfo=UTC), tick=False):
        services.set_budget(target=project, monthly_limit="10.00")
        spend(project, "4.00")

    with time_machine.travel(datetime(2026, 11, 5, 12, tzinfo=UTC), tick=False):
        services.set_budget(target=project, monthly_limit="20.00")
        standing = november_standing(project)

    assert entries(project, kind__in=["expiry", "allowance"]) == [
        ("allowance", "2026-10", Decimal("10.00")),
        ("expiry", "2026-10", Decimal("-6.00")),
        ("allowance", "2026-11", Decimal("20.00")),
    ]
    assert standing.limit == Decimal("20.00")


def test_open_period_does_nothing_when_the_project_has_no_budget(project):
    spend(project, "1.00")

    with time_machine.travel(datetime(2026, 11, 5, 12, tzinfo=UTC), tick=False):
        services.open_period(project_id=project.id)

    assert entries(project) == [("usage", "2026-10", Decimal("-1.00"))]


# --- credit grants ---


def test_grant_credits_adds_once_when_the_same_key_is_sent_twice(project):
    first = services.grant_credits(project=project, amount="25.00", reason="Pilot", idempotency_key="order-1")
    again = services.grant_credits(project=project, amount=Decimal(25), reason="Pilot", idempotency_key="order-1")

    assert (first.created, again.created, again.entry.id) == (True, False, first.entry.id)
    assert entries(project, kind="grant") == [("grant", "2026-10", Decimal("25.00"))]


def _in_threads(count: int, work: Any) -> list[BaseException]:
    """Run work(n) in `count` threads released at once; each closes its own connection."""
    start, failures = threading.Barrier(count), []

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # the test asserts there were none
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return failures


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_grants_add_once_when_they_share_an_idempotency_key(project):
    results: list[bool] = []

    def work(n: int) -> None:
        granted = services.grant_credits(project=project, amount="25.00", reason="Pilot", idempotency_key="order-1")
        results.append(granted.created)

    failures = _in_threads(8, work)

    assert failures == []
    assert sorted(results) == [False] * 7 + [True]
    assert entries(project, kind="grant") == [("grant", "2026-10", Decimal("25.00"))]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_grants_all_add_up_exactly_when_their_keys_differ(project):
    def work(n: int) -> None:
        services.grant_credits(project=project, amount=f"{n + 1}.01", reason="Pilot", idempotency_key=f"order-{n}")

    failures = _in_threads(8, work)

    assert failures == []
    assert LedgerEntry.objects.filter(project=project, kind="grant").count() == 8
    assert total(project) == sum(Decimal(f"{n + 1}.01") for n in range(8)) == Decimal("36.08")
    assert selectors.project_budget(project.id).monthly_limit == Decimal(0)
