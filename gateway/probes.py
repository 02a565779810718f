"""On-demand health checks of deployments, from the admin side (synchronous; not the hot path).

A probe asks the provider for its model list: cheap, unbilled, and it proves the address, TLS and
the stored credentials. It never follows redirects and never sends a prompt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from gateway import crypto
from gateway.models import Deployment, Provider

ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    error: str = ""


def _request(provider: Provider) -> tuple[str, dict[str, str], dict[str, str]]:
    key = (
        crypto.decrypt_secret(provider.api_key_encrypted, what=f"the API key of provider {provider.name!r}")
        if (provider.api_key_encrypted)
        else ""
    )
    base = provider.base_url.rstrip("/")
    if provider.kind == Provider.Kind.ANTHROPIC:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        return f"{base or ANTHROPIC_DEFAULT_BASE_URL}/v1/models", headers, {}
    if provider.kind == Provider.Kind.AZURE_OPENAI:
        if base.endswith("/openai/v1"):
            return f"{base}/models", {"api-key": key}, {}
        return f"{base}/openai/models", {"api-key": key}, {"api-version": provider.api_version}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return f"{base or OPENAI_DEFAULT_BASE_URL}/models", headers, {}


def probe(deployment: Deployment) -> ProbeResult:
    provider = deployment.provider
    if provider.kind == Provider.Kind.DEMO:
        return ProbeResult(
            ok=settings.DEMO_PROVIDER_ENABLED,
            latency_ms=0.0,
            error="" if settings.DEMO_PROVIDER_ENABLED else "demo provider disabled",
        )
    url, headers, params = _request(provider)
    started = time.monotonic()
    try:
        response = httpx.get(
            url,
            headers=headers,
            params=params,
            timeout=httpx.Timeout(
                deployment.total_timeout or 10.0,
                connect=deployment.connect_timeout or settings.UPSTREAM_CONNECT_TIMEOUT,
            ),
            follow_redirects=False,
            trust_env=False,
        )
    except httpx.TimeoutException:
        return ProbeResult(ok=False, latency_ms=(time.monotonic() - started) * 1000, error="timed out")
    except httpx.HTTPError as exc:
        return ProbeResult(
            ok=False, latency_ms=(time.monotonic() - started) * 1000, error=f"unreachable ({type(exc).__name__})"
        )
    latency = (time.monotonic() - started) * 1000
    if response.is_success:
        return ProbeResult(ok=True, latency_ms=latency)
    if response.status_code in (401, 403):
        return ProbeResult(ok=False, latency_ms=latency, error=f"credentials rejected (HTTP {response.status_code})")
    return ProbeResult(ok=False, latency_ms=latency, error=f"HTTP {response.status_code}")
