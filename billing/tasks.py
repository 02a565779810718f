"""Celery tasks of billing. They take ids, call a service and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from billing import alerts, services

_RETRY_ON_DATABASE_ERRORS = {
    "acks_late": True,
    "autoretry_for": (DatabaseError,),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="billing.check_budget_alerts", **_RETRY_ON_DATABASE_ERRORS)
def check_budget_alerts(project_ids: list[int], key_ids: list[int] | None = None) -> None:
    """Raise the budget alerts the projects' (and keys') latest spend crossed. An alert already
    raised this month is not raised again, so a retry or a repeated call mails nobody twice."""
    for project_id in project_ids:
        alerts.check_project(project_id=project_id, key_ids=key_ids)


@shared_task(name="billing.open_periods", **_RETRY_ON_DATABASE_ERRORS)
def open_periods() -> int:
    """Open the new month for every project with a budget (beat, on the first of the month)."""
    return services.open_all_periods()
