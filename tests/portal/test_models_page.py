"""The model catalogue: approved models only, with provider, context window, prices, health and
which of my projects may use each."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse

from gateway.health_state import HEALTH_KEY
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory
from tests.portal.conftest import PERSONAS

pytestmark = pytest.mark.django_db

MODELS = reverse("portal:models")


@pytest.mark.parametrize("persona", PERSONAS)
def test_models_page_answers_by_persona(world, login_as, persona):
    response = login_as(world.persona(persona)).get(MODELS)
    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={MODELS}"
    else:
        assert response.status_code == 200


def test_catalogue_lists_approved_models_with_prices_and_context(world, login_as):
    page = login_as(world.dev_a).get(MODELS).content.decode()
    assert "<code>gpt-portal</code>" in page and "<code>gpt-portal-mini</code>" in page
    assert "128,000" in page and "32,000" in page
    assert "€2.50" in page and "€10.00" in page  # gpt-portal per million tokens
    assert "€0.15" in page and "€0.60" in page and "€0.075" in page  # gpt-portal-mini
    assert "OpenAI" in page and ">Healthy<" in page


def test_catalogue_hides_models_without_an_approved_provider(world, login_as):
    shady = ProviderFactory(name="shady", approved=False)
    DeploymentFactory(model=ModelFactory(name="unapproved-model"), provider=shady)
    DeploymentFactory(model=ModelFactory(name="disabled-model", enabled=False))
    page = login_as(world.dev_a).get(MODELS).content.decode()
    assert "unapproved-model" not in page and "disabled-model" not in page


def test_catalogue_says_which_of_my_projects_may_use_each(world, login_as):
    page = login_as(world.dev_b).get(MODELS).content.decode()
    row_mini = page[page.index("<code>gpt-portal-mini</code>") :].split("</tr>")[0]
    row_main = page[page.index("<code>gpt-portal</code>") :].split("</tr>")[0]
    assert "None of yours" in row_mini
    assert "Search" in row_main and "Checkout" not in page


def test_catalogue_shows_health_from_the_breakers(world, login_as):
    deployment = world.model.deployments.get()
    cache.set(HEALTH_KEY.format(deployment_id=deployment.id), {"state": "open", "last_error": "upstream 503"}, 60)
    try:
        page = login_as(world.dev_a).get(MODELS).content.decode()
    finally:
        cache.delete(HEALTH_KEY.format(deployment_id=deployment.id))
    assert ">Unavailable<" in page and "upstream 503" in page


def test_catalogue_queries_are_bounded(world, login_as, django_assert_max_num_queries):
    provider = ProviderFactory(approved=True)
    for n in range(20):
        DeploymentFactory(model=ModelFactory(name=f"m-{n}"), provider=provider, input_price=Decimal(1))
    client = login_as(world.manager)
    with django_assert_max_num_queries(10):
        page = client.get(MODELS).content.decode()
    assert "m-19" in page


def test_catalogue_without_models_explains_itself(db, login_as):
    from tests.factories import UserFactory

    page = login_as(UserFactory()).get(MODELS).content.decode()
    assert "No models yet" in page
