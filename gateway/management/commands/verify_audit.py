"""`manage.py verify_audit`: walk the audit log's hash chain and report the first broken event.

Exit status 0 when every event's hash matches its content and links to the event before it;
1 (CommandError) naming the first event that does not, so a scheduled run alerts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from gateway.audit import chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exit 1 naming the first changed, inserted or removed event."

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = chain.verify()
        if verdict.broken is not None:
            raise CommandError(
                f"Audit chain broken at event {verdict.broken.event_id}: {verdict.broken.reason} "
                f"({verdict.checked} events before it verified)."
            )
        if verdict.checked == 0:
            self.stdout.write("The audit log is empty: nothing to verify.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {verdict.checked} events verified (ids {verdict.first_id} to {verdict.last_id})."
            )
        )
