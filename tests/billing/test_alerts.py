"""Budget alerts: each threshold (50/80/100%) raised once a month, mailed through a real SMTP
server (aiosmtpd), noted for the people concerned and posted to a real webhook server."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from aiosmtpd.controller import Controller
from celery import signals
from django.db import connection

from billing import alerts, services, tasks
from billing.models import AlertEvent
from gateway import services as gateway_services
from gateway.celery import app as celery_app
from gateway.models import BusinessUnit, Membership, Notification, Project, VirtualKey
from tests.factories import BusinessUnitFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.mock_upstream import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _mid_month() -> Iterator[None]:
    """Every test starts mid-month, so no test straddles the end of a billing period."""
    with time_machine.travel(datetime(2026, 3, 16, 10, tzinfo=UTC), tick=True):
        yield


# --- a real SMTP server and a real webhook receiver ---


@dataclass
class Mail:
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_content()


class _Inbox:
    """aiosmtpd handler: keeps every message the server accepted."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.mails.append(Mail(sorted(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return [mail.subject for mail in self.mails]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def inbox(smtp_server: tuple[_Inbox, int], settings) -> _Inbox:  # type: ignore[no-untyped-def]
    """Django sends mail over SMTP to the test server, as it does in production."""
    server, port = smtp_server
    server.mails.clear()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "Symbiosis Gateway <gateway@example.test>"
    settings.BILLING_CURRENCY = "EUR"
    return server


class _WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.posts.append((self.path, self.headers.get("Content-Type"), json.loads(self.rfile.read(length))))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
    server.posts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- a business unit with a manager, a project with an owner and a member ---


@dataclass
class Org:
    unit: BusinessUnit
    project: Project
    manager: object
    owner: object
    member: object


@pytest.fixture
def org(db) -> Org:  # type: ignore[no-untyped-def]
    manager, owner, member = UserFactory(username="mona"), UserFactory(username="otto"), UserFactory(username="mia")
    unit = BusinessUnitFactory(name="Retail")
    unit.managers.add(manager)
    project = ProjectFactory(name="Shop", business_unit=unit)
    MembershipFactory(project=project, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(project=project, user=member, role=Membership.Role.MEMBER)
    return Org(unit, project, manager, owner, member)


def spend(project: Project, amount: str, *, key: VirtualKey | None = None) -> None:
    request_id = uuid.uuid4().hex
    services.record_usage(
        entries=[
            {
                "request_id": request_id,
                "created_at": datetime.now(UTC),
                "project_id": project.id,
                "business_unit_id": project.business_unit_id,
                "key_id": key.id if key else None,
                "key_prefix": key.prefix if key else "",
                "model": "m",
                "input_tokens": 10,
                "output_tokens": 10,
                "cached_tokens": 0,
                "usage_estimated": False,
                "cost": Decimal(amount),
            }
        ]
    )


@pytest.fixture
def check(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """check_project, with the after-commit delivery run (the test's transaction never commits)."""

    def run(project: Project, **kwargs: object) -> list[AlertEvent]:
        with django_capture_on_commit_callbacks(execute=True):
            return alerts.check_project(project_id=project.id, **kwargs)

    return run


def owner_and_manager(org: Org) -> list[str]:
    return sorted([org.owner.email, org.manager.email])


# --- thresholds, once each ---


def test_each_threshold_is_mailed_once_when_spend_crosses_50_80_and_100_percent(org, inbox, check):
    services.set_budget(target=org.project, monthly_limit="10.00")

    spend(org.project, "4.00")  # 40%
    check(org.project)
    check(org.project)
    assert inbox.mails == []

    spend(org.project, "1.00")  # 50%
    check(org.project)
    check(org.project)
    assert inbox.subjects() == ["[Symbiosis] Project 'Shop' has used 50% of its monthly budget"]

    spend(org.project, "3.50")  # 85%
    check(org.project)
    check(org.project)
    spend(org.project, "0.50")  # 90%: no new threshold
    check(org.project)
    assert inbox.subjects()[1:] == ["[Symbiosis] Project 'Shop' has used 80% of its monthly budget"]

    spend(org.project, "1.00")  # 100%
    for _ in range(3):
        check(org.project)
    spend(org.project, "2.00")  # 120%
    check(org.project)

    assert inbox.subjects()[2:] == ["[Symbiosis] Project 'Shop' has used 100% of its monthly budget"]
    assert [mail.recipients for mail in inbox.mails] == [owner_and_manager(org)] * 3
    assert sorted(AlertEvent.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    assert all(event.emailed_to == owner_and_manager(org) for event in AlertEvent.objects.all())


def test_each_crossed_threshold_is_mailed_when_one_request_crosses_several(org, inbox, check):
    services.set_budget(target=org.project, monthly_limit="10.00")
    spend(org.project, "9.00")

    raised = check(org.project)

    assert sorted(event.threshold for event in raised) == [50, 80]
    assert sorted(inbox.subjects()) == [
        "[Symbiosis] Project 'Shop' has used 50% of its monthly budget",
        "[Symbiosis] Project 'Shop' has used 80% of its monthly budget",
    ]
    assert check(org.project) == []
    assert len(inbox.mails) == 2


def test_owner_and_manager_are_notified_when_a_threshold_is_crossed(org, inbox, check):
    nobody = UserFactory(username="nomail", email="")
    MembershipFactory(project=org.project, user=nobody, role=Membership.Role.OWNER)
    services.set_budget(target=org.project, monthly_limit="10.00")
    spend(org.project, "8.00")

    check(org.project)
    check(org.project)

    notes = Notification.objects.filter(kind="budget_alert")
    assert sorted((n.user.username, n.title) for n in notes) == sorted(
        (user, f"Project 'Shop' has used {threshold}% of its monthly budget")
        for user in ("mona", "otto", "nomail")
        for threshold in (50, 80)
    )
    assert {n.project_id for n in notes} == {org.project.id}
    assert [mail.recipients for mail in inbox.mails] == [owner_and_manager(org)] * 2  # no address, no mail


def test_nothing_is_raised_when_spend_stays_under_the_first_threshold(org, inbox, check):
    services.set_budget(target=org.project, monthly_limit="10.00")
    spend(org.project, "4.99")

    assert check(org.project) == []

    assert inbox.mails == []
    assert not Notification.objects.exists()


def test_a_new_month_raises_its_thresholds_again_when_last_month_raised_them(org, inbox, check):
    with time_machine.travel(datetime(2026, 5, 20, 12, tzinfo=UTC)):
        services.set_budget(target=org.project, monthly_limit="10.00")
        spend(org.project, "6.00")
        check(org.project)
    with time_machine.travel(datetime(2026, 6, 2, 9, tzinfo=UTC)):
        tasks.open_periods.apply()
        check(org.project)  # May's spend does not count in June
        spend(org.project, "5.00")
        check(org.project)
        check(org.project)

    assert inbox.subjects() == ["[Symbiosis] Project 'Shop' has used 50% of its monthly budget"] * 2
    assert "for 2026-05" in inbox.mails[0].body
    assert "for 2026-06" in inbox.mails[1].body
    assert sorted(AlertEvent.objects.values_list("period", "threshold")) == [
        (date(2026, 5, 1), 50),
        (date(2026, 6, 1), 50),
    ]


# --- what the mail says ---


def test_mail_says_requests_are_refused_and_how_to_ask_for_credit_when_a_hard_budget_is_used_up(org, inbox, check):
    services.set_budget(target=org.project, monthly_limit="10.00", hard=True, thresholds=[100])
    spend(org.project, "10.25")

    check(org.project)

    [mail] = inbox.mails
    assert mail.message["From"] == "Symbiosis Gateway <gateway@example.test>"
    assert "Spent in " in mail.body and "10.25 EUR" in mail.body
    assert "Available this month (allowance and credits): 10.00 EUR" in mail.body
    assert "requests from project 'Shop' are now refused" in mail.body
    assert "open a credit request for project 'Shop' in the portal" in mail.body
    assert "ask a manager of business unit 'Retail'" in mail.body


def test_mail_says_requests_are_still_served_when_a_soft_budget_is_used_up(org, inbox, check):
    services.set_budget(target=org.project, monthly_limit="10.00", hard=False, thresholds=[100])
    spend(org.project, "10.00")

    check(org.project)

    [mail] = inbox.mails
    assert "soft budget: requests are still served" in mail.body
    assert "refused" not in mail.body


def test_task_raises_the_alerts_when_given_the_project_ids(org, inbox, django_capture_on_commit_callbacks):
    services.set_budget(target=org.project, monthly_limit="10.00")
    spend(org.project, "5.00")

    with django_capture_on_commit_callbacks(execute=True):
        tasks.check_budget_alerts.apply(args=[[org.project.id]])
        tasks.check_budget_alerts.apply(args=[[org.project.id]], kwargs={"key_ids": None})

    assert inbox.subjects() == ["[Symbiosis] Project 'Shop' has used 50% of its monthly budget"]


# --- the webhook ---


def test_webhook_receives_each_alert_once_when_the_budget_has_one(org, inbox, check, webhook):
    url = f"http://127.0.0.1:{webhook.server_port}/services/T000/B000/hook-secret"
    services.set_budget(target=org.project, monthly_limit="10.00", webhook_url=url)
    spend(org.project, "5.00")

    check(org.project)
    check(org.project)

    [(path, content_type, payload)] = webhook.posts
    assert path == "/services/T000/B000/hook-secret"
    assert content_type == "application/json"
    assert set(payload) == {"text"}
    assert payload["text"].startswith("Project 'Shop' has used 50% of its monthly budget: 5.00 EUR of 10.00 EUR")
    assert AlertEvent.objects.get().webhook_status == "ok: HTTP 200 (127.0.0.1)"
    assert "hook-secret" not in inbox.mails[0].body


def test_unreachable_webhook_is_recorded_and_the_mail_still_goes_out(org, inbox, check, caplog):
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/hook-secret"
    services.set_budget(target=org.project, monthly_limit="10.00", webhook_url=url)
    spend(org.project, "5.00")

    check(org.project)

    event = AlertEvent.objects.get()
    assert event.webhook_status == "failed: ConnectError (127.0.0.1)"
    assert event.emailed_to == owner_and_manager(org)
    assert len(inbox.mails) == 1
    assert "the webhook to 127.0.0.1 failed" in caplog.text
    assert "hook-secret" not in caplog.text


def test_failed_mail_is_logged_and_the_notifications_and_webhook_still_happen(org, inbox, check, webhook, settings):
    settings.EMAIL_PORT = free_port()  # nothing listens
    services.set_budget(
        target=org.project, monthly_limit="10.00", webhook_url=f"http://127.0.0.1:{webhook.server_port}/hook"
    )
    spend(org.project, "5.00")

    check(org.project)

    event = AlertEvent.objects.get()
    assert event.emailed_to == []
    assert event.webhook_status.startswith("ok")
    assert len(webhook.posts) == 1
    assert Notification.objects.filter(kind="budget_alert").count() == 2


# --- business unit and key caps ---


def test_business_unit_cap_alerts_its_managers_when_its_projects_together_cross_a_threshold(org, inbox, check):
    other = ProjectFactory(name="Warehouse", business_unit=org.unit)
    services.set_budget(target=org.unit, monthly_limit="10.00")
    spend(org.project, "3.00")
    spend(other, "3.00")

    check(org.project)
    check(other)

    [mail] = inbox.mails
    assert mail.subject == "[Symbiosis] Business unit 'Retail' has used 50% of its monthly budget"
    assert mail.recipients == [org.manager.email]
    assert "Monthly limit: 10.00 EUR" in mail.body
    [note] = Notification.objects.all()
    assert (note.user, note.project_id) == (org.manager, None)


def test_key_cap_alerts_the_keys_creator_too_when_the_key_crosses_a_threshold(org, inbox, check):
    creator = UserFactory(username="kai")
    MembershipFactory(project=org.project, user=creator)
    issued = gateway_services.create_virtual_key(project=org.project, name="ci", created_by=creator)
    services.set_budget(target=issued.key, monthly_limit="10.00")
    spend(org.project, "4.00")  # without the key: not the key's spend
    spend(org.project, "8.00", key=issued.key)

    raised = check(org.project, key_ids=[issued.key.id])
    check(org.project)  # all the project's keys

    assert [event.threshold for event in raised] == [50, 80]
    assert sorted(inbox.subjects()) == [
        f"[Symbiosis] Key 'ci' ({issued.key.prefix}...) of project 'Shop' has used {t}% of its monthly budget"
        for t in (50, 80)
    ]
    assert {tuple(mail.recipients) for mail in inbox.mails} == {
        tuple(sorted([org.owner.email, org.manager.email, creator.email]))
    }
    assert all(issued.secret not in mail.body for mail in inbox.mails)


# --- races and a real worker ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_each_threshold_is_mailed_once_when_two_workers_check_at_the_same_time(org, inbox):
    services.set_budget(target=org.project, monthly_limit="10.00")
    spend(org.project, "10.00")
    start, raised = threading.Barrier(4), []

    def worker() -> None:
        try:
            start.wait()
            raised.extend(alerts.check_project(project_id=org.project.id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(event.threshold for event in raised) == [50, 80, 100]
    assert sorted(inbox.subjects()) == [
        f"[Symbiosis] Project 'Shop' has used {t}% of its monthly budget" for t in (100, 50, 80)
    ]
    assert Notification.objects.count() == 6


def _keep_django_logging(**kwargs: object) -> None:
    """A `setup_logging` receiver: Celery then leaves the logging configuration as Django set it."""


@pytest.fixture
def celery_worker_queue() -> Iterator[str]:
    """A real Celery worker (a thread of this process, so it uses the test database) reading a
    queue of its own on the Redis broker."""
    from celery.contrib.testing.worker import start_worker

    queue = f"symbiosis-test-{uuid.uuid4().hex[:12]}"
    signals.setup_logging.connect(_keep_django_logging)  # the worker leaves the root logger to later tests
    try:
        with start_worker(celery_app, perform_ping_check=False, queues=[queue]):
            yield queue
    finally:
        signals.setup_logging.disconnect(_keep_django_logging)
    if hasattr(connection, "close_pool"):
        connection.close_pool()  # the worker thread's pooled connection, so the test database can be dropped


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_worker_mails_each_threshold_once_when_the_task_goes_through_redis(org, inbox, celery_worker_queue):
    services.set_budget(target=org.project, monthly_limit="10.00")
    spend(org.project, "8.00")

    first = tasks.check_budget_alerts.apply_async(
        args=[[org.project.id]], queue=celery_worker_queue, ignore_result=False
    )
    again = tasks.check_budget_alerts.apply_async(
        args=[[org.project.id]], queue=celery_worker_queue, ignore_result=False
    )
    first.get(timeout=60)
    again.get(timeout=60)

    assert sorted(inbox.subjects()) == [
        f"[Symbiosis] Project 'Shop' has used {t}% of its monthly budget" for t in (50, 80)
    ]
    assert all(event.emailed_to == owner_and_manager(org) for event in AlertEvent.objects.all())
