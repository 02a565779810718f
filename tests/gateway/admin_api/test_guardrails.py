"""PUT/GET /api/v1/projects/{id}/guardrails and /api/v1/guardrails: policies, the floor applied."""

from __future__ import annotations

import json

import pytest

from gateway import services
from gateway.guardrail_policy import DEFAULT_FLOOR
from tests.factories import BusinessUnitFactory

FIXED_POINT = {
    "input": {"pii": "redact", "secrets": "block", "prompt_injection": "flag", "denylist": "block"},
    "output": {"pii": "redact", "secrets": "block"},
    "denylist": ["term", "re:regex"],
    "restore_redactions": False,
    "denied_betas": ["files-api-2025-04-14", "web-search-*"],
}


def _put(api, path, body):
    return api.client.put("/api/v1" + path, json.dumps(body), content_type="application/json")


@pytest.fixture
def project(db):  # type: ignore[no-untyped-def]
    return services.create_project(name="Shop", business_unit=BusinessUnitFactory())


def test_put_the_documented_policy_and_get_it_back_as_the_effective_one(api, project):
    response = _put(api, f"/projects/{project.id}/guardrails", FIXED_POINT)

    assert response.status_code == 200
    body = api.get(f"/projects/{project.id}/guardrails").json()
    assert body["input"] == FIXED_POINT["input"]
    assert body["output"] == FIXED_POINT["output"]
    assert (body["denylist"], body["restore_redactions"]) == (FIXED_POINT["denylist"], False)
    extras = {"max_input_tokens": None, "classifier_model": None, "classifier_kind": "moderation"}
    assert body["own"] == FIXED_POINT | extras and body["raised_to_floor"] == []


def test_denied_betas_of_the_organisation_and_the_project_add_up(api, project):
    assert _put(api, "/guardrails", {"denied_betas": ["files-api-*"]}).status_code == 200

    body = _put(api, f"/projects/{project.id}/guardrails", {"denied_betas": ["web-search-*"]}).json()

    assert body["denied_betas"] == ["files-api-*", "web-search-*"]
    assert api.get("/guardrails").json()["denied_betas"] == ["files-api-*"]


def test_a_project_without_a_policy_gets_the_organisations(api, project):
    body = api.get(f"/projects/{project.id}/guardrails").json()

    assert body["input"] == DEFAULT_FLOOR.input and body["own"] is None


def test_a_looser_project_setting_is_raised_to_the_floor_and_says_so(api, project):
    assert _put(api, "/guardrails", {"input": {"secrets": "block"}, "output": {}}).status_code == 200

    body = _put(api, f"/projects/{project.id}/guardrails", {"input": {"secrets": "flag", "pii": "redact"}}).json()

    assert body["input"] == {"secrets": "block", "pii": "redact"}
    assert body["own"]["input"]["secrets"] == "flag"
    assert body["raised_to_floor"] == ["input.secrets: flag is raised to the organisation's block"]


def test_deleting_a_projects_policy_falls_back_to_the_floor(api, project):
    _put(api, f"/projects/{project.id}/guardrails", FIXED_POINT)

    body = api.delete(f"/projects/{project.id}/guardrails").json()

    assert body["own"] is None and body["input"] == DEFAULT_FLOOR.input


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": {"pii": "destroy"}}, "input"),
        ({"output": {"prompt_injection": "block"}}, "output"),
        ({"denied_betas": ["files api"]}, "denied_betas"),
        ({"denylist": ["re:(a+)+$"]}, "denylist"),
        ({"restore_redactions": "sometimes"}, "restore_redactions"),
    ],
)
def test_bad_policies_get_400_naming_the_field(api, project, body, field):
    response = _put(api, f"/projects/{project.id}/guardrails", body)

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_unknown_project_is_404_and_no_token_is_401(api, anonymous, project):
    assert api.get("/projects/999999/guardrails").status_code == 404
    assert anonymous.get(f"/projects/{project.id}/guardrails").status_code == 401
