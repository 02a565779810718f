"""The operator's view: an index grouped by task, each model's health in the model list, and a
project's page that shows its members, keys (with their actions), money and latest requests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from gateway import health_state, services
from gateway.models import RequestLog
from tests.factories import DeploymentFactory, MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def _groups(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [group["name"] for group in response.context["app_list"]]


def test_index_groups_the_models_by_task(client: Client) -> None:
    response = client.get(reverse("admin:index"))

    assert _groups(response) == ["Catalog", "Projects and keys", "Money", "Safety", "Logs", "People and sign-in"]
    money = next(group for group in response.context["app_list"] if group["name"] == "Money")
    assert [model["object_name"] for model in money["models"]] == [
        "Budget",
        "LedgerEntry",
        "AlertEvent",
        "CreditRequest",
        "ApprovalRule",
    ]
    page = response.content.decode()
    assert "current-app" not in page


def test_app_index_keeps_its_own_models_when_an_app_is_opened(client: Client) -> None:
    response = client.get(reverse("admin:app_list", args=["billing"]))

    assert response.status_code == 200
    assert [app["app_label"] for app in response.context["app_list"]] == ["billing"]


def test_index_shows_only_what_a_staff_user_may_see(staff_client: Client) -> None:
    response = staff_client.get(reverse("admin:index"))

    names = {model["object_name"] for group in response.context["app_list"] for model in group["models"]}
    assert names == {"VirtualKey", "Project", "LedgerEntry", "Model", "GuardrailPolicy"}


def test_model_list_shows_the_worst_deployment_state(client: Client) -> None:
    cache.clear()
    healthy = DeploymentFactory()
    failing = DeploymentFactory(model=healthy.model)
    health_state.record_check(deployment_id=failing.pk, ok=False, latency_ms=12.0, error="connect refused")

    page = client.get(reverse("admin:gateway_model_changelist")).content.decode()

    assert '<span class="cockpit-status degraded"' in page and "1/2 healthy" in page


def test_project_page_shows_members_keys_money_and_latest_requests(client: Client) -> None:
    project = ProjectFactory(name="Shop")
    MembershipFactory(project=project, user__username="alice", role="owner")
    key = services.create_virtual_key(project=project, name="ci-key").key
    RequestLog.objects.create(
        request_id="req-latest",
        created_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        endpoint="chat",
        project=project,
        model="gpt-4o",
        status_code=429,
        cost=Decimal("0.5"),
    )

    response = client.get(reverse("admin:gateway_project_change", args=[project.pk]))

    page = response.content.decode()
    assert "alice" in page and "ci-key" in page and key.prefix in page
    for action in ("limits", "rotate", "revoke"):
        assert reverse(f"admin:gateway_virtualkey_{action}", args=[key.pk]) in page
    assert "gpt-4o" in page and ">429<" in page and "0.50 EUR" in page
    assert '<svg class="cockpit-sparkline"' in page


def test_project_page_offers_no_key_actions_to_a_staff_user_who_may_only_view(staff_client: Client) -> None:
    project = ProjectFactory()
    key = services.create_virtual_key(project=project, name="ci-key").key

    page = staff_client.get(reverse("admin:gateway_project_change", args=[project.pk])).content.decode()

    assert "ci-key" in page
    for action in ("limits", "rotate", "revoke"):
        assert reverse(f"admin:gateway_virtualkey_{action}", args=[key.pk]) not in page


def test_project_page_loads_with_bounded_queries(client: Client, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    project = ProjectFactory()
    for n in range(5):
        services.create_virtual_key(project=project, name=f"key {n}")
        MembershipFactory(project=project)

    with django_assert_max_num_queries(25):  # the members inline: one per row (autocomplete)
        assert client.get(reverse("admin:gateway_project_change", args=[project.pk])).status_code == 200
