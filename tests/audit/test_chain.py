"""The audit log cannot be quietly changed: the database refuses UPDATE and DELETE, and the hash
chain, which `manage.py verify_audit` walks, finds an event changed, removed or inserted behind
the triggers' back (through raw SQL, triggers disabled)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from gateway import services
from gateway.audit import chain
from gateway.models import AuditEvent

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table
REPO = Path(__file__).resolve().parents[2]


def _three_events() -> list[AuditEvent]:
    for name in ("Alpha", "Beta", "Gamma"):
        services.create_business_unit(name=name)
    return list(AuditEvent.objects.order_by("id"))


def _without_triggers(sql: str, params: list[object]) -> None:
    """Run SQL as someone with the database's keys would: triggers off, then back on."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
            cursor.execute(sql, params)
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
        else:
            triggers = cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE]
            ).fetchall()
            cursor.execute("DROP TRIGGER gateway_audit_no_update")
            cursor.execute("DROP TRIGGER gateway_audit_no_delete")
            cursor.execute(sql, params)
            for (create,) in triggers:
                cursor.execute(create)


def _verify() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    return str(failure.value)


# --- the chain ---


def test_each_event_links_to_the_one_before_from_the_genesis_hash() -> None:
    first, second, third = _three_events()
    assert first.prev_hash == chain.GENESIS
    assert (second.prev_hash, third.prev_hash) == (first.hash, second.hash)
    assert all(chain.hash_of(event) == event.hash for event in (first, second, third))


def test_verify_audit_reports_an_intact_chain(capsys: pytest.CaptureFixture[str]) -> None:
    events = _three_events()
    call_command("verify_audit")
    assert f"3 events verified (ids {events[0].id} to {events[-1].id})" in capsys.readouterr().out


def test_verify_audit_names_an_event_whose_content_was_changed() -> None:
    _, second, _ = _three_events()
    _without_triggers("UPDATE gateway_auditevent SET object_label = %s WHERE id = %s", ["Beta (renamed)", second.id])
    assert _verify().startswith(f"Audit chain broken at event {second.id}: its content does not match its hash")


def test_verify_audit_names_an_event_whose_before_and_after_were_rewritten() -> None:
    first, _, _ = _three_events()
    after = '{"id": 1, "name": "Forged"}'
    sql = "UPDATE gateway_auditevent SET after = %s WHERE id = %s"
    _without_triggers(
        sql if connection.vendor == "sqlite" else sql.replace("= %s W", "= %s::jsonb W"), [after, first.id]
    )
    assert f"broken at event {first.id}" in _verify()


def test_verify_audit_finds_a_removed_event_at_the_one_after_it() -> None:
    _, second, third = _three_events()
    _without_triggers("DELETE FROM gateway_auditevent WHERE id = %s", [second.id])
    assert _verify().startswith(
        f"Audit chain broken at event {third.id}: its prev_hash is not the previous event's hash"
    )


def test_verify_audit_finds_a_rehashed_forgery_at_the_event_after_it() -> None:
    """Changing an event and recomputing its own hash still breaks the link to the next one."""
    _, second, third = _three_events()
    second.object_label = "Forged"
    forged = chain.hash_of(second)
    _without_triggers(
        "UPDATE gateway_auditevent SET object_label = %s, hash = %s WHERE id = %s", ["Forged", forged, second.id]
    )
    assert f"broken at event {third.id}" in _verify()


# --- append-only ---


def test_the_database_refuses_to_update_an_event() -> None:
    first, _, _ = _three_events()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE gateway_auditevent SET action = %s WHERE id = %s", ["forged", first.id])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=first.pk).update(object_label="forged")


def test_the_database_refuses_to_delete_an_event_from_the_chain() -> None:
    _, second, third = _three_events()
    for event in (second, third):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM gateway_auditevent WHERE id = %s", [event.id])
    assert AuditEvent.objects.count() == 3


@pytest.mark.postgres
def test_postgres_refuses_even_deleting_the_oldest_event() -> None:
    first, _, _ = _three_events()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM gateway_auditevent WHERE id = %s", [first.id])


def test_sqlite_lets_retention_purge_the_oldest_events_and_the_rest_still_verifies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's trigger allows purging from the oldest end; Postgres refuses every delete")
    first, second, third = _three_events()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM gateway_auditevent WHERE id = %s", [first.id])
    call_command("verify_audit")
    assert f"2 events verified (ids {second.id} to {third.id})" in capsys.readouterr().out


# --- concurrent writers ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_writers_extend_one_chain_without_forks() -> None:
    barrier = threading.Barrier(20)
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            services.create_business_unit(name=f"Concurrent {n:02}")
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == 20
    prev_hashes = [event.prev_hash for event in events]
    assert len(set(prev_hashes)) == 20  # no two events claim the same predecessor: no fork
    assert prev_hashes == [chain.GENESIS] + [event.hash for event in events[:-1]]
    assert chain.verify().broken is None
    call_command("verify_audit")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_verify_audit_exits_with_status_one_when_run_as_a_command() -> None:
    """As a scheduled job runs it: its own process on the same (committed) database."""
    _three_events()
    second = AuditEvent.objects.order_by("id")[1]
    _without_triggers("UPDATE gateway_auditevent SET action = %s WHERE id = %s", ["business_unit.forged", second.id])
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    url = f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run(
        [sys.executable, "manage.py", "verify_audit"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Audit chain broken at event {second.id}" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_test_databases_flush_still_empties_the_table() -> None:
    """Postgres truncates (no row trigger fires); SQLite deletes oldest first, which its trigger allows."""
    _three_events()
    call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 0
