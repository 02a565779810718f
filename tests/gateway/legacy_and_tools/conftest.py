"""A project with a key and one provider of each kind, all mock upstreams that speak the real
wire formats: OpenAI (kind `openai`) and an OpenAI-compatible server (the OpenAI mock), Azure
OpenAI (the Azure mock) and Anthropic (the Anthropic mock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import anthropic
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


@dataclass
class Legacy:
    project: Project
    secret: str
    gateway: str  # the base URL without /v1
    providers: dict[str, Provider]  # by kind

    def serve(self, name: str, upstream_model: str, kind: str, *, allow: bool = True, priced: bool = False) -> str:
        """Add a model `name` served by `upstream_model` at the provider of `kind` (on the
        project's allow-list if `allow`, at IN_PRICE/OUT_PRICE if `priced`)."""
        deployment = DeploymentFactory(
            model=ModelFactory(name=name), provider=self.providers[kind], upstream_model=upstream_model
        )
        if allow:
            self.project.allowed_models.add(Model.objects.get(name=name))
        if priced:
            services.set_deployment_prices(
                deployment=Deployment.objects.get(pk=deployment.pk), input_price=IN_PRICE, output_price=OUT_PRICE
            )
        return name

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gateway}/v1", api_key=self.secret, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway, api_key=self.secret, max_retries=0)

    def post(self, path: str, body: object, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.gateway}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.secret}", **headers},
            timeout=30,
        )


@pytest.fixture
def legacy(
    transactional_db,  # type: ignore[no-untyped-def]
    live_gateway: str,
    upstream: MockUpstream,
    anthropic_upstream: MockAnthropic,  # noqa: F811 - the fixture imported above
    azure_upstream: MockAzure,  # noqa: F811
) -> Iterator[Legacy]:
    _drain_request_logs()
    project = services.create_project(name="Shop", business_unit=BusinessUnitFactory())
    issued = services.create_virtual_key(project=project, name="ci")
    kinds = Provider.Kind
    providers = {
        "openai": ProviderFactory(name="openai-mock", kind=kinds.OPENAI, base_url=upstream.url),
        "openai_compatible": ProviderFactory(name="vllm-mock", kind=kinds.OPENAI_COMPATIBLE, base_url=upstream.url),
        "azure_openai": ProviderFactory(name="azure-mock", kind=kinds.AZURE_OPENAI, base_url=azure_upstream.url),
        "anthropic": ProviderFactory(name="anthropic-mock", kind=kinds.ANTHROPIC, base_url=anthropic_upstream.url),
    }
    yield Legacy(project=project, secret=issued.secret, gateway=live_gateway, providers=providers)
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
