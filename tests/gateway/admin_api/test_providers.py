"""/api/v1/providers: create, list, get, patch, delete. The API key goes in and never comes out."""

import pytest

from gateway import crypto
from gateway.models import Provider
from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db

SECRET = "sk-provider-secret-0123456789"


def _create(api, **overrides):
    body = {
        "name": "openai-main",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key": SECRET,
        "approved": True,
    }
    return api.post("/providers", {**body, **overrides})


def test_create_returns_201_with_has_api_key_and_never_the_key_when_key_is_given(api):
    response = _create(api)

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "name", "kind", "base_url", "approved", "has_api_key"}
    assert "api_key" not in body
    assert (body["name"], body["kind"], body["approved"], body["has_api_key"]) == ("openai-main", "openai", True, True)
    assert SECRET not in response.content.decode()


def test_key_is_stored_encrypted_when_provider_is_created(api):
    provider_id = _create(api).json()["id"]

    stored = Provider.objects.get(id=provider_id).api_key_encrypted
    assert SECRET not in stored
    assert crypto.decrypt_secret(stored, what="test") == SECRET


def test_no_response_contains_the_key_when_provider_is_listed_read_and_changed(api):
    provider_id = _create(api).json()["id"]

    responses = [
        api.get("/providers"),
        api.get(f"/providers/{provider_id}"),
        api.patch(f"/providers/{provider_id}", {"approved": False}),
        api.patch(f"/providers/{provider_id}", {"api_key": SECRET + "-new"}),
    ]

    for response in responses:
        assert response.status_code == 200
        assert SECRET not in response.content.decode()
        assert "api_key_encrypted" not in response.content.decode()
        assert '"api_key"' not in response.content.decode()


def test_error_response_does_not_echo_the_key_when_input_is_invalid(api):
    missing_name = api.post("/providers", {"kind": "openai", "api_key": SECRET})
    bad_kind = _create(api, kind="nope")
    taken = [_create(api), _create(api)][1]

    for response in (missing_name, bad_kind, taken):
        assert 400 <= response.status_code < 500
        assert SECRET not in response.content.decode()


def test_create_allows_no_key_when_api_key_is_omitted(api):
    response = api.post(
        "/providers", {"name": "local", "kind": "openai_compatible", "base_url": "http://127.0.0.1:8000/v1"}
    )

    assert response.status_code == 201
    assert response.json()["has_api_key"] is False
    assert response.json()["approved"] is False


def test_create_returns_422_naming_kind_when_kind_is_unknown(api):
    response = _create(api, kind="nope")

    assert response.status_code == 422
    assert response.json()["field"] == "kind"


def test_create_returns_400_naming_base_url_when_compatible_provider_has_none(api):
    response = _create(api, kind="openai_compatible", base_url="")

    assert response.status_code == 400
    assert response.json()["field"] == "base_url"


def test_create_returns_400_naming_base_url_when_it_is_not_a_url(api):
    response = _create(api, base_url="not a url")

    assert response.status_code == 400
    assert response.json()["field"] == "base_url"


def test_create_returns_400_naming_name_when_name_is_taken(api):
    ProviderFactory(name="openai-main")

    response = _create(api)

    assert response.status_code == 400
    assert response.json()["field"] == "name"


def test_list_returns_every_provider_when_several_exist(api, django_assert_max_num_queries):
    ProviderFactory(name="b")
    ProviderFactory(name="a")

    with django_assert_max_num_queries(3):
        response = api.get("/providers")

    assert [p["name"] for p in response.json()] == ["a", "b"]
    assert all(p["has_api_key"] for p in response.json())


def test_get_returns_404_when_id_is_unknown(api):
    response = api.get("/providers/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "Provider 999999 not found."}


def test_patch_removes_the_key_when_api_key_is_empty(api):
    provider = ProviderFactory()

    response = api.patch(f"/providers/{provider.id}", {"api_key": ""})

    assert response.status_code == 200
    assert response.json()["has_api_key"] is False
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""


def test_patch_keeps_the_key_when_api_key_is_omitted(api):
    provider = ProviderFactory(approved=False)

    response = api.patch(f"/providers/{provider.id}", {"approved": True, "name": "renamed"})

    assert response.status_code == 200
    assert (response.json()["approved"], response.json()["name"], response.json()["has_api_key"]) == (
        True,
        "renamed",
        True,
    )


def test_patch_returns_422_naming_kind_when_kind_is_sent(api):
    provider = ProviderFactory()

    response = api.patch(f"/providers/{provider.id}", {"kind": "anthropic"})

    assert response.status_code == 422
    assert response.json()["field"] == "kind"


def test_delete_returns_204_when_provider_serves_no_deployment(api):
    provider = ProviderFactory()

    assert api.delete(f"/providers/{provider.id}").status_code == 204
    assert not Provider.objects.filter(id=provider.id).exists()


def test_delete_is_refused_with_message_when_provider_still_serves_deployments(api):
    deployment = DeploymentFactory()

    response = api.delete(f"/providers/{deployment.provider_id}")

    assert response.status_code == 400
    assert "deployments" in response.json()["detail"]
    assert Provider.objects.filter(id=deployment.provider_id).exists()
