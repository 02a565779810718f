"""/api/v1/projects/{id}/members: add by username or id, list, get, change role, remove."""

import pytest

from gateway.models import Membership
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_add_returns_201_with_fixed_fields_when_user_is_given_by_username(api, member):
    project = ProjectFactory()

    response = api.post(f"/projects/{project.id}/members", {"user": "dev", "role": "owner"})

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "project", "user", "username", "role"}
    assert (body["project"], body["user"], body["username"], body["role"]) == (project.id, member.id, "dev", "owner")


def test_add_defaults_to_member_role_when_user_is_given_by_id(api, member):
    project = ProjectFactory()

    response = api.post(f"/projects/{project.id}/members", {"user": member.id})

    assert response.status_code == 201
    assert response.json()["role"] == "member"
    assert response.json()["user"] == member.id


def test_add_returns_400_naming_the_user_when_user_is_unknown(api):
    project = ProjectFactory()

    response = api.post(f"/projects/{project.id}/members", {"user": "ghost"})

    assert response.status_code == 400
    assert response.json()["field"] == "user"
    assert "ghost" in response.json()["detail"]
    assert not Membership.objects.exists()


def test_add_returns_400_when_user_is_already_a_member(api, member):
    membership = MembershipFactory(user=member)

    response = api.post(f"/projects/{membership.project_id}/members", {"user": "dev"})

    assert response.status_code == 400
    assert response.json()["field"] == "user"
    assert "already a member" in response.json()["detail"]


def test_add_returns_422_naming_role_when_role_is_unknown(api, member):
    project = ProjectFactory()

    response = api.post(f"/projects/{project.id}/members", {"user": "dev", "role": "admin"})

    assert response.status_code == 422
    assert response.json()["field"] == "role"


def test_add_returns_404_when_project_is_unknown(api, member):
    assert api.post("/projects/999999/members", {"user": "dev"}).status_code == 404


def test_list_returns_the_project_members_only_when_other_projects_have_members(api, django_assert_max_num_queries):
    project = ProjectFactory()
    MembershipFactory(project=project, user=UserFactory(username="ann"))
    MembershipFactory(project=project, user=UserFactory(username="bob"))
    MembershipFactory()

    with django_assert_max_num_queries(4):
        response = api.get(f"/projects/{project.id}/members")

    assert response.status_code == 200
    assert [m["username"] for m in response.json()] == ["ann", "bob"]


def test_get_returns_the_membership_when_it_belongs_to_the_project(api):
    membership = MembershipFactory()

    response = api.get(f"/projects/{membership.project_id}/members/{membership.id}")

    assert response.status_code == 200
    assert response.json()["id"] == membership.id


def test_get_returns_404_when_membership_belongs_to_another_project(api):
    membership = MembershipFactory()
    other = ProjectFactory()

    response = api.get(f"/projects/{other.id}/members/{membership.id}")

    assert response.status_code == 404
    assert response.json() == {"detail": f"Membership {membership.id} not found."}


def test_patch_changes_the_role_when_role_is_valid(api):
    membership = MembershipFactory(role="member")

    response = api.patch(f"/projects/{membership.project_id}/members/{membership.id}", {"role": "owner"})

    assert response.status_code == 200
    assert response.json()["role"] == "owner"
    membership.refresh_from_db()
    assert membership.role == "owner"


def test_patch_returns_422_naming_role_when_role_is_missing(api):
    membership = MembershipFactory()

    response = api.patch(f"/projects/{membership.project_id}/members/{membership.id}", {})

    assert response.status_code == 422
    assert response.json()["field"] == "role"


def test_delete_returns_204_and_removes_the_membership_when_it_exists(api):
    membership = MembershipFactory()

    response = api.delete(f"/projects/{membership.project_id}/members/{membership.id}")

    assert response.status_code == 204
    assert not Membership.objects.filter(id=membership.id).exists()


def test_delete_returns_404_when_membership_is_unknown(api):
    project = ProjectFactory()

    assert api.delete(f"/projects/{project.id}/members/999999").status_code == 404
