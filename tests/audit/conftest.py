"""The audit tests reuse the portal's world (tests/portal/conftest.py) and the management API's
JSON client (tests/gateway/admin_api/conftest.py), and read events through `events()`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from gateway import services
from gateway.models import AuditEvent
from tests.gateway.admin_api.conftest import Api
from tests.portal.conftest import World, build_world


@pytest.fixture
def world(db: None) -> World:
    return build_world()


@pytest.fixture
def admin_token(world: World) -> services.IssuedToken:
    return services.issue_admin_token(username=world.admin.username)


@pytest.fixture
def api(admin_token: services.IssuedToken) -> Api:
    return Api(admin_token.secret)


@pytest.fixture
def login_as() -> Callable[[Any], Client]:
    def sign_in(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


@pytest.fixture(autouse=True)
def _eager_celery(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Approval rules (a task after filing) run in the test's process, as in the embedded profile."""
    from gateway.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


def events(**where: Any) -> list[AuditEvent]:
    """Events matching WHERE, oldest first."""
    return list(AuditEvent.objects.filter(**where).order_by("id"))


def only_event(**where: Any) -> AuditEvent:
    found = events(**where)
    assert len(found) == 1, f"expected one event {where}, found {[e.action for e in found]}"
    return found[0]


def dumped(event: AuditEvent) -> str:
    """Everything an event holds, as text (to look for secrets in)."""
    return json.dumps([getattr(event, f.attname) for f in AuditEvent._meta.concrete_fields], default=str)
