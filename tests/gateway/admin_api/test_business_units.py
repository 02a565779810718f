"""/api/v1/business-units: create, list, get, patch, delete."""

import pytest

from gateway.models import BusinessUnit
from tests.factories import BusinessUnitFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_create_returns_201_with_fixed_fields_when_name_is_new(api):
    response = api.post("/business-units", {"name": "  Retail  "})

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "name", "created_at"}
    assert body["name"] == "Retail"
    assert BusinessUnit.objects.get(id=body["id"]).name == "Retail"


def test_list_returns_every_unit_by_name_when_several_exist(api, django_assert_max_num_queries):
    BusinessUnitFactory(name="B")
    BusinessUnitFactory(name="A")

    with django_assert_max_num_queries(3):
        response = api.get("/business-units")

    assert response.status_code == 200
    assert [u["name"] for u in response.json()] == ["A", "B"]


def test_get_returns_the_unit_when_id_exists(api):
    unit = BusinessUnitFactory(name="Retail")

    response = api.get(f"/business-units/{unit.id}")

    assert response.status_code == 200
    assert response.json()["id"] == unit.id
    assert response.json()["name"] == "Retail"


def test_get_returns_404_with_detail_when_id_is_unknown(api):
    response = api.get("/business-units/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "Business unit 999999 not found."}


def test_patch_renames_when_name_is_given(api):
    unit = BusinessUnitFactory(name="Old")

    response = api.patch(f"/business-units/{unit.id}", {"name": "New"})

    assert response.status_code == 200
    assert response.json()["name"] == "New"
    unit.refresh_from_db()
    assert unit.name == "New"


def test_patch_returns_404_when_id_is_unknown(api):
    assert api.patch("/business-units/999999", {"name": "x"}).status_code == 404


def test_delete_returns_204_and_removes_when_unit_has_no_projects(api):
    unit = BusinessUnitFactory()

    response = api.delete(f"/business-units/{unit.id}")

    assert response.status_code == 204
    assert api.get(f"/business-units/{unit.id}").status_code == 404


def test_delete_is_refused_with_message_when_unit_still_has_projects(api):
    project = ProjectFactory()

    response = api.delete(f"/business-units/{project.business_unit_id}")

    assert response.status_code == 400
    assert "still has projects" in response.json()["detail"]
    assert BusinessUnit.objects.filter(id=project.business_unit_id).exists()


def test_create_returns_400_naming_name_when_name_is_taken(api):
    BusinessUnitFactory(name="Retail")

    response = api.post("/business-units", {"name": "Retail"})

    assert response.status_code == 400
    assert response.json()["field"] == "name"
    assert "already exists" in response.json()["detail"]


def test_create_returns_400_naming_name_when_name_is_blank(api):
    response = api.post("/business-units", {"name": "   "})

    assert response.status_code == 400
    assert response.json()["field"] == "name"


def test_create_returns_422_naming_name_when_name_is_missing(api):
    response = api.post("/business-units", {})

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "name"
    assert "name" in body["detail"]
    assert body["errors"][0]["field"] == "name"


def test_create_returns_422_naming_field_when_field_is_unknown(api):
    response = api.post("/business-units", {"name": "Retail", "colour": "red"})

    assert response.status_code == 422
    assert response.json()["field"] == "colour"


def test_create_returns_400_when_body_is_not_json(api):
    response = api.client.post("/api/v1/business-units", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"]


def test_create_returns_422_when_body_is_not_an_object(api):
    response = api.client.post("/api/v1/business-units", "[]", content_type="application/json")

    assert response.status_code == 422
    assert response.json()["detail"].startswith("Invalid input: body:")


def test_create_returns_422_naming_name_when_name_contains_a_nul_character(api):
    response = api.post("/business-units", {"name": "Re\x00tail"})

    assert response.status_code == 422
    assert response.json()["field"] == "name"
    assert "NUL" in response.json()["detail"]
    assert not BusinessUnit.objects.exists()


def test_get_returns_404_when_id_is_beyond_any_database_integer(api):
    assert api.get(f"/business-units/{10**30}").status_code == 404
