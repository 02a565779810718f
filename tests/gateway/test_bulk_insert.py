"""The log writer's lean insert (gateway/bulk_insert.py) stores what bulk_create(ignore_conflicts=True)
stores, skips what is already there and refuses what the database or a field refuses, whether a
batch is small (executemany) or large (COPY through a staging table on PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import DataError, connection, transaction

from billing.models import LedgerEntry
from gateway import bulk_insert
from gateway.models import RequestLog
from gateway.proxy import logbuffer
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

FEW, MANY = 3, bulk_insert.COPY_FROM + 5


def _log(**fields) -> dict:
    row = {
        "request_id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC),
        "endpoint": "chat/completions",
        "project_id": 7,
        "status_code": 200,
        "stream": False,
        "usage_estimated": False,
    }
    return row | fields


def _odd_logs(count: int) -> list[dict]:
    """Rows with the values that take the ORM's slow path or a driver's escaping."""
    kinds = [
        _log(),
        _log(
            model="tab\tnewline\nbackslash\\ é€😀",
            attempts=[{"latency_ms": 1.5, "big": 2**70, "tiny": 1e-300, "none": None, "nested": {"a": [1, "x"]}}],
            guardrails=[{"check": "pii", "action": "redact", "where": "input"}],
            cost=Decimal("0.12345678"),
            ttft_ms=12.25,
            request_body='{"messages": "quoted \\"text\\""}',
            bodies="full",
        ),
        _log(
            created_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
            cost=0.1,  # a float: DecimalField's own conversion
            status_code=502.0,  # a float: IntegerField's int()
            stream=True,
            key_id=12,
            member_id=None,
        ),
        _log(cost=None, error_code="upstream_error", write_error="the database refused it: DataError"),
    ]
    return [kinds[i % len(kinds)] | {"request_id": uuid.uuid4().hex} for i in range(count)]


def _stored(table: str, columns: list[str], request_id: str) -> tuple:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(f'CAST({quote(c)} AS TEXT)' for c in columns)} FROM {quote(table)} "  # noqa: S608
            "WHERE request_id = %s",
            [request_id],
        )
        return cursor.fetchone()


@pytest.mark.parametrize("count", [FEW, MANY])
def test_rows_are_stored_as_bulk_create_stores_them_when_few_or_many(count):
    rows = _odd_logs(count)
    debits = [
        {
            "created_at": row["created_at"],
            "period": row["created_at"].date().replace(day=1),
            "kind": "usage",
            "amount": Decimal("-0.0000123456"),
            "project_id": 7,
            "business_unit_id": 3,
            "request_id": row["request_id"],
            "input_tokens": 10,
            "estimated": True,
        }
        for row in rows
    ]
    for model, batch in ((RequestLog, rows), (LedgerEntry, debits)):
        bulk_insert.insert_ignoring_conflicts(
            model=model, rows=[r | {"request_id": "lean-" + r["request_id"]} for r in batch]
        )
        model.objects.bulk_create([model(**r | {"request_id": "orm-" + r["request_id"]}) for r in batch])
        columns = [f.column for f in model._meta.concrete_fields if not f.primary_key and f.column != "request_id"]
        for row in batch:
            lean = _stored(model._meta.db_table, columns, "lean-" + row["request_id"])
            orm = _stored(model._meta.db_table, columns, "orm-" + row["request_id"])
            assert lean == orm


@pytest.mark.parametrize("count", [FEW, MANY])
def test_a_retried_batch_writes_nothing_twice_and_keeps_the_order_when_few_or_many(count):
    rows = _odd_logs(count)
    bulk_insert.insert_ignoring_conflicts(model=RequestLog, rows=rows)
    again = [*rows, _log()]
    bulk_insert.insert_ignoring_conflicts(model=RequestLog, rows=again)

    # Only this test's rows: a log writer of an earlier test (a live server's) may still be writing.
    ids = [row["request_id"] for row in again]
    stored = list(RequestLog.objects.filter(request_id__in=ids).order_by("id").values_list("request_id", flat=True))
    assert stored == ids


def test_two_large_batches_in_one_transaction_write_each_row_once():
    """The staging table is emptied as it is read: the second batch does not carry the first."""
    project = ProjectFactory()
    entry = {"created_at": datetime.now(UTC), "period": datetime.now(UTC).date().replace(day=1), "kind": "adjustment"}
    with transaction.atomic():
        for amount in (Decimal(1), Decimal(2)):
            rows = [entry | {"project_id": project.id, "amount": amount} for _ in range(MANY)]
            bulk_insert.insert_ignoring_conflicts(model=LedgerEntry, rows=rows)

    assert LedgerEntry.objects.filter(project_id=project.id, amount=1).count() == MANY
    assert LedgerEntry.objects.filter(project_id=project.id, amount=2).count() == MANY


@pytest.mark.parametrize("count", [FEW, MANY])
def test_a_value_the_field_cannot_take_refuses_the_batch_when_few_or_many(count):
    rows = [*_odd_logs(count - 1), _log(created_at="not a date")]

    with pytest.raises(ValidationError):
        bulk_insert.insert_ignoring_conflicts(model=RequestLog, rows=rows)
    assert not RequestLog.objects.filter(request_id__in=[row["request_id"] for row in rows]).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("count", [FEW, MANY])
def test_a_row_the_database_refuses_refuses_the_whole_batch_when_few_or_many(count):
    rows = [*_odd_logs(count - 1), _log(endpoint="x" * 41)]  # varchar(40)

    with pytest.raises(DataError):
        bulk_insert.insert_ignoring_conflicts(model=RequestLog, rows=rows)
    assert not RequestLog.objects.filter(request_id__in=[row["request_id"] for row in rows]).exists()


def test_an_unknown_column_raises_type_error_like_the_model():
    with pytest.raises(TypeError, match="unexpected keyword arguments: colour"):
        bulk_insert.insert_ignoring_conflicts(model=RequestLog, rows=[_log(colour="red")])


def test_the_log_buffer_isolates_a_refused_row_in_a_large_batch():
    project = ProjectFactory()
    rows = [
        _log(project_id=project.id, business_unit_id=project.business_unit_id, input_tokens=5, cost=Decimal("0.01"))
        for _ in range(MANY)
    ]
    rows[MANY // 2]["created_at"] = "not a date"

    async def flushed() -> bool:
        for row in rows:
            logbuffer.append(row)
        ok = await logbuffer.flush()
        await logbuffer.shutdown()
        return ok

    assert async_to_sync(flushed)()

    ids = {row["request_id"] for row in rows}
    stored = {r.request_id: r for r in RequestLog.objects.filter(request_id__in=ids)}
    assert set(stored) == ids
    refused = stored[rows[MANY // 2]["request_id"]]
    assert refused.write_error.startswith("the database refused it: ")
    assert sum(1 for r in stored.values() if r.write_error) == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, request_id__in=ids).count() == MANY
