"""Who is changing things, through which door, in which request: a context variable, so the
services that write audit events need no new parameters.

The request middleware (gateway/audit/middleware.py) opens a fresh context for every portal,
admin, management API and decision-link request; the management API's authentication names the
admin token or identity-provider bearer; the decision-link view marks its source; approval rules,
tasks and management commands open their own with `acting(...)`. Without any, an event is the
system's."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "User"
    ADMIN_TOKEN = "admin_token", "Admin token"
    OIDC = "oidc", "Identity-provider bearer token"
    RULE = "rule", "Approval rule"
    SYSTEM = "system", "System"


class Source(models.TextChoices):
    ADMIN = "admin", "Admin"
    PORTAL = "portal", "Portal"
    API = "api", "Management API"
    EMAIL_LINK = "email_link", "Email link"
    RULE = "rule", "Approval rule"
    CLI = "cli", "Command line"
    SYSTEM = "system", "System (tasks, sign-in)"


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""

    @classmethod
    def of_user(cls, user: Any) -> Actor:
        return cls(ActorType.USER, str(user.pk), user.get_username())


SYSTEM = Actor(ActorType.SYSTEM, "", "system")


@dataclass
class AuditContext:
    """Mutable within one request: the API's authentication names the actor after the middleware
    opened the context. `user` is read lazily (request.user is resolved on first use)."""

    source: str = Source.SYSTEM
    actor: Actor | None = None
    user: Callable[[], Any] | None = field(default=None, repr=False)
    request_id: str = ""

    def resolved_actor(self) -> Actor:
        if self.actor is not None:
            return self.actor
        if self.user is not None and (user := self.user()) is not None and getattr(user, "is_authenticated", False):
            return Actor.of_user(user)
        return SYSTEM


_current: ContextVar[AuditContext | None] = ContextVar("symbiosis_audit_context", default=None)


def current() -> AuditContext:
    return _current.get() or _outside_requests()


def _outside_requests() -> AuditContext:
    """No request, rule or task opened a context: a change made by `manage.py <command>` (shell,
    rotate_secrets, create_admin, ...) is the command line's, any other (a worker) the system's."""
    argv = sys.argv
    if len(argv) > 1 and Path(argv[0]).name in ("manage.py", "django-admin"):
        return AuditContext(source=Source.CLI, actor=command_actor(argv[1]))
    return AuditContext()


@contextmanager
def opened(context: AuditContext) -> Iterator[AuditContext]:
    """Make CONTEXT the current one until the block ends (the middleware's per-request scope)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


@contextmanager
def acting(
    *, actor: Actor | None = None, source: str | None = None, request_id: str | None = None
) -> Iterator[AuditContext]:
    """Within the block, changes are made by ACTOR (and/or through SOURCE): the current context
    with those replaced (a rule deciding inside a task, a command, the decision-link view)."""
    base = current()
    changed = replace(
        base,
        actor=actor if actor is not None else base.actor,
        user=None if actor is not None else base.user,
        source=source if source is not None else base.source,
        request_id=request_id if request_id is not None else base.request_id,
    )
    with opened(changed) as context:
        yield context


def set_actor(actor: Actor) -> None:
    """Name the actor of the current request (the management API's authentication)."""
    if (context := _current.get()) is not None:  # outside a request scope there is nothing to name
        context.actor = actor


def command_actor(command: str) -> Actor:
    """The actor of a management command: the operating-system user who ran it."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        who = "unknown"
    return Actor(ActorType.SYSTEM, "", f"manage.py {command} ({who})")
