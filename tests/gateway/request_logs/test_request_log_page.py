"""selectors.request_log_page: the log browser's filters and keyset pages over many rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gateway import selectors
from gateway.errors import ValidationFailed
from tests.conftest import POSTGRES
from tests.factories import ProjectFactory
from tests.gateway.request_logs.conftest import at, insert_rows, log_row

pytestmark = pytest.mark.django_db

T0 = at("2026-11-01T12:00:00+00:00")


def _all_pages(**filters) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = selectors.request_log_page(cursor=cursor, **filters)
        pages.append([row.request_id for row in page.rows])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_pages_cover_every_row_once_newest_first_when_many_share_a_timestamp():
    project = ProjectFactory()
    # 120 rows, in threes with the same created_at: the id must break the ties
    rows = insert_rows(*(log_row(project=project, created_at=T0 + timedelta(seconds=n // 3)) for n in range(120)))
    newest_first = [r.request_id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]

    pages = _all_pages(project_id=project.id, limit=50)

    assert [len(page) for page in pages] == [50, 50, 20]
    assert [request_id for page in pages for request_id in page] == newest_first


def test_last_page_has_no_cursor_when_rows_fill_it_exactly():
    insert_rows(*(log_row(created_at=T0 + timedelta(seconds=n)) for n in range(10)))

    first = selectors.request_log_page(limit=5)
    last = selectors.request_log_page(limit=5, cursor=first.next_cursor)

    assert first.next_cursor is not None
    assert len(last.rows) == 5 and last.next_cursor is None


def test_rows_written_after_the_first_page_do_not_shift_the_next():
    insert_rows(*(log_row(created_at=T0 + timedelta(seconds=n)) for n in range(6)))
    first = selectors.request_log_page(limit=3)

    insert_rows(log_row(created_at=T0 + timedelta(hours=1)))  # newer than everything
    second = selectors.request_log_page(limit=3, cursor=first.next_cursor)

    seen = [r.created_at for r in first.rows + second.rows]
    assert seen == [T0 + timedelta(seconds=n) for n in (5, 4, 3, 2, 1, 0)]


def test_filters_by_project_key_model_status_and_time_range():
    shop, other = ProjectFactory(), ProjectFactory()
    insert_rows(
        log_row(request_id="match", project=shop, key_id=7, model="gpt-a", status_code=429, created_at=T0),
        log_row(project=other, key_id=7, model="gpt-a", status_code=429, created_at=T0),
        log_row(project=shop, key_id=8, model="gpt-a", status_code=429, created_at=T0),
        log_row(project=shop, key_id=7, model="gpt-b", status_code=429, created_at=T0),
        log_row(project=shop, key_id=7, model="gpt-a", status_code=200, created_at=T0),
        log_row(project=shop, key_id=7, model="gpt-a", status_code=429, created_at=T0 - timedelta(days=2)),
        log_row(project=shop, key_id=7, model="gpt-a", status_code=429, created_at=T0 + timedelta(days=2)),
    )

    page = selectors.request_log_page(
        project_id=shop.id,
        key_id=7,
        model="gpt-a",
        status=429,
        start=T0 - timedelta(days=1),
        end=T0 + timedelta(days=1),
    )

    assert [row.request_id for row in page.rows] == ["match"]


@pytest.mark.parametrize(("status", "expected"), [("ok", ["200", "302"]), ("error", ["400", "502"]), ("502", ["502"])])
def test_status_classes_split_at_400(status, expected):
    insert_rows(*(log_row(request_id=str(code), status_code=code) for code in (200, 302, 400, 502)))

    page = selectors.request_log_page(status=status)

    assert sorted(row.request_id for row in page.rows) == expected


def test_time_range_includes_start_and_excludes_end():
    insert_rows(*(log_row(request_id=f"h{n}", created_at=T0 + timedelta(hours=n)) for n in range(4)))

    page = selectors.request_log_page(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=3))

    assert [row.request_id for row in page.rows] == ["h2", "h1"]


def test_text_search_finds_a_word_in_either_body():
    insert_rows(
        log_row(request_id="asked", bodies="full", request_body='{"content":"tell me about zebras"}'),
        log_row(request_id="answered", bodies="full", response_body='{"content":"Zebras are striped"}'),
        log_row(request_id="other", bodies="full", request_body='{"content":"tell me about lions"}'),
    )

    page = selectors.request_log_page(text="zebras")

    assert sorted(row.request_id for row in page.rows) == ["answered", "asked"]


def test_text_search_pages_cover_every_match_once_newest_first():
    rows = insert_rows(
        *(
            log_row(created_at=T0 + timedelta(seconds=n // 2), request_body="zebra" if n % 2 else "lion")
            for n in range(24)
        )
    )
    zebras = [
        r.request_id
        for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
        if r.request_body == "zebra"
    ]

    pages = _all_pages(text="zebra", limit=5)

    assert [len(page) for page in pages] == [5, 5, 2]
    assert [request_id for page in pages for request_id in page] == zebras


def test_list_rows_leave_the_bodies_in_the_database():
    insert_rows(log_row(bodies="full", request_body="x" * 10_000))

    [row] = selectors.request_log_page().rows

    assert {"request_body", "response_body"} <= row.get_deferred_fields()


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "MjAyNi0xMS0wMXxhYmM"}, "cursor"),  # "2026-11-01|abc"
        ({"status": "teapot"}, "status"),
        ({"status": 42}, "status"),
        ({"start": T0, "end": T0}, "end"),
    ],
)
def test_bad_input_is_refused_naming_the_field(filters, field):
    with pytest.raises(ValidationFailed) as refused:
        selectors.request_log_page(**filters)

    assert refused.value.field == field


def test_a_page_is_one_query_without_offset():
    insert_rows(*(log_row(created_at=T0 + timedelta(seconds=n)) for n in range(30)))
    first = selectors.request_log_page(limit=10)

    with CaptureQueriesContext(connection) as queries:
        selectors.request_log_page(limit=10, cursor=first.next_cursor, project_id=1, status="error", text="x")

    [query] = queries.captured_queries
    assert "OFFSET" not in query["sql"].upper()
    assert "LIMIT 11" in query["sql"].upper()


# --- on PostgreSQL, the plans use the indexes ---


def _plan(**filters) -> str:
    with CaptureQueriesContext(connection) as queries:
        selectors.request_log_page(**filters)
    [query] = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + query["sql"])
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.fixture
def many_rows():
    """20,000 rows over 10 projects, 4 models and a few statuses, with the statistics analysed."""
    projects = [ProjectFactory() for _ in range(10)]
    insert_rows(
        *(
            log_row(
                project=projects[n % 10],
                key_id=n % 50,
                model=f"model-{n % 4}",
                status_code=(200, 200, 200, 429, 502)[n % 5],
                created_at=T0 + timedelta(seconds=n),
                bodies="full",
                request_body=f'{{"content":"question {n} about item{n % 1000}"}}',
            )
            for n in range(20_000)
        )
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE gateway_requestlog")
    return projects


@pytest.mark.postgres
@pytest.mark.parametrize(
    "filters",
    [{}, {"project": True}, {"key_id": 3}, {"project": True, "model": "model-1"}, {"project": True, "status": 502}],
)
def test_pages_are_read_in_order_from_an_index_never_by_sorting_the_table(many_rows, filters):
    if filters.pop("project", False):
        filters["project_id"] = many_rows[3].id
    cursor = selectors.request_log_page(limit=50, **filters).next_cursor

    for plan in (_plan(limit=50, **filters), _plan(limit=50, cursor=cursor, **filters)):
        # The planner picks among requestlog_* and created_at's own index (then an incremental sort of ties).
        assert re.search(r"Index Scan (Backward )?using (requestlog_|gateway_requestlog_created_at)", plan), plan
        assert "Seq Scan" not in plan and not re.search(r"(?<!Incremental )Sort  \(", plan), plan


@pytest.mark.postgres
def test_text_search_starts_from_the_full_text_index_even_for_a_rare_word(many_rows):
    cursor = selectors.request_log_page(text="item7 question", limit=5).next_cursor

    for plan in (_plan(text="item7"), _plan(text="item7 question", limit=5, cursor=cursor)):
        # Not a walk down created_at computing each row's tsvector until a page is full
        assert "Bitmap Index Scan on requestlog_body_search" in plan, plan
        assert "Seq Scan" not in plan and "Index Scan Backward" not in plan, plan


@pytest.mark.skipif(POSTGRES, reason="the substring search of SQLite")
def test_text_search_on_sqlite_matches_substrings_ignoring_case():
    insert_rows(log_row(request_id="hit", bodies="full", request_body="Invoice INV-2026-0042"))

    assert [r.request_id for r in selectors.request_log_page(text="inv-2026").rows] == ["hit"]
