"""Full-text search over request-log bodies on PostgreSQL (a GIN index on their tsvector).

The selector's search condition repeats this expression exactly, so the index serves it. SQLite
(the embedded profile) searches with LIKE instead and needs no index.
"""

from django.db import migrations

EXPRESSION = "to_tsvector('simple'::regconfig, request_body || ' ' || response_body)"


def _run(apps, schema_editor, *, up: bool) -> None:  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    if up:
        schema_editor.execute(f"CREATE INDEX requestlog_body_search ON gateway_requestlog USING GIN (({EXPRESSION}))")
    else:
        schema_editor.execute("DROP INDEX IF EXISTS requestlog_body_search")


class Migration(migrations.Migration):
    dependencies = [("gateway", "0006_request_log_bodies")]

    operations = [
        migrations.RunPython(
            lambda apps, editor: _run(apps, editor, up=True),
            lambda apps, editor: _run(apps, editor, up=False),
        )
    ]
