"""/api/v1/projects: create, list, get, patch, delete."""

import pytest

from gateway.models import Project
from tests.factories import BusinessUnitFactory, ModelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_create_returns_201_with_fixed_fields_when_input_is_valid(api):
    unit = BusinessUnitFactory()
    ModelFactory(name="gpt-4o")
    ModelFactory(name="claude")

    response = api.post("/projects", {"name": "Shop", "business_unit": unit.id, "allowed_models": ["gpt-4o", "claude"]})

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "name", "business_unit", "allowed_models", "created_at"}
    assert body["name"] == "Shop"
    assert body["business_unit"] == unit.id
    assert sorted(body["allowed_models"]) == ["claude", "gpt-4o"]


def test_create_allows_no_models_when_allowed_models_is_omitted(api):
    response = api.post("/projects", {"name": "Shop", "business_unit": BusinessUnitFactory().id})

    assert response.status_code == 201
    assert response.json()["allowed_models"] == []


def test_create_returns_400_naming_business_unit_when_unit_is_unknown(api):
    response = api.post("/projects", {"name": "Shop", "business_unit": 999999})

    assert response.status_code == 400
    assert response.json() == {"detail": "Unknown business unit id: 999999", "field": "business_unit"}


def test_create_returns_400_naming_the_model_when_a_model_is_unknown(api):
    response = api.post(
        "/projects", {"name": "Shop", "business_unit": BusinessUnitFactory().id, "allowed_models": ["nope"]}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "allowed_models"
    assert "nope" in response.json()["detail"]
    assert not Project.objects.exists()


def test_create_returns_400_when_name_is_taken_in_the_same_unit(api):
    project = ProjectFactory(name="Shop")

    response = api.post("/projects", {"name": "Shop", "business_unit": project.business_unit_id})

    assert response.status_code == 400
    assert "already exists" in response.json()["detail"]


def test_create_returns_422_naming_business_unit_when_it_is_not_an_id(api):
    response = api.post("/projects", {"name": "Shop", "business_unit": "retail"})

    assert response.status_code == 422
    assert response.json()["field"] == "business_unit"


def test_list_returns_every_project_in_bounded_queries_when_several_exist(api, django_assert_max_num_queries):
    models = [ModelFactory(), ModelFactory()]
    for _ in range(5):
        ProjectFactory(allowed_models=models)

    with django_assert_max_num_queries(4):
        response = api.get("/projects")

    assert response.status_code == 200
    assert len(response.json()) == 5
    assert all(len(p["allowed_models"]) == 2 for p in response.json())


def test_get_returns_the_project_when_id_exists(api):
    project = ProjectFactory(name="Shop")

    response = api.get(f"/projects/{project.id}")

    assert response.status_code == 200
    assert response.json()["name"] == "Shop"
    assert response.json()["business_unit"] == project.business_unit_id


def test_get_returns_404_when_id_is_unknown(api):
    response = api.get("/projects/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "Project 999999 not found."}


def test_patch_changes_only_given_fields_when_some_are_given(api):
    project = ProjectFactory(name="Shop", allowed_models=[ModelFactory(name="a")])
    ModelFactory(name="b")
    other_unit = BusinessUnitFactory()

    response = api.patch(f"/projects/{project.id}", {"business_unit": other_unit.id, "allowed_models": ["b"]})

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Shop"
    assert body["business_unit"] == other_unit.id
    assert body["allowed_models"] == ["b"]


def test_patch_returns_400_naming_business_unit_when_unit_is_unknown(api):
    project = ProjectFactory()

    response = api.patch(f"/projects/{project.id}", {"business_unit": 999999})

    assert response.status_code == 400
    assert response.json()["field"] == "business_unit"


def test_delete_returns_204_and_removes_the_project_when_it_exists(api):
    project = ProjectFactory()

    assert api.delete(f"/projects/{project.id}").status_code == 204
    assert not Project.objects.filter(id=project.id).exists()


def test_delete_returns_404_when_id_is_unknown(api):
    assert api.delete("/projects/999999").status_code == 404
