"""The OpenAPI document and the Swagger UI page, served without any CDN."""

import re

import pytest

pytestmark = pytest.mark.django_db

FIXED_PATHS = {
    "/api/v1/business-units",
    "/api/v1/business-units/{unit_id}",
    "/api/v1/projects",
    "/api/v1/projects/{project_id}",
    "/api/v1/projects/{project_id}/members",
    "/api/v1/projects/{project_id}/members/{membership_id}",
    "/api/v1/projects/{project_id}/keys",
    "/api/v1/providers",
    "/api/v1/providers/{provider_id}",
    "/api/v1/models",
    "/api/v1/models/{model_id}",
    "/api/v1/keys/{key_id}",
    "/api/v1/keys/{key_id}/revoke",
}


def test_openapi_lists_every_resource_path_when_fetched_without_token(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert set(schema["paths"]) >= FIXED_PATHS
    assert schema["components"]["securitySchemes"]["AdminTokenAuth"]["scheme"] == "bearer"


def test_openapi_marks_provider_api_key_write_only_when_fetched(client):
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]

    assert "api_key" in schema["ProviderIn"]["properties"]
    assert "api_key" not in schema["ProviderOut"]["properties"]
    assert "has_api_key" in schema["ProviderOut"]["properties"]


def test_docs_page_loads_swagger_from_local_static_when_fetched(client):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the docs page must not load from a CDN"


def test_swagger_assets_are_served_when_docs_page_asks_for_them(client):
    for asset in ("swagger-ui-bundle.js", "swagger-ui-init.js", "swagger-ui.css"):
        response = client.get(f"/static/ninja/{asset}")

        assert response.status_code == 200, asset
