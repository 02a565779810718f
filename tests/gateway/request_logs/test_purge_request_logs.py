"""services.purge_request_logs and its daily beat task: rows past their project's retention go,
in batches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.schedules import crontab
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway import services, tasks
from gateway.models import RequestLog
from tests.factories import ProjectFactory
from tests.gateway.request_logs.conftest import insert_rows, log_row

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _left() -> set[str]:
    return set(RequestLog.objects.values_list("request_id", flat=True))


def test_rows_older_than_the_default_30_days_are_deleted(settings):
    settings.LOG_RETENTION_DAYS = 30
    project = ProjectFactory()
    insert_rows(
        log_row(request_id="31 days", project=project, created_at=NOW - timedelta(days=31)),
        log_row(request_id="29 days", project=project, created_at=NOW - timedelta(days=29)),
        log_row(request_id="no project, 31 days", created_at=NOW - timedelta(days=31)),
        log_row(request_id="deleted project, 31 days", project_id=999_999, created_at=NOW - timedelta(days=31)),
    )

    deleted = services.purge_request_logs(now=NOW)

    assert deleted == 3 and _left() == {"29 days"}


def test_a_project_with_7_days_loses_more_than_its_neighbours(settings):
    settings.LOG_RETENTION_DAYS = 30
    short, default = ProjectFactory(log_retention_days=7), ProjectFactory()
    long = ProjectFactory(log_retention_days=90)
    insert_rows(
        log_row(request_id="short, 8 days", project=short, created_at=NOW - timedelta(days=8)),
        log_row(request_id="short, 6 days", project=short, created_at=NOW - timedelta(days=6)),
        log_row(request_id="default, 8 days", project=default, created_at=NOW - timedelta(days=8)),
        log_row(request_id="long, 60 days", project=long, created_at=NOW - timedelta(days=60)),
        log_row(request_id="long, 91 days", project=long, created_at=NOW - timedelta(days=91)),
    )

    deleted = services.purge_request_logs(now=NOW)

    assert deleted == 2 and _left() == {"short, 6 days", "default, 8 days", "long, 60 days"}


def test_rows_are_deleted_in_batches_of_the_given_size():
    insert_rows(*(log_row(created_at=NOW - timedelta(days=40, minutes=n)) for n in range(5)))
    insert_rows(log_row(request_id="recent", created_at=NOW))

    with CaptureQueriesContext(connection) as queries:
        deleted = services.purge_request_logs(batch_size=2, now=NOW)

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].upper().startswith("DELETE")]
    assert deleted == 5 and len(deletes) == 3  # 2 + 2 + 1
    assert _left() == {"recent"}


def test_purging_again_deletes_nothing_more():
    insert_rows(log_row(created_at=NOW - timedelta(days=40)), log_row(request_id="recent", created_at=NOW))

    assert services.purge_request_logs(now=NOW) == 1
    assert services.purge_request_logs(now=NOW) == 0
    assert _left() == {"recent"}


def test_the_task_purges_with_the_current_time(settings):
    settings.LOG_RETENTION_DAYS = 30
    insert_rows(
        log_row(request_id="old", created_at=timezone.now() - timedelta(days=31)),
        log_row(request_id="recent", created_at=timezone.now() - timedelta(days=1)),
    )

    assert tasks.purge_request_logs.apply().get() == 1
    assert _left() == {"recent"}


def test_beat_runs_the_purge_daily_at_03_15_utc():
    [entry] = [e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "gateway.purge_request_logs"]

    assert entry["schedule"] == crontab(minute=15, hour=3)
    assert tasks.purge_request_logs.name == "gateway.purge_request_logs" and tasks.purge_request_logs.acks_late
