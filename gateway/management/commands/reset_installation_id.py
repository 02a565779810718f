"""Give this installation a new id: `manage.py reset_installation_id`.

Every key the gateway writes into Redis starts with the installation id (gateway/installation.py).
Run this after restoring a database from a backup, or after copying one to a second installation
that shares the Redis server: the old counters (rate-limit windows, budget holds and leases) stay
behind under the old id and expire by themselves. Running gateway processes keep the id they read
at start-up until they restart: run it before starting them, or restart them after.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from gateway import installation


class Command(BaseCommand):
    help = "Give this installation a new random id (after restoring a backup); Redis counters start afresh."

    def handle(self, *args: Any, **options: Any) -> None:
        old = installation.installation_id()
        new = installation.reset_installation_id()
        self.stderr.write(
            f"Installation id changed from {old} to {new}. Restart the web processes and workers so they use it."
        )
        self.stdout.write(str(new))
