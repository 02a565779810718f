"""The approvals.apply_rules task in a real Celery worker (Redis broker, the test's PostgreSQL
database): a credit request filed in this process is decided by a rule in the worker; and a worker
process killed (SIGKILL) in the middle of applying the decision leaves the message to its
replacement, which applies the effect exactly once.

To kill it at a known point without a test hook in the code, the test holds the ledger table in
SHARE mode (reads go on, inserts wait): the task has then moved the request to auto_approved and
recorded the event, and waits to insert the credit grant. It dies there; the database rolls its
transaction back; `acks_late` + `reject_on_worker_lost` put the message back, and the pool's new
process runs it again once the test lets go of the ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from approvals import selectors, services
from approvals.models import CreditRequest, State
from billing import selectors as billing_selectors
from gateway.celery import app, ping
from tests.gateway_processes import database_url, gateway_environment

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def _eager_celery() -> None:
    """Not eager here: a real worker runs the tasks (overrides tests/approvals/conftest.py)."""


@pytest.fixture
def _eager_tasks() -> None:
    """Not eager here (overrides tests/approvals/conftest.py)."""


class Worker:
    def __init__(self, process: subprocess.Popen, queue: str, log: Path) -> None:
        self.process, self.queue, self.log = process, queue, log

    def children(self) -> list[int]:
        """The pool's processes (prefork, concurrency 1: one)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    """`celery -A gateway worker` (prefork, one process) on a queue of its own, serving this test's
    database; tasks queued by this process go to that queue for the test's duration."""
    queue = f"symbiosis-test-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "gateway", "worker", "--pool", "prefork", "--concurrency", "1"]
    command += ["--queues", queue, "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"]
    command += ["--without-heartbeat", "--loglevel", "INFO"]
    environment = gateway_environment(EMAIL_HOST="")
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT)
    saved_queue, saved_eager = app.conf.task_default_queue, app.conf.task_always_eager
    app.conf.task_default_queue, app.conf.task_always_eager = queue, False
    try:
        # disable_sync_subtasks: eager tasks of earlier tests (in threads) may leave Celery believing
        # this process is inside a task; it is not.
        assert ping.apply_async(queue=queue).get(timeout=60, disable_sync_subtasks=False) == "pong"
        yield Worker(process, queue, log)
    finally:
        app.conf.task_default_queue, app.conf.task_always_eager = saved_queue, saved_eager
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        connection.close()


def wait_until(condition: Callable[[], object], *, timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def state_of(request_id: int) -> str:
    return CreditRequest.objects.values_list("state", flat=True).get(pk=request_id)


def grants_of(request_id: int) -> int:
    ledger = billing_selectors.ledger(project_id=CreditRequest.objects.get(pk=request_id).project_id, limit=1000)
    return sum(entry.idempotency_key == f"grant:credit-request:{request_id}" for entry in ledger)


def balance(project) -> Decimal:  # type: ignore[no-untyped-def]
    return billing_selectors.project_money(project_ids=[project.id])[project.id].balance


def test_a_rule_decides_a_filed_request_in_the_worker(world, worker):
    services.create_rule(name="Small", action="approve", applies_to="credit", max_amount="100.00")
    before = balance(world.project_a)

    request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="50", reason="x")

    wait_until(lambda: state_of(request.id) == State.AUTO_APPROVED, what="the worker's decision")
    assert balance(world.project_a) == before + Decimal("50")
    assert grants_of(request.id) == 1


def test_the_effect_is_applied_once_when_the_worker_is_killed_during_the_apply_task(world, worker):
    services.create_rule(name="Small", action="approve", applies_to="credit", max_amount="100.00")
    before = balance(world.project_a)
    [first_process] = wait_until(worker.children, what="the pool's process")

    with psycopg.connect(database_url(), autocommit=False) as holder:
        holder.execute("LOCK TABLE billing_ledgerentry IN SHARE MODE")
        request = services.file_credit_request(user=world.dev_a, project=world.project_a, amount="50", reason="x")
        wait_until(blocked_on_the_ledger, what="the task to wait for the ledger")
        os.kill(first_process, signal.SIGKILL)
        wait_until(lambda: worker.children() and worker.children() != [first_process], what="a new pool process")
        assert state_of(request.id) == State.PENDING  # the killed transaction never committed
        holder.rollback()

    wait_until(lambda: state_of(request.id) == State.AUTO_APPROVED, what="the decision after the restart")
    time.sleep(1)  # a second, wrong application would land now
    assert grants_of(request.id) == 1
    assert balance(world.project_a) == before + Decimal("50")
    assert [e.to_state for e in selectors.request_events(request=request)] == ["pending", "auto_approved"]
    assert "WorkerLostError" in worker.log.read_text()


def blocked_on_the_ledger() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query ILIKE 'INSERT INTO \"billing_ledgerentry\"%%'"
        )
        return cursor.fetchone()[0] == 1
