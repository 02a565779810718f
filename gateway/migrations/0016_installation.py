# Made with `manage.py makemigrations gateway --name installation`, plus the data step.

import uuid

from django.db import migrations, models


def create_installation(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Installation = apps.get_model("gateway", "Installation")
    Installation.objects.get_or_create(id=1, defaults={"installation_id": uuid.uuid4()})


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0015_request_log_labels"),
    ]

    operations = [
        migrations.CreateModel(
            name="Installation",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, editable=False, primary_key=True, serialize=False)),
                ("installation_id", models.UUIDField(editable=False, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "constraints": [models.CheckConstraint(condition=models.Q(("id", 1)), name="one_installation_row")],
            },
        ),
        migrations.RunPython(create_installation, migrations.RunPython.noop),
    ]
