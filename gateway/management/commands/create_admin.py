"""The first administrator: `manage.py create_admin --username NAME [--email ADDRESS]`.

Creates NAME as a superuser who signs in with a password at /admin/ and the portal (local sign-in,
LOCAL_LOGIN=true). The password comes from ADMIN_PASSWORD or the file named by ADMIN_PASSWORD_FILE
(a Docker or Kubernetes secret); without either, a random one is generated and printed alone on
the last line of stdout, once: `PASSWORD=$(manage.py create_admin --username admin | tail -n1)`.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import identity
from gateway.env import env_secret
from gateway.errors import ValidationFailed


class Command(BaseCommand):
    help = (
        "Create a superuser who signs in with a password (from ADMIN_PASSWORD / ADMIN_PASSWORD_FILE, "
        "or generated and printed once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True, help="The administrator's username.")
        parser.add_argument("--email", default="", help="The administrator's email address (optional).")
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="If the user exists, make it an active superuser with the new password instead of refusing.",
        )

    def handle(self, *args: Any, username: str, email: str, reset_password: bool, **options: Any) -> None:
        try:
            given = env_secret("ADMIN_PASSWORD")
        except ImproperlyConfigured as exc:  # ADMIN_PASSWORD_FILE names a file that cannot be read
            raise CommandError(str(exc)) from None
        password = given or secrets.token_urlsafe(18)
        try:
            user = identity.create_admin(
                username=username, email=email, password=password, reset_password=reset_password
            )
        except ValidationFailed as exc:
            raise CommandError(str(exc)) from None
        if given:
            where = "ADMIN_PASSWORD_FILE" if "ADMIN_PASSWORD_FILE" in os.environ else "ADMIN_PASSWORD"
            self.stderr.write(
                f"Administrator {user.get_username()!r} signs in at /admin/ with the password from {where}."
            )
            return
        self.stderr.write(
            f"Administrator {user.get_username()!r} signs in at /admin/ with the password below. "
            "Shown once: store it now (change it at /accounts/password/change/)."
        )
        self.stdout.write(password)
