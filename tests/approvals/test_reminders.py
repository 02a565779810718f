"""The clock of a pending request, driven through beat's tasks with a controlled clock: the
approvers are reminded after APPROVAL_REMIND_AFTER_HOURS, the administrators get it after
APPROVAL_ESCALATE_AFTER_HOURS, it expires after APPROVAL_EXPIRE_AFTER_HOURS; the requester is told
at each step, and each step happens once however often beat runs."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from approvals import services, tasks, tokens
from approvals.models import CreditRequest, State, Via
from gateway.celery import app

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _delays(settings):  # type: ignore[no-untyped-def]
    settings.APPROVAL_REMIND_AFTER_HOURS = 24
    settings.APPROVAL_ESCALATE_AFTER_HOURS = 72
    settings.APPROVAL_EXPIRE_AFTER_HOURS = 168
    settings.APPROVAL_LINK_MAX_AGE_HOURS = 168


def filed(world, django_capture_on_commit_callbacks, mailoutbox) -> CreditRequest:  # type: ignore[no-untyped-def]
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        request = services.file_credit_request(
            user=world.dev_a, project=world.project_a, amount="50.00", reason="Load test"
        )
    mailoutbox.clear()
    return request


def beat(hours: float, django_capture_on_commit_callbacks) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """Run the three periodic tasks at T0 + hours (as beat does, in its order)."""
    with (
        time_machine.travel(T0 + dt.timedelta(hours=hours), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        return (
            tasks.remind_due_requests.delay().get(),
            tasks.escalate_due_requests.delay().get(),
            tasks.expire_due_requests.delay().get(),
        )


def inbox(mailoutbox) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(m.to[0].split("@")[0], m.subject.removeprefix("[Symbiosis] ")) for m in mailoutbox]


def test_nothing_happens_before_the_first_delay(world, mailoutbox, django_capture_on_commit_callbacks):
    request = filed(world, django_capture_on_commit_callbacks, mailoutbox)

    assert beat(23.9, django_capture_on_commit_callbacks) == (0, 0, 0)

    request.refresh_from_db()
    assert (request.state, request.reminded_at, request.escalated_at) == (State.PENDING, None, None)
    assert mailoutbox == []


def test_approvers_are_reminded_once_and_the_requester_told_when_the_delay_passed(
    world, mailoutbox, django_capture_on_commit_callbacks
):
    request = filed(world, django_capture_on_commit_callbacks, mailoutbox)

    assert beat(24, django_capture_on_commit_callbacks) == (1, 0, 0)
    assert beat(25, django_capture_on_commit_callbacks) == (0, 0, 0)  # beat again: nothing new

    request.refresh_from_db()
    assert request.reminded_at == T0 + dt.timedelta(hours=24)
    assert inbox(mailoutbox) == [
        ("maria", "Reminder: Alice Archer asks for 50.00 EUR of credit for Checkout"),
        ("alice", "Your request for 50.00 EUR of credit for Checkout is still waiting"),
    ]
    assert "/approvals/t/" in mailoutbox[0].body and "managers of Retail were reminded" in mailoutbox[1].body


def test_administrators_get_it_once_with_a_working_link_when_escalated(
    world, mailoutbox, django_capture_on_commit_callbacks
):
    request = filed(world, django_capture_on_commit_callbacks, mailoutbox)
    beat(24, django_capture_on_commit_callbacks)
    mailoutbox.clear()

    assert beat(72, django_capture_on_commit_callbacks) == (0, 1, 0)
    assert beat(73, django_capture_on_commit_callbacks) == (0, 0, 0)

    request.refresh_from_db()
    assert request.escalated_at == T0 + dt.timedelta(hours=72) and request.state == State.PENDING
    assert inbox(mailoutbox) == [
        ("root", "Escalated to you: Alice Archer asks for 50.00 EUR of credit for Checkout"),
        ("alice", "Your request for 50.00 EUR of credit for Checkout went to the administrators"),
    ]
    line = next(
        ln for ln in mailoutbox[0].body.splitlines() if ln.startswith(django_settings.PUBLIC_URL + "/approvals/t/")
    )
    with time_machine.travel(T0 + dt.timedelta(hours=74), tick=False):
        client = Client()
        client.force_login(world.admin)
        client.get(line.removeprefix(django_settings.PUBLIC_URL))
        page = reverse("approvals:decide", kwargs={"kind": "credit", "request_id": request.pk})
        assert client.post(page, {"decision": "approve"}).status_code == 302
    request.refresh_from_db()
    assert (request.state, request.decided_by, request.decided_via) == (State.APPROVED, world.admin, Via.EMAIL)


def test_request_expires_once_and_the_requester_is_told_when_nobody_decided(
    world, mailoutbox, django_capture_on_commit_callbacks
):
    request = filed(world, django_capture_on_commit_callbacks, mailoutbox)
    link = tokens.make_token(request=request, user=world.manager)

    assert beat(168, django_capture_on_commit_callbacks) == (0, 0, 1)
    assert beat(200, django_capture_on_commit_callbacks) == (0, 0, 0)

    request.refresh_from_db()
    assert (request.state, request.decided_via) == (State.EXPIRED, Via.SYSTEM)
    assert request.decision_comment == "Nobody decided it within 168 hours."
    assert inbox(mailoutbox) == [
        ("alice", "Your request for 50.00 EUR of credit for Checkout expired: nobody decided it in time")
    ]
    assert "Nobody decided it in time" in mailoutbox[0].body
    with pytest.raises(tokens.LinkRefused, match="closed because nobody decided it in time"):
        services.decide_by_link(token=link, by=world.manager, approve=True)


def test_only_the_furthest_step_is_taken_when_beat_was_down(world, mailoutbox, django_capture_on_commit_callbacks):
    request = filed(world, django_capture_on_commit_callbacks, mailoutbox)

    assert beat(100, django_capture_on_commit_callbacks) == (0, 1, 0)

    request.refresh_from_db()
    assert request.reminded_at is None and request.escalated_at is not None
    assert [to for to, _ in inbox(mailoutbox)] == ["root", "alice"]


def test_decided_requests_are_left_alone_by_the_clock(world, mailoutbox, django_capture_on_commit_callbacks):
    request = filed(world, django_capture_on_commit_callbacks, mailoutbox)
    services.approve_request(kind="credit", request_id=request.pk, by=world.manager)

    assert beat(24, django_capture_on_commit_callbacks) == (0, 0, 0)
    assert beat(72, django_capture_on_commit_callbacks) == (0, 0, 0)
    assert beat(168, django_capture_on_commit_callbacks) == (0, 0, 0)
    request.refresh_from_db()
    assert request.state == State.APPROVED and request.reminded_at is None


def test_a_step_set_to_zero_is_skipped(world, settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.APPROVAL_REMIND_AFTER_HOURS = 0
    settings.APPROVAL_ESCALATE_AFTER_HOURS = 0
    settings.APPROVAL_EXPIRE_AFTER_HOURS = 0
    filed(world, django_capture_on_commit_callbacks, mailoutbox)

    assert beat(10_000, django_capture_on_commit_callbacks) == (0, 0, 0)


def test_beat_schedule_runs_the_three_periodic_tasks():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    names = {entry["task"] for key, entry in schedule.items() if key.startswith("approvals-")}

    assert names == {
        "approvals.remind_due_requests",
        "approvals.escalate_due_requests",
        "approvals.expire_due_requests",
    }
    assert names <= set(app.tasks)
    for task in (tasks.remind_due_requests, tasks.escalate_due_requests, tasks.expire_due_requests):
        assert task.acks_late and task.reject_on_worker_lost
