"""Azure OpenAI: OpenAI's wire format at Azure's addresses, with an `api-key` header.

Two surfaces, chosen by the provider's base_url:

- deployment style (`https://<resource>.openai.azure.com`):
  `{base_url}/openai/deployments/{upstream_model}/chat/completions?api-version=...`, where the
  upstream model is the Azure *deployment* name;
- the v1 surface (a base_url ending in `/openai/v1`): `{base_url}/chat/completions` with the
  model in the body and no api-version.

The Responses API has no deployment-style address: it is `{base_url}/openai/responses?api-version=...`
(a 2025-03-01-preview or later version) or `{base_url}/responses` on the v1 surface, the Azure
deployment named in the body's `model`.

Bodies and streams are OpenAI's, so parsing, streaming and error mapping are the OpenAI adapter's;
this module adds the addresses, the header and Azure's content filter. Azure's extra fields
(`prompt_filter_results`, `content_filter_results`, `finish_reason: content_filter`) pass through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from gateway.proxy.adapters.openai import OpenAIStream, upstream_failure
from gateway.proxy.adapters.responses import ResponsesStream
from gateway.proxy.adapters.transport import open_post, read_json
from gateway.proxy.errors import BadRequest, ProxyError
from gateway.selectors import DeploymentSnapshot

# The latest GA data-plane version when this was written; a provider may set its own
# (read from `deployment.api_version` once the provider carries one).
DEFAULT_API_VERSION = "2024-10-21"

_V1_SUFFIX = "/openai/v1"
# The Responses API needs 2025-03-01-preview or later: a provider's older version is not used for it.
RESPONSES_API_VERSION = "2025-04-01-preview"


def azure_url(deployment: DeploymentSnapshot, operation: str) -> str:
    """The address of `operation` ("chat/completions", "embeddings") for this deployment."""
    base = deployment.base_url.rstrip("/")
    if base.endswith(_V1_SUFFIX):
        return f"{base}/{operation}"
    base = base.removesuffix("/openai")  # accept the resource URL with or without it
    api_version = deployment.api_version or DEFAULT_API_VERSION
    name = quote(deployment.upstream_model, safe="")
    return f"{base}/openai/deployments/{name}/{operation}?{urlencode({'api-version': api_version})}"


def azure_responses_url(deployment: DeploymentSnapshot) -> str:
    """The address of the Responses API for this deployment's resource."""
    base = deployment.base_url.rstrip("/")
    if base.endswith(_V1_SUFFIX):
        return f"{base}/responses"
    version = deployment.api_version or ""
    version = version if version >= "2025-03-01" else RESPONSES_API_VERSION
    return f"{base.removesuffix('/openai')}/openai/responses?{urlencode({'api-version': version})}"


def _headers(deployment: DeploymentSnapshot, *, accept: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": accept}
    if deployment.api_key:
        headers["api-key"] = deployment.api_key
    return headers


def _retry_after(headers: Mapping[str, str]) -> str | None:
    if value := headers.get("retry-after"):
        return value
    try:  # Azure sometimes sends only the milliseconds
        milliseconds = float(headers.get("retry-after-ms", ""))
    except ValueError:
        return None
    return str(max(1, math.ceil(milliseconds / 1000)))


def azure_failure(status: int, body: bytes, deployment: DeploymentSnapshot, headers: Mapping[str, str]) -> ProxyError:
    """The OpenAI adapter's mapping, plus Azure's content filter made explicit."""
    failure = upstream_failure(status, body, deployment, _retry_after(headers))
    if status != 400 or failure.code != "content_filter":
        return failure
    message = failure.message
    if message.startswith(f"The provider '{deployment.provider_name}' refused"):  # Azure sent no message
        message = (
            f"The provider '{deployment.provider_name}' (Azure OpenAI) blocked this prompt with its content filter; "
            "rephrase the request and try again."
        )
    if categories := _filtered_categories(body):
        message = f"{message.rstrip()} Filtered categories: {', '.join(categories)}."
    filtered = BadRequest(message, param=failure.param, code="content_filter")
    filtered.upstream_status = status
    return filtered


def _filtered_categories(body: bytes) -> list[str]:
    try:
        parsed = orjson.loads(body)
        results = parsed["error"]["innererror"]["content_filter_result"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []
    if not isinstance(results, dict):
        return []
    return sorted(name for name, result in results.items() if isinstance(result, dict) and result.get("filtered"))


class AzureOpenAIAdapter:
    async def _open(
        self, deployment: DeploymentSnapshot, operation: str, payload: dict[str, Any], *, accept: str
    ) -> aiohttp.ClientResponse:
        """POST to the operation's address; the open response on 200, else the mapped error."""
        return await open_post(
            deployment,
            azure_url(deployment, operation),
            payload,
            _headers(deployment, accept=accept),
            stream=accept == "text/event-stream",
            failure=lambda status, body, answer: azure_failure(status, body, deployment, answer),
        )

    async def _post_json(self, deployment: DeploymentSnapshot, operation: str, payload: dict) -> dict:
        response = await self._open(deployment, operation, payload, accept="application/json")
        return await read_json(response, deployment)

    async def chat(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        return await self._post_json(deployment, "chat/completions", payload)

    async def embeddings(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        return await self._post_json(deployment, "embeddings", payload)

    async def open_chat_stream(self, deployment: DeploymentSnapshot, payload: dict) -> OpenAIStream:
        response = await self._open(deployment, "chat/completions", payload, accept="text/event-stream")
        return OpenAIStream(response, deployment)

    async def _open_responses(
        self, deployment: DeploymentSnapshot, payload: dict, *, accept: str
    ) -> aiohttp.ClientResponse:
        return await open_post(
            deployment,
            azure_responses_url(deployment),
            payload,
            _headers(deployment, accept=accept),
            stream=accept == "text/event-stream",
            failure=lambda status, body, answer: azure_failure(status, body, deployment, answer),
        )

    async def responses(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        """The Responses API, passed through."""
        response = await self._open_responses(deployment, payload, accept="application/json")
        return await read_json(response, deployment)

    async def open_responses_stream(self, deployment: DeploymentSnapshot, payload: dict) -> ResponsesStream:
        response = await self._open_responses(deployment, payload, accept="text/event-stream")
        return ResponsesStream(response, deployment)

    async def completions(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        """Legacy text completions (`.../completions`: gpt-35-turbo-instruct and the like)."""
        return await self._post_json(deployment, "completions", payload)

    async def open_completions_stream(self, deployment: DeploymentSnapshot, payload: dict) -> OpenAIStream:
        response = await self._open(deployment, "completions", payload, accept="text/event-stream")
        return OpenAIStream(response, deployment)
