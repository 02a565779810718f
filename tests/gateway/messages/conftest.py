"""A project with a key, one model served by the mock Anthropic and one by the mock OpenAI upstream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import anthropic
import pytest

from gateway import services
from gateway.models import Deployment, Model, Project, Provider
from tests.conftest import _wait_for_log_writes
from tests.factories import BusinessUnitFactory, DeploymentFactory, ModelFactory, ProviderFactory
from tests.gateway.providers.conftest import anthropic_upstream, mock_anthropic  # noqa: F401 - fixtures
from tests.mock_anthropic import MockAnthropic
from tests.mock_upstream import MockUpstream

UPSTREAM_SECRET = "sk-upstream-test-secret"  # what ProviderFactory stores


@dataclass
class MessagesSetup:
    project: Project
    secret: str
    gateway: str  # the base URL the Anthropic SDK takes (it appends /v1/messages)
    anthropic: Provider
    openai: Provider

    def serve(self, name: str, upstream_model: str, provider: Provider, *, allow: bool = True) -> str:
        """Add a model `name` served by `upstream_model` at `provider`, on the project's allow-list if `allow`."""
        DeploymentFactory(model=ModelFactory(name=name), provider=provider, upstream_model=upstream_model)
        if allow:
            self.project.allowed_models.add(Model.objects.get(name=name))
        return name

    def serve_agent(self, served_by: str) -> str:
        """The model `claude-code` (the mock Anthropic's coding agent, tests/mock_agent.py) or
        `gpt-code` (the mock OpenAI's), priced, on the allow-list; returns its name."""
        if served_by == "anthropic":
            name = self.serve("claude-code", "claude-agent", self.anthropic)
        else:
            name = self.serve("gpt-code", "mock-agent", self.openai)
        deployment = Deployment.objects.get(model__name=name)
        services.set_deployment_prices(deployment=deployment, input_price=Decimal("3"), output_price=Decimal("15"))
        return name

    def client(self, **options: object) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway, api_key=self.secret, max_retries=0, **options)  # type: ignore[arg-type]

    def async_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.gateway, api_key=self.secret, max_retries=0)


@pytest.fixture
def messages_setup(
    transactional_db,  # type: ignore[no-untyped-def]
    live_gateway: str,
    anthropic_upstream: MockAnthropic,  # noqa: F811 - the fixture imported above
    upstream: MockUpstream,
) -> Iterator[MessagesSetup]:
    project = services.create_project(name="Shop", business_unit=BusinessUnitFactory())
    issued = services.create_virtual_key(project=project, name="ci")
    yield MessagesSetup(
        project=project,
        secret=issued.secret,
        gateway=live_gateway,
        anthropic=ProviderFactory(name="anthropic-mock", kind=Provider.Kind.ANTHROPIC, base_url=anthropic_upstream.url),
        openai=ProviderFactory(name="openai-mock", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=upstream.url),
    )
    _wait_for_log_writes()  # before the database is emptied


@pytest.fixture
def claude(messages_setup: MessagesSetup) -> anthropic.Anthropic:
    """A client whose model `claude` is served by the mock Anthropic (`claude-test`): passed through."""
    messages_setup.serve("claude", "claude-test", messages_setup.anthropic)
    return messages_setup.client()


@pytest.fixture
def gpt(messages_setup: MessagesSetup) -> anthropic.Anthropic:
    """A client whose model `gpt` is served by the mock OpenAI upstream (`upstream-gpt`): translated."""
    messages_setup.serve("gpt", "upstream-gpt", messages_setup.openai)
    return messages_setup.client()
