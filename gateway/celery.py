"""The Celery app. Redis broker in production; tasks run eagerly in the embedded default."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _start_telemetry(**kwargs: object) -> None:
    """Each worker process exports its own metrics (budget utilisation) when OTEL_* says so."""
    from gateway import telemetry

    telemetry.configure_from_settings()


@app.task(name="gateway.ping", ignore_result=False)
def ping() -> str:
    """A no-op task to check that a worker answers (used by tests and operators)."""
    return "pong"
