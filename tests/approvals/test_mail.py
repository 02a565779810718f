"""The workflow's mails: to each approver when a request is filed (with a decision link of their
own, alone on a line of the plain-text part and starting with PUBLIC_URL), to the requester when
it ends; queued only after commit, sent once, retried on SMTP failure."""

from __future__ import annotations

import re
from smtplib import SMTPException

import pytest
from celery.exceptions import Retry
from django.core import mail as django_mail
from django.db import DatabaseError

from approvals import services, tasks, tokens
from approvals.errors import ApprovalError
from approvals.models import MailStep, SentMail, State
from tests.factories import UserFactory
from tests.mock_upstream import free_port

pytestmark = pytest.mark.django_db


def credit(world, **kwargs):  # type: ignore[no-untyped-def]
    return services.file_credit_request(
        user=world.dev_a, project=world.project_a, amount="1250.00", reason="Load <b>test</b> next week", **kwargs
    )


def parts(message) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return message.body, html


def link_lines(text: str, public_url: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(public_url)]


def test_each_approver_gets_a_mail_with_the_request_and_a_link_of_their_own_when_it_is_filed(
    world, mailoutbox, settings, django_capture_on_commit_callbacks
):
    second = UserFactory(username="mo", first_name="Mo", last_name="Second")
    world.unit.managers.add(second)

    with django_capture_on_commit_callbacks(execute=True):
        request = credit(world)

    assert sorted(m.to[0] for m in mailoutbox) == ["maria@example.test", "mo@example.test"]
    message = next(m for m in mailoutbox if m.to == ["maria@example.test"])
    assert message.subject == "[Symbiosis] Alice Archer asks for 1,250.00 EUR of credit for Checkout"
    text, html = parts(message)
    for fact in ("Amount: 1,250.00 EUR", "Project: Checkout (business unit Retail)", "Balance now: 100.00 EUR"):
        assert fact in text
    assert "Spent this month: 0.00 EUR of 100.00 EUR a month" in text
    assert "Load <b>test</b> next week" in text  # plain text is not HTML-escaped
    assert "Load &lt;b&gt;test&lt;/b&gt; next week" in html and "<b>test</b>" not in html
    [line] = [ln for ln in link_lines(text, settings.PUBLIC_URL) if "/approvals/t/" in ln]
    assert re.fullmatch(re.escape(settings.PUBLIC_URL) + r"/approvals/t/[^/\s]+/", line)
    assert f'href="{line}"' in html
    claim = tokens.read_token(line.rsplit("/", 2)[-2])
    assert (claim.kind, claim.request_id, claim.user_id) == ("credit", request.pk, world.manager.pk)
    other = next(m for m in mailoutbox if m.to == ["mo@example.test"])
    [other_line] = [ln for ln in link_lines(other.body, settings.PUBLIC_URL) if "/approvals/t/" in ln]
    assert tokens.read_token(other_line.rsplit("/", 2)[-2]).user_id == second.pk


def test_mail_is_queued_only_after_the_request_is_committed(world, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        credit(world)
    assert mailoutbox == []

    with django_capture_on_commit_callbacks(execute=True):  # the commit: its callbacks run
        for callback in callbacks:
            callback()

    assert [m.to for m in mailoutbox] == [["maria@example.test"]]


def test_nothing_is_mailed_when_the_decision_is_rolled_back(world, mailoutbox, django_capture_on_commit_callbacks):
    request = services.file_new_project_request(
        user=world.dev_a, business_unit=world.unit, name="Fraud", reason="A new team"
    )
    from gateway import services as gateway_services

    gateway_services.create_project(name="fraud", business_unit=world.unit)  # the name is taken meanwhile

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(ApprovalError):
        services.approve_request(kind="access", request_id=request.pk, by=world.manager)

    assert callbacks == [] and mailoutbox == []
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_requester_is_told_how_it_ended_when_approved_or_denied(
    world, mailoutbox, settings, django_capture_on_commit_callbacks
):
    approved = credit(world)
    denied = services.file_credit_request(user=world.dev_b, project=world.project_b, amount="5", reason="More")

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(kind="credit", request_id=approved.pk, by=world.manager)
        services.deny_request(kind="credit", request_id=denied.pk, by=world.manager, comment="Ask in Q3")

    yes, no = mailoutbox
    assert yes.to == ["alice@example.test"]
    assert yes.subject == "[Symbiosis] Your request for 1,250.00 EUR of credit for Checkout was approved"
    assert "by Maria Manager" in yes.body and "can be spent at once" in yes.body
    assert f"{settings.PUBLIC_URL}/projects/{world.project_a.pk}/" in yes.body
    assert no.to == ["bob@example.test"] and no.subject.endswith("was denied")
    assert "Ask in Q3" in no.body and "Ask in Q3" in parts(no)[1]


def test_a_mail_goes_out_once_when_the_task_runs_twice(world, mailoutbox):
    request = credit(world)

    tasks.send_approver_mails.delay("credit", request.pk, MailStep.FILED)
    tasks.send_approver_mails.delay("credit", request.pk, MailStep.FILED)

    assert len(mailoutbox) == 1
    assert SentMail.objects.filter(key=f"credit:{request.pk}:filed:{world.manager.pk}").count() == 1


def test_no_approver_mail_when_the_request_is_no_longer_pending(world, mailoutbox):
    request = credit(world)
    services.cancel_request(kind="credit", request_id=request.pk, by=world.dev_a)

    tasks.send_approver_mails.delay("credit", request.pk, MailStep.FILED)
    tasks.send_requester_mail.delay("credit", request.pk, MailStep.DECIDED)

    assert mailoutbox == []


def test_people_without_an_address_are_skipped(world, mailoutbox):
    world.manager.email = ""
    world.manager.save()
    request = credit(world)

    assert tasks.send_approver_mails.delay("credit", request.pk, MailStep.FILED).get() == 0
    assert mailoutbox == []


def test_smtp_failure_is_retried_and_the_mail_sent_once_the_server_answers(world, settings, mailoutbox):
    request = credit(world)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False

    with pytest.raises(Retry) as retry:
        tasks.send_approver_mails.delay("credit", request.pk, MailStep.FILED)
    assert isinstance(retry.value.exc, ConnectionRefusedError)
    assert SentMail.objects.count() == 0

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    tasks.send_approver_mails.delay("credit", request.pk, MailStep.FILED)
    assert len(django_mail.outbox) == 1


def test_mail_tasks_are_declared_for_retries_and_worker_loss():
    for task in (tasks.send_approver_mails, tasks.send_requester_mail):
        assert task.acks_late and task.reject_on_worker_lost
        assert {SMTPException, OSError, DatabaseError} <= set(task.autoretry_for)
        assert task.retry_backoff and task.max_retries
