"""Celery tasks of the gateway core. They call one service and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from gateway import services


@shared_task(
    name="gateway.purge_request_logs",
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def purge_request_logs() -> int:
    """Delete request logs past their project's retention, in batches (beat, daily at 03:15 UTC).
    A retry after a failure resumes where it stopped: what was deleted stays deleted."""
    return services.purge_request_logs()
