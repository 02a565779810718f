"""Issue a management API token: `manage.py issue_admin_token USERNAME`.

Creates USERNAME as a superuser (with no usable password) if missing. The token is printed
alone on the last line of stdout, so `TOKEN=$(manage.py issue_admin_token ops | tail -n1)`
works; it is stored only as a hash and cannot be shown again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import services
from gateway.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create a management API token for USERNAME (a superuser, created if missing) and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="An existing active superuser, or a new username to create as one.")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        try:
            issued = services.issue_admin_token(username=username)
        except ValidationFailed as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Admin token for {issued.token.user.get_username()!r} (prefix {issued.token.prefix}). "
            "Shown once: store it now. Use it as 'Authorization: Bearer <token>' on /api/v1/."
        )
        self.stdout.write(issued.secret)
