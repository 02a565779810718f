"""Changes made by `manage.py <command>` are the command line's: source "cli", the command and the
operating-system user as the actor."""

from __future__ import annotations

import getpass
import sys

import pytest
from django.core.management import call_command

from gateway import services
from tests.audit.conftest import dumped, only_event

pytestmark = pytest.mark.django_db


def test_rotate_secrets_records_each_reencrypted_provider_as_the_command_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    provider = services.create_provider(name="cli-upstream", kind="openai", api_key="sk-cli-canary-0f9e8d7c6b5a")
    monkeypatch.setattr(sys, "argv", ["manage.py", "rotate_secrets"])
    call_command("rotate_secrets")
    event = only_event(action="provider.secret.reencrypt")
    assert (event.source, event.actor_type) == ("cli", "system")
    assert event.actor_label == f"manage.py rotate_secrets ({getpass.getuser()})"
    assert event.object_id == str(provider.id) and event.after["api_key_encrypted"] == "[set]"
    provider.refresh_from_db()
    assert "sk-cli-canary" not in dumped(event) and provider.api_key_encrypted not in dumped(event)


def test_issue_admin_token_records_the_token_never_its_secret(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "argv", ["manage.py", "issue_admin_token", "ops"])
    call_command("issue_admin_token", "ops")
    event = only_event(action="admin_token.create")
    assert event.source == "cli" and event.after["token_hash"] == "[set]" and event.after["user_created"] is True


def test_outside_any_request_or_command_a_change_is_the_systems() -> None:
    services.create_business_unit(name="By a worker")
    event = only_event(action="business_unit.create")
    assert (event.source, event.actor_type, event.actor_label) == ("system", "system", "system")
