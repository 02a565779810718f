"""/api/v1/models: public model names and their deployments."""

from decimal import Decimal

import pytest

from gateway import services
from gateway.errors import ValidationFailed
from gateway.models import Deployment, Model
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory

pytestmark = pytest.mark.django_db


def test_create_returns_201_with_deployments_and_their_ids_when_input_is_valid(api):
    first, second = ProviderFactory(), ProviderFactory()

    response = api.post(
        "/models",
        {
            "name": "gpt-4o",
            "description": "Flagship",
            "context_window": 128000,
            "deployments": [
                {"provider": first.id, "upstream_model": "gpt-4o-2024-08-06", "weight": 3},
                {"provider": second.id, "upstream_model": "gpt-4o", "weight": 1, "enabled": False},
            ],
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "name", "description", "context_window", "enabled", "deployments"}
    assert (body["name"], body["description"], body["context_window"], body["enabled"]) == (
        "gpt-4o",
        "Flagship",
        128000,
        True,
    )
    stored = list(Deployment.objects.filter(model_id=body["id"]).order_by("id"))
    defaults = {
        "priority": 0,
        "connect_timeout": None,
        "first_token_timeout": None,
        "idle_timeout": None,
        "total_timeout": None,
        "input_price": None,
        "output_price": None,
        "cached_input_price": None,
    }
    assert body["deployments"] == [
        {"id": stored[0].id, "provider": first.id, "upstream_model": "gpt-4o-2024-08-06", "weight": 3, "enabled": True}
        | defaults,
        {"id": stored[1].id, "provider": second.id, "upstream_model": "gpt-4o", "weight": 1, "enabled": False}
        | defaults,
    ]


def test_create_returns_400_naming_deployments_when_a_provider_is_unknown(api):
    response = api.post("/models", {"name": "m", "deployments": [{"provider": 999999, "upstream_model": "x"}]})

    assert response.status_code == 400
    assert response.json()["field"] == "deployments"
    assert "999999" in response.json()["detail"]
    assert not Model.objects.exists()


def test_create_returns_400_naming_deployments_when_there_are_none(api):
    response = api.post("/models", {"name": "m", "deployments": []})

    assert response.status_code == 400
    assert response.json()["field"] == "deployments"
    assert not Model.objects.exists()


def test_create_returns_422_naming_the_weight_when_weight_is_negative(api):
    provider = ProviderFactory()

    response = api.post(
        "/models", {"name": "m", "deployments": [{"provider": provider.id, "upstream_model": "x", "weight": -1}]}
    )

    assert response.status_code == 422
    assert response.json()["field"] == "deployments.0.weight"


@pytest.mark.parametrize("sent", [float("inf"), float("nan"), 1e308, 86_401, 0, -1])
def test_create_returns_422_naming_the_timeout_when_it_is_not_a_sane_number_of_seconds(api, sent):
    provider = ProviderFactory()
    deployment = {"provider": provider.id, "upstream_model": "x", "total_timeout": sent}

    response = api.post("/models", {"name": "m", "deployments": [deployment]})

    assert response.status_code == 422, response.content
    assert response.json()["field"] == "deployments.0.total_timeout"
    assert not Model.objects.exists()


@pytest.mark.parametrize("sent", [float("inf"), 1e308])
def test_the_service_refuses_an_endless_timeout_for_the_admin_too(db, sent):
    with pytest.raises(ValidationFailed, match="at most 86,400 seconds"):
        services.create_model(
            name="m",
            deployments=[services.DeploymentSpec(provider=ProviderFactory(), upstream_model="x", idle_timeout=sent)],
        )


def test_create_returns_422_naming_deployments_when_they_are_missing(api):
    response = api.post("/models", {"name": "m"})

    assert response.status_code == 422
    assert response.json()["field"] == "deployments"


def test_create_returns_400_naming_name_when_name_has_forbidden_characters(api):
    provider = ProviderFactory()

    response = api.post(
        "/models", {"name": "has space", "deployments": [{"provider": provider.id, "upstream_model": "x"}]}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "name"


def test_create_returns_400_naming_name_when_name_is_taken(api):
    deployment = DeploymentFactory(model=ModelFactory(name="gpt-4o"))

    response = api.post(
        "/models", {"name": "gpt-4o", "deployments": [{"provider": deployment.provider_id, "upstream_model": "x"}]}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "name"


def test_list_returns_models_with_deployments_in_bounded_queries_when_several_exist(api, django_assert_max_num_queries):
    for name in ("b", "a", "c"):
        DeploymentFactory(model=ModelFactory(name=name))

    with django_assert_max_num_queries(4):
        response = api.get("/models")

    assert response.status_code == 200
    assert [m["name"] for m in response.json()] == ["a", "b", "c"]
    assert all(len(m["deployments"]) == 1 for m in response.json())


def test_get_returns_the_model_when_id_exists(api):
    deployment = DeploymentFactory(upstream_model="up", weight=2, priority=1, idle_timeout=30.0)

    response = api.get(f"/models/{deployment.model_id}")

    assert response.status_code == 200
    assert response.json()["deployments"] == [
        {
            "id": deployment.id,
            "provider": deployment.provider_id,
            "upstream_model": "up",
            "weight": 2,
            "priority": 1,
            "enabled": True,
            "connect_timeout": None,
            "first_token_timeout": None,
            "idle_timeout": 30.0,
            "total_timeout": None,
            "input_price": None,
            "output_price": None,
            "cached_input_price": None,
        }
    ]


def test_get_returns_404_when_id_is_unknown(api):
    response = api.get("/models/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "Model 999999 not found."}


def test_patch_changes_fields_and_keeps_deployments_when_deployments_are_omitted(api):
    deployment = DeploymentFactory()

    response = api.patch(
        f"/models/{deployment.model_id}", {"description": "new", "enabled": False, "context_window": 8192}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["description"], body["enabled"], body["context_window"]) == ("new", False, 8192)
    assert [d["id"] for d in body["deployments"]] == [deployment.id]


def test_patch_replaces_every_deployment_when_deployments_are_given(api):
    deployment = DeploymentFactory()
    other = ProviderFactory()

    response = api.patch(
        f"/models/{deployment.model_id}", {"deployments": [{"provider": other.id, "upstream_model": "new"}]}
    )

    assert response.status_code == 200
    assert [(d["provider"], d["upstream_model"]) for d in response.json()["deployments"]] == [(other.id, "new")]
    assert not Deployment.objects.filter(id=deployment.id).exists()


def test_patch_returns_422_naming_name_when_name_is_sent(api):
    deployment = DeploymentFactory()

    response = api.patch(f"/models/{deployment.model_id}", {"name": "renamed"})

    assert response.status_code == 422
    assert response.json()["field"] == "name"


def test_delete_returns_204_and_removes_model_and_deployments_when_model_exists(api):
    deployment = DeploymentFactory()

    assert api.delete(f"/models/{deployment.model_id}").status_code == 204
    assert not Model.objects.filter(id=deployment.model_id).exists()
    assert not Deployment.objects.filter(id=deployment.id).exists()


def test_delete_returns_404_when_id_is_unknown(api):
    assert api.delete("/models/999999").status_code == 404


def test_patch_keeps_deployment_id_when_provider_and_upstream_model_are_unchanged(api):
    deployment = DeploymentFactory(upstream_model="same", weight=1)

    response = api.patch(
        f"/models/{deployment.model_id}",
        {"deployments": [{"provider": deployment.provider_id, "upstream_model": "same", "weight": 5, "priority": 2}]},
    )

    assert response.status_code == 200
    assert [(d["id"], d["weight"], d["priority"]) for d in response.json()["deployments"]] == [(deployment.id, 5, 2)]


def test_fallbacks_round_trip_and_unknown_names_are_refused(api):
    DeploymentFactory(model__name="backup")
    deployment = DeploymentFactory(model__name="primary")

    ok = api.patch(f"/models/{deployment.model_id}", {"fallbacks": ["backup"]})
    unknown = api.patch(f"/models/{deployment.model_id}", {"fallbacks": ["nope"]})
    itself = api.patch(f"/models/{deployment.model_id}", {"fallbacks": ["primary"]})

    assert ok.json()["fallbacks"] == ["backup"]
    assert (unknown.status_code, unknown.json()["field"]) == (400, "fallbacks")
    assert "nope" in unknown.json()["detail"]
    assert itself.status_code == 400


def test_patch_clears_context_window_when_null_is_sent_and_keeps_it_when_omitted(api):
    deployment = DeploymentFactory(model__context_window=8000)

    kept = api.patch(f"/models/{deployment.model_id}", {"description": "x"}).json()
    cleared = api.patch(f"/models/{deployment.model_id}", {"context_window": None}).json()

    assert (kept["context_window"], cleared["context_window"]) == (8000, None)


def test_prices_are_decimal_strings_per_million_tokens(api):
    provider = ProviderFactory()

    body = api.post(
        "/models",
        {
            "name": "priced",
            "deployments": [
                {
                    "provider": provider.id,
                    "upstream_model": "gpt-4o",
                    "input_price": "2.50",
                    "output_price": "10",
                    "cached_input_price": "1.25",
                }
            ],
        },
    ).json()

    [deployment] = body["deployments"]
    assert (deployment["input_price"], deployment["output_price"], deployment["cached_input_price"]) == (
        "2.5",
        "10",
        "1.25",
    )


def test_negative_price_is_refused_naming_the_field(api):
    provider = ProviderFactory()

    response = api.post(
        "/models",
        {"name": "m", "deployments": [{"provider": provider.id, "upstream_model": "x", "input_price": "-1"}]},
    )

    assert response.status_code == 422
    assert response.json()["field"] == "deployments.0.input_price"


HOSTILE_PRICES = [
    pytest.param(2.47e38, id="float-2.47e38"),
    pytest.param("1e30", id="string-1e30"),
    pytest.param("1000000", id="one-past-the-column"),
    pytest.param("0.0000001", id="seven-places"),
    pytest.param(float("nan"), id="NaN-literal"),
    pytest.param(float("inf"), id="Infinity-literal"),
    pytest.param(float("-inf"), id="minus-Infinity-literal"),
    pytest.param("NaN", id="string-NaN"),
    pytest.param("-1", id="negative"),
    pytest.param(True, id="true"),
    pytest.param("abc", id="not-a-number"),
    pytest.param("5_0", id="underscore"),
]


@pytest.mark.parametrize("price", ["input_price", "output_price", "cached_input_price"])
@pytest.mark.parametrize("sent", HOSTILE_PRICES)
def test_create_returns_422_naming_the_price_and_its_range_when_a_price_is_hostile(api, price, sent):
    provider = ProviderFactory()

    response = api.post(
        "/models", {"name": "m", "deployments": [{"provider": provider.id, "upstream_model": "x", price: sent}]}
    )

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == f"deployments.0.{price}"
    assert f"deployments.0.{price}: must be a decimal number from 0 to 999999.999999" in body["detail"]
    assert "at most 6 decimal places" in body["detail"]
    assert not Model.objects.exists()


@pytest.mark.parametrize("sent", HOSTILE_PRICES)
def test_patch_returns_422_naming_the_price_when_a_replacement_deployment_has_a_hostile_price(api, sent):
    deployment = DeploymentFactory(input_price=Decimal("2.50"))

    response = api.patch(
        f"/models/{deployment.model_id}",
        {"deployments": [{"provider": deployment.provider_id, "upstream_model": "x", "input_price": sent}]},
    )

    assert (response.status_code, response.json()["field"]) == (422, "deployments.0.input_price")
    assert list(Deployment.objects.values_list("input_price", flat=True)) == [Decimal("2.50")]


@pytest.mark.parametrize(("sent", "answered"), [("1e2", "100"), (1e2, "100"), ("999999.999999", "999999.999999")])
def test_create_stores_the_price_when_it_is_in_exponent_form_or_at_the_top_of_the_range(api, sent, answered):
    provider = ProviderFactory()

    response = api.post(
        "/models", {"name": "m", "deployments": [{"provider": provider.id, "upstream_model": "x", "input_price": sent}]}
    )

    assert response.status_code == 201
    assert response.json()["deployments"][0]["input_price"] == answered
