"""Two approvers clicking at the same moment: one decision, one effect (row lock on PostgreSQL)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from approvals import services
from approvals.errors import AlreadyDecided
from approvals.models import RequestEvent, State
from billing import selectors as billing_selectors
from gateway.models import Membership
from tests.portal.conftest import build_world

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(actions: list) -> list[object]:  # type: ignore[type-arg]
    barrier = threading.Barrier(len(actions))
    outcomes: list[object] = [None] * len(actions)

    def run(index: int) -> None:
        try:
            barrier.wait()
            outcomes[index] = actions[index]()
        except Exception as error:
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_two_approvers_at_once_make_one_decision_and_grant_once():
    world = build_world()
    request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="40.00", reason="x")
    before = billing_selectors.project_money(project_ids=[world.project_a.id])[world.project_a.id].balance

    outcomes = _race(
        [
            lambda: services.approve_request(kind="credit", request_id=request.id, by=world.manager),
            lambda: services.approve_request(kind="credit", request_id=request.id, by=world.admin),
            lambda: services.deny_request(kind="credit", request_id=request.id, by=world.admin, comment="no"),
        ]
    )

    decided = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(decided) == 1, outcomes
    assert all(isinstance(o, AlreadyDecided) for o in outcomes if isinstance(o, Exception)), outcomes
    request.refresh_from_db()
    after = billing_selectors.project_money(project_ids=[world.project_a.id])[world.project_a.id].balance
    assert after - before == (Decimal("40.00") if request.state == State.APPROVED else 0)
    assert RequestEvent.objects.filter(credit_request=request).exclude(to_state=State.PENDING).count() == 1


def test_owner_and_administrator_approving_a_join_at_once_add_one_membership():
    world = build_world()
    request = services.file_join_request(user=world.newcomer, project=world.project_a, reason="x")

    outcomes = _race(
        [
            lambda: services.approve_request(kind="access", request_id=request.id, by=world.dev_a),
            lambda: services.approve_request(kind="access", request_id=request.id, by=world.admin),
        ]
    )

    assert sum(not isinstance(o, Exception) for o in outcomes) == 1, outcomes
    assert Membership.objects.filter(project=world.project_a, user=world.newcomer).count() == 1
