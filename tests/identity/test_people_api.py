"""/api/v1/users, /api/v1/role-mappings and /api/v1/business-units/{id}/managers."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from gateway.models import RoleMapping
from tests.factories import BusinessUnitFactory, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


# --- users ---


def test_create_user_without_password_for_single_sign_on(api, settings) -> None:
    settings.LOCAL_LOGIN = False
    response = api.post("/users", {"username": "dana", "email": "dana@corp.example"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["username"] == "dana" and body["has_password"] is False and body["sso_linked"] is False
    assert body["roles"] == [{"role": "developer", "business_unit": None, "source": "manual"}]


def test_create_user_with_password_where_local_login_is_on(api, settings) -> None:
    settings.LOCAL_LOGIN = True
    response = api.post("/users", {"username": "erin", "email": "erin@corp.example", "password": "long enough 42!"})
    assert response.status_code == 201 and response.json()["has_password"] is True
    assert User.objects.get(username="erin").check_password("long enough 42!")


def test_password_is_refused_where_local_login_is_off(api, settings) -> None:
    settings.LOCAL_LOGIN = False
    response = api.post("/users", {"username": "finn", "email": "finn@corp.example", "password": "long enough 42!"})
    assert response.status_code == 400 and response.json()["field"] == "password"
    assert "LOCAL_LOGIN" in response.json()["detail"] and not User.objects.filter(username="finn").exists()


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"username": "", "email": "a@b.example"}, "username", 400),
        ({"username": "has space", "email": "a@b.example"}, "username", 400),
        ({"username": "x" * 151, "email": "a@b.example"}, "username", 400),
        ({"username": "ok", "email": "not-an-email"}, "email", 400),
        ({"username": "ok", "email": "a@b.example", "password": "123"}, "password", 400),
        ({"username": "ok"}, "email", 422),
        ({"username": "ok", "email": "a@b.example", "admin": True}, "admin", 422),
        ({"username": 5, "email": "a@b.example"}, "username", 422),
    ],
)
def test_create_user_refuses_bad_input_naming_the_field(api, settings, body, field, status) -> None:
    settings.LOCAL_LOGIN = True
    response = api.post("/users", body)
    assert response.status_code == status and response.json()["field"] == field


def test_create_user_refuses_a_taken_username_or_email(api) -> None:
    UserFactory(username="gail", email="gail@corp.example")
    assert api.post("/users", {"username": "GAIL", "email": "new@corp.example"}).json()["field"] == "username"
    assert api.post("/users", {"username": "new", "email": "Gail@corp.example"}).json()["field"] == "email"


def test_list_users_with_their_roles(api, admin_user, django_assert_max_num_queries) -> None:
    unit = BusinessUnitFactory()
    manager = UserFactory(username="mgr")
    unit.managers.add(manager)
    UserFactory.create_batch(5)
    with django_assert_max_num_queries(8):
        users = {u["username"]: u for u in api.get("/users").json()}
    assert [r["role"] for r in users["root"]["roles"]] == ["admin", "developer"]
    assert users["mgr"]["roles"][0] == {"role": "manager", "business_unit": unit.id, "source": "manual"}


def test_people_endpoints_need_the_admin_token(anonymous) -> None:
    for method, path in [("get", "/users"), ("post", "/users"), ("get", "/role-mappings"), ("post", "/role-mappings")]:
        assert getattr(anonymous, method)(path).status_code == 401
    assert anonymous.delete("/role-mappings/1").status_code == 401
    assert anonymous.post("/business-units/1/managers", {"user": 1}).status_code == 401
    assert anonymous.delete("/business-units/1/managers/1").status_code == 401


# --- role mappings ---


def test_create_list_and_delete_role_mappings(api) -> None:
    unit = BusinessUnitFactory()
    admin = api.post("/role-mappings", {"group": "gw-admins", "role": "admin", "business_unit": None})
    manager = api.post("/role-mappings", {"group": "retail", "role": "manager", "business_unit": unit.id})
    assert admin.status_code == 201 and manager.status_code == 201
    assert manager.json()["business_unit"] == unit.id
    listed = api.get("/role-mappings").json()
    assert [(m["group"], m["role"]) for m in listed] == [("gw-admins", "admin"), ("retail", "manager")]
    assert api.delete(f"/role-mappings/{admin.json()['id']}").status_code == 204
    assert api.delete(f"/role-mappings/{admin.json()['id']}").status_code == 404
    assert list(RoleMapping.objects.values_list("group", flat=True)) == ["retail"]


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"group": "g", "role": "manager", "business_unit": None}, "business_unit", 400),
        ({"group": "g", "role": "admin", "business_unit": "UNIT"}, "business_unit", 400),
        ({"group": "g", "role": "developer", "business_unit": "UNIT"}, "business_unit", 400),
        ({"group": "g", "role": "manager", "business_unit": 999999}, "business_unit", 400),
        ({"group": " ", "role": "admin"}, "group", 400),
        ({"group": "g" * 256, "role": "admin"}, "group", 400),
        ({"group": "g", "role": "owner"}, "role", 422),
        ({"role": "admin"}, "group", 422),
        ({"group": "g\x00", "role": "admin"}, "group", 422),
    ],
)
def test_create_role_mapping_refuses_bad_input_naming_the_field(api, body, field, status) -> None:
    unit = BusinessUnitFactory()
    body = {k: unit.id if v == "UNIT" else v for k, v in body.items()}
    response = api.post("/role-mappings", body)
    assert response.status_code == status, response.json()
    assert response.json()["field"] == field


def test_a_duplicate_role_mapping_is_refused(api) -> None:
    api.post("/role-mappings", {"group": "g", "role": "developer"})
    response = api.post("/role-mappings", {"group": "g", "role": "developer"})
    assert response.status_code == 400 and "exists" in response.json()["detail"]


# --- business-unit managers ---


def test_add_and_remove_a_manager_by_username_or_id(api) -> None:
    unit = BusinessUnitFactory()
    hana = UserFactory(username="hana")
    response = api.post(f"/business-units/{unit.id}/managers", {"user": "hana"})
    assert response.status_code == 200 and response.json() == {"business_unit": unit.id, "managers": ["hana"]}
    assert (
        api.client.delete(
            f"/api/v1/business-units/{unit.id}/managers", f'{{"user": {hana.id}}}', content_type="application/json"
        ).status_code
        == 204
    )
    assert not unit.managers.exists()
    api.post(f"/business-units/{unit.id}/managers", {"user": hana.id})
    assert api.delete(f"/business-units/{unit.id}/managers/hana").status_code == 204
    api.post(f"/business-units/{unit.id}/managers", {"user": hana.id})
    assert api.delete(f"/business-units/{unit.id}/managers/{hana.id}").status_code == 204
    assert api.get(f"/business-units/{unit.id}/managers").json()["managers"] == []


def test_manager_endpoints_refuse_unknown_users_units_and_non_managers(api) -> None:
    unit = BusinessUnitFactory()
    UserFactory(username="ivan")
    assert api.post("/business-units/999999/managers", {"user": "ivan"}).status_code == 404
    unknown = api.post(f"/business-units/{unit.id}/managers", {"user": "nobody"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "user"
    assert api.post(f"/business-units/{unit.id}/managers", {}).status_code == 422
    not_manager = api.delete(f"/business-units/{unit.id}/managers/ivan")
    assert not_manager.status_code == 400 and "not a manager" in not_manager.json()["detail"]


def test_openapi_lists_the_people_endpoints(api) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/users"])
    assert {"get", "post"} <= set(paths["/api/v1/role-mappings"])
    assert "delete" in paths["/api/v1/role-mappings/{mapping_id}"]
    assert {"post", "delete"} <= set(paths["/api/v1/business-units/{unit_id}/managers"])
    assert "delete" in paths["/api/v1/business-units/{unit_id}/managers/{user}"]
