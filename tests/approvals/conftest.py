"""The approvals tests reuse the portal's world: project A (owner dev_a) and B (member dev_b, no
owner) in unit Retail (manager maria), an administrator, a newcomer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.portal.conftest import World, build_world


@pytest.fixture
def world(db: None) -> World:
    return build_world()


@pytest.fixture(autouse=True)
def _eager_tasks(settings) -> None:  # type: ignore[no-untyped-def]
    """The workflow's tasks run in the test's process, as in the embedded profile (mail lands in
    pytest-django's `mailoutbox`). Tests with a real worker turn this off and route to its queue."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    """Tasks run in the test's process, as in the embedded profile, even when REDIS_URL is set (the
    worker tests override this fixture and start a real worker)."""
    from gateway.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved
