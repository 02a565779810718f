"""The portal's test world: two projects in one business unit, the people around them, and a
helper to sign in as any of them.

    def test_something(world, login_as):
        client = login_as(world.dev_a)          # a Django test client signed in (None: anonymous)
        client.get(reverse("portal:project", args=[world.project_a.id]))

Personas (all with the password `world.password`):
- dev_a: owner of project A;   dev_b: member of project B (both projects are in `world.unit`)
- manager: a manager of `world.unit`;   admin: a superuser;   newcomer: no project, no unit
`world.key_a` is a key of project A (its secret in `world.secret_a`). Project A has a hard budget
of 100.00 a month and may use `world.model` and `world.other_model`; B may use `world.model`.
`seed_usage(...)` writes request-log rows and ledger debits over past days, for charts and totals.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from billing import services as billing_services
from gateway import services
from gateway.models import BusinessUnit, Model, Project, VirtualKey
from tests.factories import BusinessUnitFactory, DeploymentFactory, ModelFactory, ProviderFactory, UserFactory

PERSONAS = ("anonymous", "dev_a", "dev_b", "manager", "admin")
PASSWORD = "correct horse battery"


@dataclass
class World:
    unit: BusinessUnit
    project_a: Project
    project_b: Project
    model: Model
    other_model: Model
    dev_a: Any
    dev_b: Any
    manager: Any
    admin: Any
    newcomer: Any
    key_a: VirtualKey
    secret_a: str
    password: str = PASSWORD

    def persona(self, name: str) -> Any:
        """The user called `name` in PERSONAS (None for "anonymous")."""
        return None if name == "anonymous" else getattr(self, name)


def build_world() -> World:
    provider = ProviderFactory(name="portal-upstream", kind="openai", approved=True)
    model = ModelFactory(name="gpt-portal", context_window=128_000)
    other_model = ModelFactory(name="gpt-portal-mini", context_window=32_000)
    DeploymentFactory(
        model=model, provider=provider, upstream_model="gpt-4o", input_price=Decimal("2.5"), output_price=Decimal("10")
    )
    DeploymentFactory(
        model=other_model,
        provider=provider,
        upstream_model="gpt-4o-mini",
        input_price=Decimal("0.15"),
        output_price=Decimal("0.6"),
        cached_input_price=Decimal("0.075"),
    )
    unit = BusinessUnitFactory(name="Retail")
    password = make_password(PASSWORD)
    dev_a = UserFactory(username="alice", first_name="Alice", last_name="Archer", password=password)
    dev_b = UserFactory(username="bob", first_name="Bob", last_name="Baker", password=password)
    manager = UserFactory(username="maria", first_name="Maria", last_name="Manager", password=password)
    admin = UserFactory(username="root", is_staff=True, is_superuser=True, password=password)
    newcomer = UserFactory(username="nina", password=password)
    unit.managers.add(manager)
    project_a = services.create_project(
        name="Checkout", business_unit=unit, allowed_models=[model.name, other_model.name]
    )
    project_b = services.create_project(name="Search", business_unit=unit, allowed_models=[model.name])
    services.add_member(project=project_a, user=dev_a, role="owner")
    services.add_member(project=project_b, user=dev_b)
    billing_services.set_budget(target=project_a, monthly_limit="100.00")
    issued = services.create_virtual_key(project=project_a, name="checkout-web", created_by=dev_a)
    return World(
        unit=unit,
        project_a=project_a,
        project_b=project_b,
        model=model,
        other_model=other_model,
        dev_a=dev_a,
        dev_b=dev_b,
        manager=manager,
        admin=admin,
        newcomer=newcomer,
        key_a=issued.key,
        secret_a=issued.secret,
    )


@pytest.fixture
def world(db: None) -> World:
    return build_world()


@pytest.fixture
def login_as(client: Client) -> Callable[[Any], Client]:
    """login_as(user) -> the test client signed in as `user` (None: signed out)."""

    def sign_in(user: Any) -> Client:
        client.logout()
        if user is not None:
            client.force_login(user)
        return client

    return sign_in


def seed_usage(
    *,
    project: Project,
    key: VirtualKey | None = None,
    model: str = "gpt-portal",
    days: int = 30,
    per_day: int = 3,
    errors_per_day: int = 0,
    cost: Decimal = Decimal("0.0125"),
    now: datetime | None = None,
) -> int:
    """Request-log rows and ledger debits for `per_day` successful calls (and `errors_per_day`
    failed ones) on each of the last `days` days. Returns how many rows were written."""
    now = now or datetime.now(UTC)
    logs: list[dict[str, Any]] = []
    for day in range(days):
        for i in range(per_day + errors_per_day):
            failed = i >= per_day
            at = now - timedelta(days=day, minutes=7 * i + 1)
            logs.append(
                {
                    "request_id": f"req-{uuid.uuid4().hex[:24]}",
                    "created_at": at,
                    "endpoint": "chat",
                    "key_id": key.id if key else None,
                    "key_prefix": key.prefix if key else "",
                    "project_id": project.id,
                    "model": model,
                    "answered_model": model,
                    "provider": "portal-upstream",
                    "status_code": 502 if failed else 200,
                    "error_code": "upstream_error" if failed else "",
                    "input_tokens": 0 if failed else 1200 + 10 * day,
                    "output_tokens": 0 if failed else 300 + i,
                    "cost": None if failed else cost,
                    "latency_ms": 420.0 + i,
                }
            )
    services.record_request_logs(entries=logs)
    billing_services.record_usage(
        entries=[entry | {"business_unit_id": project.business_unit_id} for entry in logs if entry["status_code"] < 400]
    )
    return len(logs)
