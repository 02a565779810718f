"""The request-log writer cannot be poisoned: a row the database refuses is isolated and stored in
a minimal form, with its ledger debit; the rows around it are written as they are."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from billing.models import LedgerEntry
from gateway.models import RequestLog
from gateway.proxy import logbuffer
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _row(project, **fields) -> dict:
    row = {
        "request_id": "req_" + uuid.uuid4().hex[:24],
        "created_at": datetime.now(UTC),
        "endpoint": "chat/completions",
        "key_id": None,
        "key_prefix": "sk-sym-abc",
        "project_id": project.id,
        "business_unit_id": project.business_unit_id,
        "member_id": None,
        "model": "gpt-test",
        "answered_model": "gpt-test",
        "deployment_id": None,
        "provider": "mock",
        "attempts": [],
        "status_code": 200,
        "error_code": "",
        "stream": False,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "usage_estimated": False,
        "cost": Decimal("0.0015"),
        "latency_ms": 12.5,
        "ttft_ms": None,
        "user_agent": "test",
        "bodies": ("full", {"messages": [{"role": "user", "content": "hi"}]}, {"ok": True}),
        "guardrails": [],
    }
    return row | fields


def _written(rows: list[dict]) -> bool:
    """Queue the rows and flush them, as the proxy's event loop would."""

    async def go() -> bool:
        for row in rows:
            logbuffer.append(row)
        ok = await logbuffer.flush()
        pending = logbuffer.pending()
        await logbuffer.shutdown()  # stops this loop's flusher (and flushes nothing more)
        assert pending == 0 or not ok
        return ok

    return async_to_sync(go)()


def test_refused_row_is_stored_minimal_and_rows_around_it_are_written(caplog):
    project = ProjectFactory()
    good = [_row(project) for _ in range(7)]
    refused = _row(project, created_at="not a date", cost=Decimal("0.5"), input_tokens=1000, output_tokens=2000)

    with caplog.at_level(logging.ERROR, logger="gateway.proxy.logbuffer"):
        assert _written([*good[:3], refused, *good[3:]])

    rows = {r.request_id: r for r in RequestLog.objects.all()}
    assert set(rows) == {r["request_id"] for r in [*good, refused]}
    assert all(rows[r["request_id"]].write_error == "" for r in good)
    assert all(rows[r["request_id"]].request_body for r in good)  # the full form
    minimal = rows[refused["request_id"]]
    assert minimal.write_error.startswith("the database refused it: ")
    assert (minimal.status_code, minimal.input_tokens, minimal.output_tokens) == (200, 1000, 2000)
    assert minimal.cost == Decimal("0.5") and minimal.request_body == ""
    debits = {e.request_id: e for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE)}
    assert set(debits) == set(rows)
    assert debits[refused["request_id"]].amount == Decimal("-0.5")
    assert "stored in minimal form" in caplog.text


def test_values_the_database_cannot_hold_are_made_storable_in_the_full_row():
    project = ProjectFactory()
    deep: list = []
    for _ in range(400):
        deep = [deep]
    row = _row(
        project,
        model="x\x00y",
        user_agent="agent\x00",
        error_code="bad\x00code",
        attempts=[{"model": "m", "error": "e\x00", "status": 500}],
        input_tokens=2**40,
        bodies=("full", {"messages": [{"role": "user", "content": deep}], "note": "nul\x00"}, {"lone": "\ud800"}),
    )

    assert _written([row])

    stored = RequestLog.objects.get(request_id=row["request_id"])
    assert stored.write_error == ""
    assert (stored.model, stored.user_agent, stored.error_code) == ("x\ufffdy", "agent\ufffd", "bad\ufffdcode")
    assert stored.attempts[0]["error"] == "e\ufffd"
    assert stored.input_tokens == 2**31 - 1
    assert "nested too deeply" in stored.request_body and "\x00" not in stored.request_body
    assert "\ufffd" in stored.response_body


def test_unwritable_rows_wait_and_shutdown_names_the_cause(caplog, monkeypatch):
    """A database that refuses even the minimal row (a missing table) keeps the rows, like an outage."""
    from django.db import ProgrammingError

    def refuse(*, entries):
        raise ProgrammingError('relation "gateway_requestlog" does not exist')

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(logbuffer, "_write", sync_to_async(refuse, thread_sensitive=False))
    monkeypatch.setattr(logbuffer.asyncio, "sleep", no_wait)
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.proxy.logbuffer"):
            assert not _written([_row(ProjectFactory())])
        assert logbuffer.pending() == 1
        assert "1 request-log rows unwritten (the database refused it: ProgrammingError" in caplog.text
    finally:
        logbuffer._rows.clear()
