"""The request-log admin: read-only, bodies shown on a row's page and never loaded for the list."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.gateway.request_logs.conftest import insert_rows, log_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, admin_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(admin_user)
    return client


def test_row_page_shows_the_bodies_read_only(admin_client):
    [row] = insert_rows(
        log_row(bodies="redacted", request_body='{"content":"mail <EMAIL_1> about zebras"}', response_body="echo")
    )

    page = admin_client.get(reverse("admin:gateway_requestlog_change", args=[row.pk])).content.decode()

    assert "mail &lt;EMAIL_1&gt; about zebras" in page  # shown, escaped
    assert 'name="request_body"' not in page  # and not editable


def test_list_page_does_not_read_the_bodies(admin_client):
    insert_rows(*(log_row(bodies="full", request_body="x" * 1000) for _ in range(3)))

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:gateway_requestlog_changelist"))

    assert response.status_code == 200
    rows = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "gateway_requestlog"."id"')]
    [listing] = rows
    assert "request_body" not in listing and "response_body" not in listing
