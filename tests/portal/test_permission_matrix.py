"""Every portal URL by every persona, in one table: anonymous, developer of project A, developer of
project B, the unit's manager, an administrator. A page added to portal/urls.py without a row here
fails `test_every_portal_url_has_a_row`, so the matrix stays complete.

What may not be seen is a 404 (never a 403 that confirms it exists); anonymous visitors go to the
sign-in page and come back; actions are POST-only, and a refused action changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, reverse

from approvals import services as approvals_services
from approvals.models import CreditRequest
from gateway.models import RequestLog, VirtualKey
from portal import urls as portal_urls
from tests.portal.conftest import PERSONAS, World, seed_usage

pytestmark = pytest.mark.django_db

LOGIN = "login"  # anonymous: a redirect to /accounts/login/?next=<the page>


@dataclass(frozen=True)
class Row:
    name: str
    method: str  # GET for pages, POST for actions
    expect: dict[str, int | str]  # persona -> status (or LOGIN)
    data: dict[str, str] | None = None
    refused: tuple[str, ...] = ()  # personas whose action is refused with a message (state unchanged)


EVERYONE = {"anonymous": LOGIN, "dev_a": 200, "dev_b": 200, "manager": 200, "admin": 200}
PROJECT_A = {"anonymous": LOGIN, "dev_a": 200, "dev_b": 404, "manager": 200, "admin": 200}
UNIT = {"anonymous": LOGIN, "dev_a": 404, "dev_b": 404, "manager": 200, "admin": 200}

MATRIX = [
    Row("dashboard", "GET", EVERYONE),
    Row("notifications-read", "POST", {**EVERYONE, "dev_a": 302, "dev_b": 302, "manager": 302, "admin": 302}),
    Row("project", "GET", PROJECT_A),
    Row("project-usage", "GET", PROJECT_A),
    Row("project-members", "GET", PROJECT_A),
    Row("project-ledger", "GET", PROJECT_A),
    Row("project-keys", "GET", PROJECT_A),
    # an empty name: the form answers 400 with the error beside the field, to those who may create
    Row("project-key-create", "POST", {**PROJECT_A, "dev_a": 400, "manager": 400, "admin": 400}, {"name": ""}),
    Row("project-key-revoke", "POST", {**PROJECT_A, "dev_a": 302, "manager": 302, "admin": 302}),
    Row("project-key-rotate", "POST", {**PROJECT_A, "dev_a": 200, "manager": 200, "admin": 200}, {"grace": "1h"}),
    Row("logs", "GET", EVERYONE),
    Row("log-detail", "GET", PROJECT_A),
    Row("models", "GET", EVERYONE),
    Row("requests", "GET", EVERYONE),
    Row("request-access", "GET", EVERYONE),
    Row("request-credit", "GET", EVERYONE),
    # dev_a's pending credit request for project A: its unit's manager decides it
    Row("request-detail", "GET", PROJECT_A),
    # only the requester cancels; only an approver decides (never the requester): others are told so
    Row(
        "request-cancel",
        "POST",
        {**PROJECT_A, "dev_a": 302, "manager": 302, "admin": 302},
        refused=("manager", "admin"),
    ),
    Row(
        "request-decide",
        "POST",
        {**PROJECT_A, "dev_a": 302, "manager": 302, "admin": 302},
        {"decision": "approve"},
        refused=("dev_a",),
    ),
    Row("units", "GET", UNIT),
    Row("unit-report", "GET", UNIT),
    Row("unit-report-csv", "GET", UNIT),
]


def _args(name: str, world: World, objects: dict[str, Any]) -> list[Any]:
    if name.startswith("project-key-") and name != "project-key-create":
        return [world.project_a.id, objects["key"].id]
    if name.startswith("project"):
        return [world.project_a.id]
    if name == "log-detail":
        return [objects["log"].request_id]
    if name.startswith("request-") and name not in ("request-access", "request-credit"):
        return ["credit", objects["credit"].id]
    if name.startswith("unit-"):
        return [world.unit.id]
    return []


@pytest.fixture
def objects(world: World) -> dict[str, Any]:
    seed_usage(project=world.project_a, key=world.key_a, days=1, per_day=1)
    credit = approvals_services.file_credit_request(
        user=world.dev_a, project=world.project_a, amount="25.00", reason="Load test"
    )
    return {
        "key": world.key_a,
        "log": RequestLog.objects.filter(project_id=world.project_a.id).first(),
        "credit": credit,
    }


def test_every_portal_url_has_a_row() -> None:
    names = {p.name for p in portal_urls.urlpatterns if isinstance(p, URLPattern)}
    assert names == {row.name for row in MATRIX}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("row", MATRIX, ids=[row.name for row in MATRIX])
def test_each_persona_gets_what_the_matrix_says(row: Row, persona: str, world: World, objects, login_as) -> None:
    client = login_as(world.persona(persona))
    url = reverse(f"portal:{row.name}", args=_args(row.name, world, objects))
    response = client.post(url, row.data or {}) if row.method == "POST" else client.get(url)
    expected = row.expect[persona]
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")
    else:
        assert response.status_code == expected, f"{row.name} as {persona}"
    if row.method == "POST" and (response.status_code == 404 or expected == LOGIN or persona in row.refused):
        # a refused action changed nothing
        assert VirtualKey.objects.get(pk=objects["key"].pk).revoked_at is None
        assert VirtualKey.objects.get(pk=objects["key"].pk).expires_at is None
        assert CreditRequest.objects.get(pk=objects["credit"].pk).state == "pending"


@pytest.mark.parametrize("row", [r for r in MATRIX if r.method == "POST"], ids=lambda r: r.name)
def test_actions_refuse_get(row: Row, world: World, objects, login_as) -> None:
    client = login_as(world.admin)
    assert client.get(reverse(f"portal:{row.name}", args=_args(row.name, world, objects))).status_code == 405
