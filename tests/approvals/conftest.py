"""The approvals tests reuse the portal's world: project A (owner dev_a) and B (member dev_b, no
owner) in unit Retail (manager maria), an administrator, a newcomer."""

from __future__ import annotations

import pytest

from tests.portal.conftest import World, build_world


@pytest.fixture
def world(db: None) -> World:
    return build_world()
