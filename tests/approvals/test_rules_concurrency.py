"""The monthly cap of an approval rule holds when many credit requests for one project arrive at
the same moment: each is filed and decided in its own thread with its own database connection.

To make "the same moment" sure rather than likely, the test holds the rules table locked while the
50 requests are filed: every decision queues at its first read of the rules, and all of them go
on together when the test lets go. Without the per-project lock of `services.apply_rules` they
would all read the same month's total, and far more than the cap would be approved."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import connection, transaction

from approvals import rules, services
from approvals.models import CreditRequest, State
from billing import selectors as billing_selectors
from gateway import services as gateway_services
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REQUESTS = 50


@pytest.fixture
def connection_per_thread() -> Iterator[None]:
    """psycopg's pool (settings: at most 10) large enough for every thread to hold a connection
    at once, for this test only."""
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = options.get("pool")
    connection.close()
    connection.close_pool()
    options["pool"] = (saved if isinstance(saved, dict) else {}) | {"min_size": 1, "max_size": REQUESTS + 2}
    yield
    connection.close()
    connection.close_pool()
    if saved is None:
        options.pop("pool", None)
    else:
        options["pool"] = saved


def wait_for_waiting_backends(cursor, *, count: int, timeout: float = 60) -> int:  # type: ignore[no-untyped-def]
    """How many other connections wait for a lock, once `count` do (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the transaction's first snapshot, again
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        waiting = cursor.fetchone()[0]
        if waiting >= count or time.monotonic() > deadline:
            return waiting
        time.sleep(0.05)


def test_monthly_cap_holds_when_50_credit_requests_arrive_at_once(connection_per_thread, world):
    services.create_rule(name="Small", action="approve", applies_to="credit", max_amount="10.00", monthly_cap="100.00")
    services.create_rule(name="Odd amounts", action="deny", applies_to="credit", max_amount="3.00", priority=1)
    project = world.project_a
    people = [UserFactory(username=f"dev{i:02}") for i in range(REQUESTS)]
    for person in people:
        gateway_services.add_member(project=project, user=person)
    amounts = [Decimal("3.00") if i % 10 == 0 else Decimal("7.00") for i in range(REQUESTS)]  # 5 denied
    balance_before = billing_selectors.project_money(project_ids=[project.id])[project.id].balance
    start, errors = threading.Barrier(REQUESTS), []

    def ask(person, amount):  # type: ignore[no-untyped-def]
        try:
            start.wait(timeout=30)
            services.file_credit_request(user=person, project=project, amount=amount, reason="Burst")
        except Exception as exc:  # reported below; a thread cannot fail the test itself
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=pair) for pair in zip(people, amounts, strict=True)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE approvals_approvalrule IN ACCESS EXCLUSIVE MODE")
        for thread in threads:
            thread.start()
        waiting = wait_for_waiting_backends(cursor, count=REQUESTS)
    for thread in threads:
        thread.join(timeout=120)

    assert waiting == REQUESTS  # all 50 were filed and queued before any decision was taken

    assert errors == []
    states = list(CreditRequest.objects.filter(project=project).values_list("state", "amount"))
    assert len(states) == REQUESTS
    approved = sum((amount for state, amount in states if state == State.AUTO_APPROVED), Decimal(0))
    assert approved == Decimal("98.00")  # 14 x 7.00: a 15th would pass the cap of 100.00
    assert {state for state, _ in states} == {State.AUTO_APPROVED, State.AUTO_DENIED, State.PENDING}
    assert sum(state == State.AUTO_DENIED for state, _ in states) == 5
    assert sum(state == State.PENDING for state, _ in states) == REQUESTS - 5 - 14
    assert rules.auto_approved_credit(project_id=project.id) == approved
    balance_after = billing_selectors.project_money(project_ids=[project.id])[project.id].balance
    assert balance_after - balance_before == approved
