"""Request-log rows made to measure, and the management API client."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone

from gateway import services
from gateway.models import RequestLog
from tests.gateway.admin_api.conftest import Api

_numbers = itertools.count(1)


def log_row(**fields: Any) -> RequestLog:
    """An unsaved request-log row of a successful call; pass only what the test is about."""
    number = next(_numbers)
    return RequestLog(
        **{
            "request_id": f"req-test-{number:06d}",
            "created_at": timezone.now(),
            "endpoint": "chat/completions",
            "model": "gpt-test",
            "status_code": 200,
            **fields,
        }
    )


def insert_rows(*rows: RequestLog) -> list[RequestLog]:
    return RequestLog.objects.bulk_create(rows)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def api(admin_user) -> Api:  # type: ignore[no-untyped-def]
    return Api(services.issue_admin_token(username=admin_user.username).secret)


@pytest.fixture
def anonymous_api(db) -> Api:  # type: ignore[no-untyped-def]
    return Api(None)
