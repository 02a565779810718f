"""Virtual keys: created under a project (the full key shown once), listed, read, revoked, deleted."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from gateway import selectors, services
from gateway.models import VirtualKey
from tests.factories import ModelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return ProjectFactory(allowed_models=[ModelFactory(name="gpt-4o"), ModelFactory(name="claude")])


def test_create_returns_201_with_the_full_key_when_name_is_given(api, project, admin_user):
    response = api.post(f"/projects/{project.id}/keys", {"name": "ci"})

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "key", "prefix", "name", "project", "allowed_models", "expires_at", "revoked_at"}
    assert body["key"].startswith(body["prefix"])
    assert (body["name"], body["project"], body["created_by"], body["active"]) == (
        "ci",
        project.id,
        admin_user.id,
        True,
    )
    stored = VirtualKey.objects.get(id=body["id"])
    assert hashlib.sha256(body["key"].encode()).hexdigest() == stored.key_hash
    assert body["key"] not in str(stored.__dict__)


def test_created_key_authenticates_when_presented_to_the_gateway(api, project):
    secret = api.post(f"/projects/{project.id}/keys", {"name": "ci"}).json()["key"]

    snapshot = selectors.key_snapshot(secret=secret)

    assert snapshot is not None
    assert snapshot.project_id == project.id
    assert snapshot.allowed_models == {"gpt-4o", "claude"}


def test_create_narrows_models_and_sets_expiry_when_both_are_given(api, project):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    response = api.post(
        f"/projects/{project.id}/keys", {"name": "ci", "allowed_models": ["claude"], "expires_at": expires.isoformat()}
    )

    assert response.status_code == 201
    assert response.json()["allowed_models"] == ["claude"]
    assert VirtualKey.objects.get(id=response.json()["id"]).expires_at == expires


def test_secret_and_hash_never_appear_when_keys_are_listed_read_or_revoked(api, project):
    created = api.post(f"/projects/{project.id}/keys", {"name": "ci"}).json()
    key_hash = VirtualKey.objects.get(id=created["id"]).key_hash

    responses = [
        api.get(f"/projects/{project.id}/keys"),
        api.get(f"/keys/{created['id']}"),
        api.post(f"/keys/{created['id']}/revoke"),
    ]

    for response in responses:
        assert response.status_code == 200
        text = response.content.decode()
        assert created["key"] not in text
        assert key_hash not in text
        assert '"key"' not in text
        assert "key_hash" not in text


def test_list_returns_the_project_keys_only_when_other_projects_have_keys(api, project, django_assert_max_num_queries):
    for name in ("a", "b"):
        services.create_virtual_key(project=project, name=name, allowed_models=["claude"])
    services.create_virtual_key(project=ProjectFactory(), name="other")

    with django_assert_max_num_queries(4):
        response = api.get(f"/projects/{project.id}/keys")

    assert response.status_code == 200
    assert sorted(k["name"] for k in response.json()) == ["a", "b"]
    assert all(k["allowed_models"] == ["claude"] for k in response.json())


def test_list_returns_404_when_project_is_unknown(api):
    response = api.get("/projects/999999/keys")

    assert response.status_code == 404
    assert response.json() == {"detail": "Project 999999 not found."}


def test_get_returns_the_key_with_prefix_when_id_exists(api, project):
    issued = services.create_virtual_key(project=project, name="ci")

    response = api.get(f"/keys/{issued.key.id}")

    assert response.status_code == 200
    assert response.json()["prefix"] == issued.key.prefix
    assert response.json()["project"] == project.id


def test_get_returns_404_when_id_is_unknown(api):
    response = api.get("/keys/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "Key 999999 not found."}


def test_revoke_keeps_the_first_time_when_called_twice(api, project):
    issued = services.create_virtual_key(project=project, name="ci")

    first = api.post(f"/keys/{issued.key.id}/revoke")
    second = api.post(f"/keys/{issued.key.id}/revoke")

    assert first.status_code == second.status_code == 200
    assert first.json()["revoked_at"] is not None
    assert second.json()["revoked_at"] == first.json()["revoked_at"]
    assert second.json()["active"] is False
    assert selectors.key_snapshot(secret=issued.secret).revoked is True


def test_revoke_returns_404_when_id_is_unknown(api):
    assert api.post("/keys/999999/revoke").status_code == 404


def test_delete_returns_204_and_the_key_stops_existing_when_it_exists(api, project):
    issued = services.create_virtual_key(project=project, name="ci")

    assert api.delete(f"/keys/{issued.key.id}").status_code == 204
    assert api.get(f"/keys/{issued.key.id}").status_code == 404
    assert selectors.key_snapshot(secret=issued.secret) is None


def test_create_returns_400_naming_allowed_models_when_a_model_is_outside_the_project(api, project):
    ModelFactory(name="llama")

    response = api.post(f"/projects/{project.id}/keys", {"name": "ci", "allowed_models": ["llama"]})

    assert response.status_code == 400
    assert response.json()["field"] == "allowed_models"
    assert "llama" in response.json()["detail"]
    assert not VirtualKey.objects.exists()


def test_create_returns_400_naming_expires_at_when_it_is_in_the_past(api, project):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()

    response = api.post(f"/projects/{project.id}/keys", {"name": "ci", "expires_at": past})

    assert response.status_code == 400
    assert response.json()["field"] == "expires_at"


def test_create_returns_422_naming_expires_at_when_it_has_no_time_zone(api, project):
    response = api.post(f"/projects/{project.id}/keys", {"name": "ci", "expires_at": "2999-01-01T00:00:00"})

    assert response.status_code == 422
    assert response.json()["field"] == "expires_at"


def test_create_returns_422_naming_name_when_name_is_missing(api, project):
    response = api.post(f"/projects/{project.id}/keys", {})

    assert response.status_code == 422
    assert response.json()["field"] == "name"


def test_create_returns_404_when_project_is_unknown(api):
    assert api.post("/projects/999999/keys", {"name": "ci"}).status_code == 404
