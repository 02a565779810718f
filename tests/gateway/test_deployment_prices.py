"""Deployment prices set through gateway.services (as the admin, the price list and the API do):
a price that does not fit its column is refused naming it, never a 500 from the database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway import services
from gateway.errors import ValidationFailed
from gateway.models import Deployment, Model
from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db

TOO_BIG, NAN, NEGATIVE, SEVEN_PLACES = Decimal("1E+30"), Decimal("NaN"), Decimal("-1"), Decimal("0.0000001")


@pytest.mark.parametrize("price", ["input_price", "output_price", "cached_input_price"])
@pytest.mark.parametrize("sent", [TOO_BIG, NAN, NEGATIVE, SEVEN_PLACES, "1e30", True])
def test_set_deployment_prices_refuses_naming_the_price_when_it_does_not_fit_its_column(price, sent):
    deployment = DeploymentFactory(input_price=Decimal("1.00"), output_price=Decimal("2.00"))
    prices = {"input_price": Decimal("1.00"), "output_price": Decimal("2.00"), "cached_input_price": None, price: sent}

    with pytest.raises(ValidationFailed) as refused:
        services.set_deployment_prices(deployment=deployment, **prices)

    assert refused.value.field == price
    assert str(refused.value).startswith(f"{price} must be a decimal number from 0 to 999999.999999")
    deployment.refresh_from_db()
    assert (deployment.input_price, deployment.output_price) == (Decimal("1.00"), Decimal("2.00"))


def test_set_deployment_prices_stores_the_prices_when_they_fit():
    deployment = DeploymentFactory()

    services.set_deployment_prices(
        deployment=deployment,
        input_price=Decimal("999999.999999"),
        output_price=Decimal("1E+2"),
        cached_input_price=None,
    )

    deployment.refresh_from_db()
    assert (deployment.input_price, deployment.output_price, deployment.cached_input_price) == (
        Decimal("999999.999999"),
        Decimal("100"),
        None,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sent", [TOO_BIG, NAN, NEGATIVE, SEVEN_PLACES])
def test_create_model_refuses_naming_the_deployment_and_its_price_when_a_price_does_not_fit(sent):
    provider = ProviderFactory()
    specs = [
        services.DeploymentSpec(provider=provider, upstream_model="a", output_price=Decimal("1")),
        services.DeploymentSpec(provider=provider, upstream_model="b", output_price=sent),
    ]

    with pytest.raises(ValidationFailed) as refused:
        services.create_model(name="m", deployments=specs)

    assert refused.value.field == "deployments.1.output_price"
    assert "from 0 to 999999.999999 with at most 6 decimal places" in str(refused.value)
    assert not Model.objects.exists()
    assert not Deployment.objects.exists()
