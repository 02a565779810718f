"""Re-encrypt stored secrets under the first key of SECRETS_ENCRYPTION_KEY.

Rotation: put the new key first (`SECRETS_ENCRYPTION_KEY=new,old`), run this command, then
drop the old key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from gateway import services
from gateway.errors import SecretDecryptionError


class Command(BaseCommand):
    help = "Re-encrypt every provider API key under the first key in SECRETS_ENCRYPTION_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rotated = services.rotate_provider_secrets()
        except SecretDecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        self.stdout.write(f"Re-encrypted {rotated} provider secret(s) under the current key.")
