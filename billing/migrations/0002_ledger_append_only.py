"""The database itself refuses to change a ledger entry, or (Postgres) delete one.

SQLite keeps only the update guard: its flush (used between tests) deletes rows one statement at a
time, where Postgres truncates (which row triggers do not see).
"""

from django.db import migrations

_POSTGRES_UP = """
CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_ledgerentry is append-only: add an adjustment instead';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_ledger_append_only BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();
"""
_POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry;
DROP FUNCTION IF EXISTS billing_ledger_append_only();
"""
_SQLITE_UP = [
    "CREATE TRIGGER billing_ledger_no_update BEFORE UPDATE ON billing_ledgerentry "
    "BEGIN SELECT RAISE(ABORT, 'billing_ledgerentry is append-only: add an adjustment instead'); END;",
]
_SQLITE_DOWN = ["DROP TRIGGER IF EXISTS billing_ledger_no_update;"]


def _run(apps, schema_editor, *, up: bool) -> None:  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_POSTGRES_UP if up else _POSTGRES_DOWN)
    elif vendor == "sqlite":
        for statement in _SQLITE_UP if up else _SQLITE_DOWN:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        migrations.RunPython(
            lambda apps, editor: _run(apps, editor, up=True),
            lambda apps, editor: _run(apps, editor, up=False),
        )
    ]
