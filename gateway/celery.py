"""The Celery app. Redis broker in production; tasks run eagerly in the embedded default."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="gateway.ping", ignore_result=False)
def ping() -> str:
    """A no-op task to check that a worker answers (used by tests and operators)."""
    return "pong"
