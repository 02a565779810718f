"""A project's request-log policy: bodies (only ever stricter than the organisation's default)
and retention, through the management API, the services and the admin."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from gateway import selectors, services
from gateway.errors import ValidationFailed
from gateway.models import Project
from tests.factories import BusinessUnitFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _redacted_by_default(settings):
    settings.LOG_BODIES = "redacted"


def test_project_follows_the_default_when_it_sets_nothing(api):
    response = api.post("/projects", {"name": "Shop", "business_unit": BusinessUnitFactory().id})

    assert response.status_code == 201
    body = response.json()
    assert (body["log_bodies"], body["effective_log_bodies"], body["log_retention_days"]) == (None, "redacted", None)


def test_project_may_keep_less_and_for_fewer_days(api):
    response = api.post(
        "/projects",
        {"name": "Shop", "business_unit": BusinessUnitFactory().id, "log_bodies": "metadata", "log_retention_days": 7},
    )

    assert response.status_code == 201
    body = api.get(f"/projects/{response.json()['id']}").json()
    assert (body["log_bodies"], body["effective_log_bodies"], body["log_retention_days"]) == ("metadata", "metadata", 7)


@pytest.mark.parametrize("send", ["post", "patch"])
def test_looser_policy_than_the_default_is_refused_saying_why(api, send):
    if send == "post":
        response = api.post(
            "/projects", {"name": "Shop", "business_unit": BusinessUnitFactory().id, "log_bodies": "full"}
        )
    else:
        response = api.patch(f"/projects/{ProjectFactory().id}", {"log_bodies": "full"})

    assert response.status_code == 400
    assert response.json()["field"] == "log_bodies"
    detail = response.json()["detail"]
    assert "organisation's default" in detail and "'redacted'" in detail and "only be stricter" in detail


def test_null_or_empty_returns_to_the_default(api):
    project = ProjectFactory(log_bodies="metadata", log_retention_days=7)

    cleared = api.patch(f"/projects/{project.id}", {"log_bodies": None, "log_retention_days": None}).json()
    assert (cleared["log_bodies"], cleared["effective_log_bodies"], cleared["log_retention_days"]) == (
        None,
        "redacted",
        None,
    )
    api.patch(f"/projects/{project.id}", {"log_bodies": "metadata"})
    assert api.patch(f"/projects/{project.id}", {"log_bodies": ""}).json()["log_bodies"] is None


def test_patch_without_the_log_fields_leaves_them_alone(api):
    project = ProjectFactory(log_bodies="metadata", log_retention_days=7)

    body = api.patch(f"/projects/{project.id}", {"name": "Renamed"}).json()

    assert (body["name"], body["log_bodies"], body["log_retention_days"]) == ("Renamed", "metadata", 7)


def test_stricter_default_wins_over_a_project_chosen_before_it(api, settings):
    project = ProjectFactory(log_bodies="redacted")
    settings.LOG_BODIES = "metadata"  # the organisation tightened its default later

    body = api.get(f"/projects/{project.id}").json()
    renamed = api.patch(f"/projects/{project.id}", {"name": "Still editable"})

    assert (body["log_bodies"], body["effective_log_bodies"]) == ("redacted", "metadata")
    assert renamed.status_code == 200  # a policy that is not being changed is not checked again


@pytest.mark.parametrize("days", [0, 36_501, "soon"])
def test_retention_must_be_a_number_of_days_from_1_to_36500(api, days):
    response = api.patch(f"/projects/{ProjectFactory().id}", {"log_retention_days": days})

    assert response.status_code == 422 and response.json()["field"] == "log_retention_days"


def test_unknown_policy_is_refused(api):
    response = api.patch(f"/projects/{ProjectFactory().id}", {"log_bodies": "everything"})

    assert response.status_code == 422 and response.json()["field"] == "log_bodies"


def test_services_refuse_a_looser_policy_and_a_retention_out_of_range():
    project = ProjectFactory()

    with pytest.raises(ValidationFailed) as looser:
        services.update_project(project=project, log_bodies="full")
    with pytest.raises(ValidationFailed) as retention:
        services.create_project(name="X", business_unit=project.business_unit, log_retention_days=0)

    assert (looser.value.field, retention.value.field) == ("log_bodies", "log_retention_days")


@pytest.mark.django_db(transaction=True)
def test_the_key_snapshot_carries_the_effective_policy():
    project = ProjectFactory()
    issued = services.create_virtual_key(project=project, name="ci")

    services.update_project(project=project, log_bodies="metadata")

    assert selectors.key_snapshot(secret=issued.secret).log_bodies == "metadata"


# --- the admin ---


@pytest.fixture
def admin_client(client: Client, admin_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(admin_user)
    return client


def _project_form(project: Project, **fields: object) -> dict[str, object]:
    return {
        "name": project.name,
        "business_unit": project.business_unit_id,
        "log_bodies": project.log_bodies,
        "log_retention_days": project.log_retention_days or "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        **fields,
    }


@pytest.mark.django_db(transaction=True)
def test_admin_refuses_a_looser_policy_on_the_field_and_saves_a_stricter_one(admin_client):
    project = ProjectFactory()
    url = reverse("admin:gateway_project_change", args=[project.pk])

    refused = admin_client.post(url, _project_form(project, log_bodies="full"))
    saved = admin_client.post(url, _project_form(project, log_bodies="metadata", log_retention_days=14))

    assert refused.status_code == 200
    assert "only be stricter" in str(refused.context["adminform"].form.errors["log_bodies"])
    assert saved.status_code == 302
    project.refresh_from_db()
    assert (project.log_bodies, project.log_retention_days) == ("metadata", 14)


def test_admin_shows_the_policy_in_force(admin_client, settings):
    project = ProjectFactory(log_bodies="redacted")
    settings.LOG_BODIES = "metadata"

    page = admin_client.get(reverse("admin:gateway_project_change", args=[project.pk])).content.decode()

    assert "log bodies in force" in page.lower() and "metadata" in page
