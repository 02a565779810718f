"""Celery tasks of the approvals workflow. They take ids, call one function and are safe to run
twice: a mail already sent is recorded (approvals.SentMail) and not sent again; a clock step is
taken once (reminded_at, escalated_at, the state). Queued after commit by approvals/services.py;
the periodic ones run from beat (CELERY_BEAT_SCHEDULE). The embedded profile runs them eagerly."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task
from django.db import DatabaseError

from approvals import mail, services

# acks_late + reject_on_worker_lost: a worker that dies mid-task leaves the message to another.
# SMTP and network errors (a refused connection is an OSError) retry with backoff.
_MAIL = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (SMTPException, OSError, DatabaseError),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}
_CLOCK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DatabaseError,),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="approvals.send_approver_mails", **_MAIL)
def send_approver_mails(kind: str, request_id: int, step: str) -> int:
    """Mail each approver of a pending request (or, escalated, each administrator) its decision link."""
    return mail.send_approver_mails(kind=kind, request_id=request_id, step=step)


@shared_task(name="approvals.send_requester_mail", **_MAIL)
def send_requester_mail(kind: str, request_id: int, step: str) -> int:
    """Tell the requester where their request stands (reminded, escalated, decided, expired)."""
    return mail.send_requester_mail(kind=kind, request_id=request_id, step=step)


@shared_task(name="approvals.remind_due_requests", **_CLOCK)
def remind_due_requests() -> int:
    return services.remind_due_requests()


@shared_task(name="approvals.escalate_due_requests", **_CLOCK)
def escalate_due_requests() -> int:
    return services.escalate_due_requests()


@shared_task(name="approvals.expire_due_requests", **_CLOCK)
def expire_due_requests() -> int:
    return services.expire_due_requests()


# Rules decide a request just filed. acks_late + reject_on_worker_lost: a worker killed mid-task
# leaves the message to be delivered again; the decision and its effect commit together (or not
# at all), and a request no longer pending is left alone, so the effect happens once.
@shared_task(name="approvals.apply_rules", **_CLOCK)
def apply_rules(kind: str, request_id: int) -> str | None:
    """Let the approval rules decide a pending request; returns its state afterwards (None: gone)."""
    request = services.apply_rules(kind=kind, request_id=request_id)
    return None if request is None else request.state
