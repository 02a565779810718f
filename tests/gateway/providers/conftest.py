"""Mock Anthropic and Azure upstreams, and a project whose models they serve."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from gateway import services
from gateway.models import Model, Project, Provider
from tests.conftest import _wait_for_log_writes
from tests.factories import BusinessUnitFactory, DeploymentFactory, ModelFactory, ProviderFactory
from tests.mock_anthropic import MockAnthropic
from tests.mock_azure import MockAzure


@pytest.fixture(scope="session")
def mock_anthropic() -> Iterator[MockAnthropic]:
    server = MockAnthropic().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mock_azure() -> Iterator[MockAzure]:
    server = MockAzure().start()
    yield server
    server.stop()


@pytest.fixture
def anthropic_upstream(mock_anthropic: MockAnthropic) -> MockAnthropic:
    mock_anthropic.state.reset()
    return mock_anthropic


@pytest.fixture
def azure_upstream(mock_azure: MockAzure) -> MockAzure:
    mock_azure.state.reset()
    return mock_azure


@dataclass
class ProviderSetup:
    project: Project
    provider: Provider
    secret: str
    base_url: str  # the gateway's /v1

    def serve(self, name: str, upstream_model: str, provider: Provider | None = None) -> str:
        """Add a model `name` served by `upstream_model` and allow the project to use it."""
        DeploymentFactory(
            model=ModelFactory(name=name), provider=provider or self.provider, upstream_model=upstream_model
        )
        self.project.allowed_models.add(Model.objects.get(name=name))
        return name

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.secret, max_retries=0)


def _setup(live_gateway: str, provider: Provider) -> ProviderSetup:
    project = services.create_project(name="Shop", business_unit=BusinessUnitFactory())
    issued = services.create_virtual_key(project=project, name="ci")
    return ProviderSetup(project=project, provider=provider, secret=issued.secret, base_url=f"{live_gateway}/v1")


@pytest.fixture
def anthropic_setup(transactional_db, live_gateway: str, anthropic_upstream: MockAnthropic) -> Iterator[ProviderSetup]:  # type: ignore[no-untyped-def]
    """A project with a key; `serve()` adds models that the mock Anthropic upstream answers."""
    provider = ProviderFactory(name="anthropic-mock", kind=Provider.Kind.ANTHROPIC, base_url=anthropic_upstream.url)
    yield _setup(live_gateway, provider)
    _wait_for_log_writes()  # before the database is emptied


@pytest.fixture
def azure_setup(transactional_db, live_gateway: str, azure_upstream: MockAzure) -> Iterator[ProviderSetup]:  # type: ignore[no-untyped-def]
    """A project with a key; `serve()` adds models that the mock Azure resource answers."""
    provider = ProviderFactory(name="azure-mock", kind=Provider.Kind.AZURE_OPENAI, base_url=azure_upstream.url)
    yield _setup(live_gateway, provider)
    _wait_for_log_writes()  # before the database is emptied
