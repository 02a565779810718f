"""Admin-configured upstream URLs are checked when the gateway connects, on the address it
connects to (after DNS): metadata addresses never, loopback/link-local/private only when
UPSTREAM_ALLOW_PRIVATE_NETWORKS is on. Saving a provider checks an IP-literal host the same way."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import httpx
import pytest
from django.core.exceptions import ValidationError

from gateway import netpolicy
from gateway.models import validate_http_url
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("address", "closed", "open_"),
    [
        ("169.254.169.254", "a cloud metadata address", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address", "a cloud metadata address"),
        ("127.0.0.1", "a loopback address", None),
        ("::1", "a loopback address", None),
        ("169.254.10.1", "a link-local address", None),
        ("fe80::1", "a link-local address", None),
        ("10.1.2.3", "a private or reserved address", None),
        ("192.168.0.10", "a private or reserved address", None),
        ("172.16.5.5", "a private or reserved address", None),
        ("100.64.0.1", "a private or reserved address", None),
        ("fd12:3456::1", "a private or reserved address", None),
        ("0.0.0.0", "a private or reserved address", None),
        ("8.8.8.8", None, None),
        ("2606:4700:4700::1111", None, None),
    ],
)
def test_address_rules(address: str, closed: str | None, open_: str | None) -> None:
    parsed = ipaddress.ip_address(address)

    assert netpolicy.refusal(parsed, allow_private=False) == closed
    assert netpolicy.refusal(parsed, allow_private=True) == open_


def test_saving_refuses_a_metadata_address_even_when_private_networks_are_allowed(settings) -> None:  # type: ignore[no-untyped-def]
    settings.UPSTREAM_ALLOW_PRIVATE_NETWORKS = True

    with pytest.raises(ValidationError, match="cloud metadata"):
        validate_http_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(ValidationError, match="cloud metadata"):
        validate_http_url("http://[fd00:ec2::254]/")
    validate_http_url("http://10.0.0.5:8000/v1")  # a self-hosted model server


def test_saving_refuses_a_private_address_unless_allowed(settings) -> None:  # type: ignore[no-untyped-def]
    settings.UPSTREAM_ALLOW_PRIVATE_NETWORKS = False

    with pytest.raises(ValidationError, match="UPSTREAM_ALLOW_PRIVATE_NETWORKS"):
        validate_http_url("http://10.0.0.5:8000/v1")
    validate_http_url("http://vllm.internal:8000/v1")  # a name: checked when connecting
    validate_http_url("https://api.openai.com/v1")


def _project_key(base_url: str) -> str:
    from gateway import services
    from tests.factories import BusinessUnitFactory

    provider = ProviderFactory(name="self-hosted", base_url=base_url)
    DeploymentFactory(model=ModelFactory(name="local-llm"), provider=provider, upstream_model="upstream-gpt")
    project = services.create_project(name="Lab", business_unit=BusinessUnitFactory(), allowed_models=["local-llm"])
    return services.create_virtual_key(project=project, name="ci").secret


def _ask(live_gateway: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "local-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        timeout=30,
    )


@pytest.fixture
def upstream() -> Iterator[MockUpstream]:
    """A mock upstream of this test's own: on a new port, so no pooled connection to it exists yet."""
    server = MockUpstream().start()
    yield server
    server.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["ip-literal", "name-resolving-to-loopback"])
def test_connecting_to_a_loopback_upstream_is_refused_unless_allowed(
    settings, live_gateway, upstream, host, caplog
) -> None:  # type: ignore[no-untyped-def]
    port = upstream.url.split(":")[2].split("/")[0]
    secret = _project_key(f"http://{host}:{port}/v1")  # saved while allowed (factories skip validation anyway)
    settings.UPSTREAM_ALLOW_PRIVATE_NETWORKS = False
    before = len(upstream.state.requests)

    refused = _ask(live_gateway, secret)

    assert refused.status_code == 502
    message = refused.json()["error"]["message"]
    assert "not allowed by the gateway's network policy" in message
    assert "127.0.0.1" not in message  # the client learns nothing of the internal network
    assert len(upstream.state.requests) == before  # never contacted
    assert any("UPSTREAM_ALLOW_PRIVATE_NETWORKS" in record.getMessage() for record in caplog.records)

    settings.UPSTREAM_ALLOW_PRIVATE_NETWORKS = True
    assert _ask(live_gateway, secret).status_code == 200
    assert len(upstream.state.requests) == before + 1
