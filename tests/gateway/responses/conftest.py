"""A project with a key and one provider of each kind, all mock upstreams that speak the real
wire formats: OpenAI (kind `openai`, the OpenAI mock serving /responses), Azure OpenAI (the Azure
mock, which serves /responses too), an OpenAI-compatible server (the OpenAI mock *without*
/responses) and Anthropic (the Anthropic mock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import LedgerEntry
from gateway import services
from gateway.models import Deployment, Model, Project, Provider
from tests.conftest import _drain_request_logs, _logs_since, _wait_for_log_writes
from tests.factories import BusinessUnitFactory, DeploymentFactory, ModelFactory, ProviderFactory
from tests.gateway.providers.conftest import (  # noqa: F401 - fixtures
    anthropic_upstream,
    azure_upstream,
    mock_anthropic,
    mock_azure,
)
from tests.mock_anthropic import MockAnthropic
from tests.mock_azure import MockAzure
from tests.mock_upstream import MockUpstream

IN_PRICE, OUT_PRICE = Decimal("1000"), Decimal("2000")  # per million tokens: 0.001 and 0.002 a token
KINDS = ("openai", "azure_openai", "anthropic", "openai_compatible")
PASSED_THROUGH = ("openai", "azure_openai")
TRANSLATED = ("anthropic", "openai_compatible")


@dataclass
class Responses:
    project: Project
    secret: str
    gateway: str  # the base URL without /v1
    providers: dict[str, Provider]  # by kind
    upstreams: dict[str, MockUpstream]  # by kind: the mock each provider kind points at

    def serve(
        self, kind: str, *, name: str | None = None, upstream_model: str | None = None, priced: bool = False
    ) -> str:
        """Add a model (default: `<kind>-model`) served at the provider of `kind`, on the project's
        allow-list (at IN_PRICE/OUT_PRICE if `priced`); returns its public name."""
        name = name or f"{kind}-model"
        upstream_model = upstream_model or ("claude-test" if kind == "anthropic" else f"{kind}-upstream")
        deployment = DeploymentFactory(
            model=ModelFactory(name=name), provider=self.providers[kind], upstream_model=upstream_model
        )
        self.project.allowed_models.add(Model.objects.get(name=name))
        if priced:
            services.set_deployment_prices(
                deployment=Deployment.objects.get(pk=deployment.pk), input_price=IN_PRICE, output_price=OUT_PRICE
            )
        return name

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gateway}/v1", api_key=self.secret, max_retries=0)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.gateway}/v1", api_key=self.secret, max_retries=0)

    def post(self, body: object, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.gateway}/v1/responses",
            json=body,
            headers={"Authorization": f"Bearer {self.secret}", **headers},
            timeout=30,
        )

    def sent(self, kind: str) -> dict:
        """The last request the upstream of `kind` received."""
        return self.upstreams[kind].state.last().body


@pytest.fixture(scope="session")
def mock_openai_responses() -> Iterator[MockUpstream]:
    """The OpenAI mock serving the Responses API (the shared `mock_upstream` does not)."""
    server = MockUpstream(responses=True).start()
    yield server
    server.stop()


@pytest.fixture
def responses(
    transactional_db,  # type: ignore[no-untyped-def]
    live_gateway: str,
    upstream: MockUpstream,
    mock_openai_responses: MockUpstream,
    anthropic_upstream: MockAnthropic,  # noqa: F811 - the fixture imported above
    azure_upstream: MockAzure,  # noqa: F811
) -> Iterator[Responses]:
    _drain_request_logs()
    mock_openai_responses.state.reset()
    project = services.create_project(name="Shop", business_unit=BusinessUnitFactory())
    issued = services.create_virtual_key(project=project, name="ci")
    kinds = Provider.Kind
    providers = {
        "openai": ProviderFactory(name="openai-mock", kind=kinds.OPENAI, base_url=mock_openai_responses.url),
        "azure_openai": ProviderFactory(name="azure-mock", kind=kinds.AZURE_OPENAI, base_url=azure_upstream.url),
        "anthropic": ProviderFactory(name="anthropic-mock", kind=kinds.ANTHROPIC, base_url=anthropic_upstream.url),
        "openai_compatible": ProviderFactory(name="vllm-mock", kind=kinds.OPENAI_COMPATIBLE, base_url=upstream.url),
    }
    upstreams = {
        "openai": mock_openai_responses,
        "azure_openai": azure_upstream,
        "anthropic": anthropic_upstream,
        "openai_compatible": upstream,
    }
    yield Responses(
        project=project, secret=issued.secret, gateway=live_gateway, providers=providers, upstreams=upstreams
    )
    _wait_for_log_writes()  # before the database is emptied


def debits(count: int = 1, timeout: float = 5.0) -> list[LedgerEntry]:
    """This test's usage debits, once at least `count` have been written (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(
            LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, created_at__gte=_logs_since[0]).order_by("id")
        )
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)
