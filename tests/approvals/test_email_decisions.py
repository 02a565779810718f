"""Deciding from the mail, end to end: a real Celery worker (a `celery -A gateway worker`
subprocess on a queue of its own, on Redis and the test database) sends the mails to a real SMTP
server (aiosmtpd); the test reads the link from the plain-text part like a person would."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from approvals import selectors, services, tasks
from approvals.models import CreditRequest, RequestEvent, SentMail, State, Via
from billing import selectors as billing_selectors
from gateway.celery import app as celery_app
from tests.factories import UserFactory
from tests.gateway_processes import gateway_environment
from tests.mock_upstream import free_port
from tests.portal.conftest import build_world

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]


class Inbox:
    """aiosmtpd handler: keeps every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        raw = envelope.original_content or envelope.content
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def wait_for(self, to: str, subject_part: str, timeout: float = 60) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if to in str(message["To"]) and subject_part in str(message["Subject"]):
                    return message
            time.sleep(0.1)
        raise AssertionError(
            f"no mail to {to} about {subject_part!r}; got {[str(m['Subject']) for m in self.messages]}"
        )


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def worker(smtp, settings, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A worker subprocess reading a queue of its own; this process sends the approvals tasks there."""
    _, port = smtp
    queue = f"symbiosis-approvals-{uuid.uuid4().hex[:12]}"
    env = gateway_environment(
        CELERY_QUEUE=queue,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port),
        EMAIL_USE_TLS="0",
        PUBLIC_URL=settings.PUBLIC_URL,
        DEFAULT_FROM_EMAIL="Symbiosis Gateway <gateway@example.test>",
    )
    command = [sys.executable, "-m", "celery", "-A", "gateway", "worker", "--pool", "solo", "--queues", queue]
    command += ["--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    log = tmp_path / "worker.log"
    celery_app.conf.task_always_eager = False  # the conf itself: Celery reads a False Django setting as unset
    celery_app.conf.task_routes = {"approvals.*": {"queue": queue}}
    celery_app.amqp.flush_routes()
    celery_app.amqp.router = celery_app.amqp.Router()
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield queue
    finally:
        celery_app.conf.changes.pop("task_always_eager", None)
        celery_app.conf.task_routes = None
        celery_app.amqp.flush_routes()
        celery_app.amqp.router = celery_app.amqp.Router()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.returncode not in (0, -15):
            print(log.read_text())
        if hasattr(connection, "close_pool"):
            connection.close_pool()


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def decision_link(message: EmailMessage) -> str:
    """The line of the plain-text part that starts with PUBLIC_URL and holds the decision link."""
    [line] = [
        line
        for line in plain_text(message).splitlines()
        if line.startswith(settings.PUBLIC_URL) and "/approvals/t/" in line
    ]
    assert line == line.strip()
    return line.removeprefix(settings.PUBLIC_URL)


def balance(project) -> Decimal:  # type: ignore[no-untyped-def]
    return billing_selectors.project_money(project_ids=[project.id])[project.id].balance


def test_manager_approves_from_the_mail_and_the_project_can_spend_it_at_once(smtp, worker):
    inbox, _ = smtp
    world = build_world()
    before = balance(world.project_a)
    developer = Client()
    developer.force_login(world.dev_a)

    filed = developer.post(
        reverse("portal:request-credit"),
        {"project": world.project_a.pk, "amount": "75.00", "reason": "Black Friday load test"},
    )

    assert filed.status_code == 302
    request = CreditRequest.objects.get(requester=world.dev_a)
    mail = inbox.wait_for("maria@example.test", "asks for 75.00 EUR of credit for Checkout")
    assert mail.get_body(preferencelist=("html",)) is not None
    link = decision_link(mail)

    # a mail scanner (or anyone) opening the link without a session changes nothing
    scanner = Client()
    assert scanner.get(link).status_code == 302
    assert (
        scanner.get(reverse("approvals:decide", kwargs={"kind": "credit", "request_id": request.pk})).status_code == 302
    )
    request.refresh_from_db()
    assert request.state == State.PENDING and balance(world.project_a) == before

    manager = Client()
    manager.force_login(world.manager)
    opened = manager.get(link)
    assert opened.status_code == 302 and opened["Location"] == f"/approvals/decide/credit/{request.pk}/"
    assert "Black Friday load test" in manager.get(opened["Location"]).content.decode()
    decided = manager.post(opened["Location"], {"decision": "approve", "comment": "Good luck"})

    assert decided.status_code == 302
    request.refresh_from_db()
    assert (request.state, request.decided_by, request.decided_via) == (State.APPROVED, world.manager, Via.EMAIL)
    ledger = billing_selectors.ledger(project_id=world.project_a.pk)
    grants = [e for e in ledger if "credit-request" in (e.idempotency_key or "")]
    assert [(e.amount, e.idempotency_key) for e in grants] == [(Decimal("75.00"), f"grant:credit-request:{request.pk}")]
    assert balance(world.project_a) == before + Decimal("75.00")
    money = billing_selectors.project_money(project_ids=[world.project_a.pk])[world.project_a.pk]
    assert money.available >= Decimal("175.00")  # the month's allowance and the credit, spendable now
    told = inbox.wait_for("alice@example.test", "was approved")
    assert "Good luck" in plain_text(told) and "can be spent at once" in plain_text(told)
    assert manager.get(link).status_code == 409  # the link worked once


def test_two_approvers_deciding_from_their_mails_at_the_same_moment_make_one_decision(smtp, worker):
    inbox, _ = smtp
    world = build_world()
    second = UserFactory(username="mo", first_name="Mo", last_name="Second")
    world.unit.managers.add(second)
    before = balance(world.project_a)
    request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="40", reason="Tests")
    clients = []
    for person, address in ((world.manager, "maria@example.test"), (second, "mo@example.test")):
        link = decision_link(inbox.wait_for(address, "asks for 40.00 EUR"))
        client = Client()
        client.force_login(person)
        assert client.get(link).status_code == 302
        clients.append(client)
    page = reverse("approvals:decide", kwargs={"kind": "credit", "request_id": request.pk})
    barrier, answers = threading.Barrier(2), [0, 0]

    def click(index: int) -> None:
        try:
            barrier.wait()
            answers[index] = clients[index].post(page, {"decision": "approve"}).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(answers) == [302, 409]
    request.refresh_from_db()
    assert request.state == State.APPROVED and request.decided_via == Via.EMAIL
    assert RequestEvent.objects.filter(credit_request=request, to_state=State.APPROVED).count() == 1
    assert balance(world.project_a) == before + Decimal("40.00")
    inbox.wait_for("alice@example.test", "was approved")
    time.sleep(1)
    assert sum("alice@" in str(m["To"]) for m in inbox.messages) == 1


def test_a_real_worker_reminds_the_approvers_once_when_beat_runs_twice(smtp, worker, settings):
    inbox, _ = smtp
    world = build_world()
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(hours=30), tick=False):
        request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="9", reason="CI")
    inbox.wait_for("maria@example.test", "asks for 9.00 EUR")

    first = tasks.remind_due_requests.apply_async(queue=worker, ignore_result=False)
    again = tasks.remind_due_requests.apply_async(queue=worker, ignore_result=False)

    assert sorted([first.get(timeout=60), again.get(timeout=60)]) == [0, 1]
    inbox.wait_for("maria@example.test", "Reminder: Alice Archer asks for 9.00 EUR")
    inbox.wait_for("alice@example.test", "is still waiting")
    request.refresh_from_db()
    assert request.reminded_at is not None
    assert SentMail.objects.filter(key__contains=":reminder:").count() == 1
    assert [str(m["Subject"]) for m in inbox.messages].count(
        "[Symbiosis] Reminder: Alice Archer asks for 9.00 EUR of credit for Checkout"
    ) == 1
    assert selectors.approvers_of(request) == [world.manager]
