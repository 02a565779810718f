"""GET /v1/models and /v1/models/{id}: only what the key may use."""

import openai
import pytest

from gateway import services
from gateway.models import Model
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_gateway, gateway_setup):
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


def test_list_shows_only_models_the_key_may_use(client, gateway_setup):
    unapproved = ProviderFactory(name="pending", approved=False)
    DeploymentFactory(model=ModelFactory(name="not-allowed"))
    DeploymentFactory(model=ModelFactory(name="unapproved"), provider=unapproved)
    DeploymentFactory(model=ModelFactory(name="team/llama-3", enabled=True))
    DeploymentFactory(model=ModelFactory(name="switched-off", enabled=False))
    gateway_setup.project.allowed_models.add(
        *Model.objects.filter(name__in=["unapproved", "team/llama-3", "switched-off"])
    )

    ids = sorted(m.id for m in client.models.list())

    assert ids == ["gpt-test", "team/llama-3"]


def test_list_is_narrowed_when_key_has_its_own_allow_list(live_gateway, gateway_setup):
    DeploymentFactory(model=ModelFactory(name="second"))
    gateway_setup.project.allowed_models.add(Model.objects.get(name="second"))
    narrow = services.create_virtual_key(project=gateway_setup.project, name="narrow", allowed_models=["second"])
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=narrow.secret, max_retries=0)

    assert [m.id for m in client.models.list()] == ["second"]


def test_retrieve_returns_model_object_when_allowed(client, gateway_setup):
    DeploymentFactory(model=ModelFactory(name="team/llama-3"))
    gateway_setup.project.allowed_models.add(Model.objects.get(name="team/llama-3"))

    model = client.models.retrieve("team/llama-3")

    assert (model.id, model.object, model.owned_by) == ("team/llama-3", "model", "symbiosis-gateway")


def test_retrieve_is_404_when_model_is_not_allowed(client):
    DeploymentFactory(model=ModelFactory(name="secret-model"))

    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("secret-model")


def test_list_requires_a_key(live_gateway, gateway_setup):
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key="wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        client.models.list()
