"""The OpenAPI document and the Swagger UI page, served without any CDN.

The document lists the errors each operation really answers, with the body the API really sends:
every operation is called here without a token, and every one that reads input with malformed
input, and each answer is checked against what the document says.
"""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

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


# --- the errors each operation answers ---

ERROR_SCHEMAS = {"#/components/schemas/ErrorOut", "#/components/schemas/ValidationErrorOut"}
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
    "array": list,
    "object": dict,
}


@pytest.fixture
def document(client: Client) -> dict[str, Any]:
    return client.get("/api/v1/openapi.json").json()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _problems(document: dict[str, Any], node: dict[str, Any], value: Any, at: str = "body") -> list[str]:
    """Where VALUE breaks the JSON schema NODE (the subset the API's documents use), including
    properties the schema does not document."""
    if "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        fits = any(not _problems(document, option, value, at) for option in node["anyOf"])
        return [] if fits else [f"{at}: {value!r} fits none of {node['anyOf']}"]
    kind = node.get("type")
    if kind and (not isinstance(value, JSON_TYPES[kind]) or (isinstance(value, bool) and kind != "boolean")):
        return [f"{at}: {value!r} is not {kind}"]
    problems = []
    if kind == "object":
        properties = node.get("properties", {})
        problems += [f"{at}.{name}: missing" for name in node.get("required", []) if name not in value]
        problems += [f"{at}.{name}: not documented" for name in value if name not in properties]
        for name, schema in properties.items():
            if name in value:
                problems += _problems(document, schema, value[name], f"{at}.{name}")
    if kind == "array":
        for index, item in enumerate(value):
            problems += _problems(document, node.get("items", {}), item, f"{at}.{index}")
    return problems


def _documented_body(operation: dict[str, Any], status: int) -> dict[str, Any]:
    return operation["responses"][str(status)]["content"]["application/json"]["schema"]


def _malformed(path: str, operation: dict[str, Any]) -> tuple[str, str] | None:
    """A URL and body the operation must refuse with 422, or None when it reads nothing that can be malformed."""
    parameters = operation.get("parameters", [])
    if any(p["in"] == "path" and p["schema"].get("type") == "integer" for p in parameters):
        return re.sub(r"{\w+}", "abc", path), "{}"
    url = re.sub(r"{\w+}", "1", path)
    if operation.get("requestBody"):
        return url, '"not an object"'
    numeric = [p["name"] for p in parameters if p["in"] == "query" and '"integer"' in json.dumps(p["schema"])]
    return (f"{url}?{numeric[0]}=abc", "") if numeric else None


def test_openapi_lists_401_with_the_error_body_for_every_operation_when_fetched(document):
    operations = list(_operations(document))

    missing = [f"{m} {p}" for m, p, op in operations if _documented_body(op, 401).get("$ref") not in ERROR_SCHEMAS]
    assert not missing
    assert len(operations) > 50


def test_openapi_lists_422_with_the_validation_error_body_for_every_operation_that_takes_input_when_fetched(
    document,
):
    takes_input = [(m, p, op) for m, p, op in _operations(document) if _malformed(p, op) is not None]

    missing = [f"{m} {p}" for m, p, op in takes_input if "422" not in op["responses"]]
    assert not missing
    assert all(
        _documented_body(op, 422) == {"$ref": "#/components/schemas/ValidationErrorOut"} for _, _, op in takes_input
    )
    assert len(takes_input) > 40


def test_openapi_lists_400_for_every_operation_with_a_body_when_fetched(document):
    with_body = [(m, p, op) for m, p, op in _operations(document) if op.get("requestBody")]

    assert not [f"{m} {p}" for m, p, op in with_body if "400" not in op["responses"]]
    assert with_body


def test_openapi_documents_every_error_answer_with_an_error_body_when_fetched(document):
    for method, path, operation in _operations(document):
        for status in operation["responses"]:
            if int(status) >= 400:
                assert _documented_body(operation, int(status))["$ref"] in ERROR_SCHEMAS, (method, path, status)


def test_every_operation_answers_401_with_the_documented_body_when_no_token_is_sent(client, document):
    for method, path, operation in _operations(document):
        url = re.sub(r"{\w+}", "1", path)

        response = client.generic(method.upper(), url, "{}", content_type="application/json")

        assert response.status_code == 401, (method, path)
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
        assert _problems(document, _documented_body(operation, 401), response.json()) == [], (method, path)


def test_every_operation_that_takes_input_answers_422_with_the_documented_body_when_input_is_malformed(api, document):
    checked = 0
    for method, path, operation in _operations(document):
        if (malformed := _malformed(path, operation)) is None:
            continue
        url, body = malformed

        response = api.client.generic(method.upper(), url, body, content_type="application/json")

        assert response.status_code == 422, (method, url, response.content)
        assert "422" in operation["responses"], (method, path)
        assert _problems(document, _documented_body(operation, 422), response.json()) == [], (method, path)
        checked += 1
    assert checked > 40


def test_body_check_finds_a_problem_when_the_body_breaks_the_documented_schema(document):
    schema = {"$ref": "#/components/schemas/ValidationErrorOut"}
    body = {"detail": "x", "field": None, "errors": [{"field": 1, "msg": "m", "type": None, "loc": []}], "extra": 1}

    assert _problems(document, schema, body) == [
        "body.extra: not documented",
        "body.errors.0.field: 1 fits none of [{'type': 'string'}, {'type': 'null'}]",
    ]
