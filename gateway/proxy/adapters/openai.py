"""OpenAI (direct) and OpenAI-compatible servers (vLLM, Ollama /v1, llama.cpp server, TGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
from django.conf import settings

from gateway.proxy.adapters.responses import ResponsesStream
from gateway.proxy.adapters.transport import mid_stream_failures, open_post, read_json
from gateway.proxy.errors import ProxyError, UpstreamError
from gateway.proxy.sse import data_batches
from gateway.selectors import DeploymentSnapshot

_MAX_ERROR_MESSAGE = 2_000


def _headers(deployment: DeploymentSnapshot) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if deployment.api_key:
        headers["Authorization"] = f"Bearer {deployment.api_key}"
    return headers


def upstream_failure(status: int, body: bytes, deployment: DeploymentSnapshot, retry_after: str | None) -> ProxyError:
    """Turn an upstream's non-2xx answer into the error our client sees (see _failure)."""
    error = _failure(status, body, deployment, retry_after)
    error.upstream_status = status
    if retry_after and isinstance(error, UpstreamError):
        error.headers.setdefault("retry-after", retry_after)  # 503s may say when to come back
    return error


def _failure(status: int, body: bytes, deployment: DeploymentSnapshot, retry_after: str | None) -> ProxyError:
    """Turn an upstream's non-2xx answer into the error our client sees.

    4xx about the request (bad parameters, context too long, content policy) pass through with the
    upstream's message. The upstream rejecting *our* credentials is not the client's fault: it
    becomes a 502 that names the provider and never echoes the upstream's text (which can quote
    part of the provider key).
    """
    provider = deployment.provider_name
    if status in (401, 403):
        return _misconfigured(
            f"The provider '{provider}' rejected the gateway's credentials (HTTP {status}); "
            "an administrator must check the provider's API key.",
            code="upstream_auth_failed",
        )
    if 300 <= status < 400:
        return _misconfigured(f"The provider '{provider}' answered with a redirect, which the gateway does not follow.")
    error: dict = {}
    try:
        parsed = orjson.loads(body) if body else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
        elif isinstance(parsed, dict) and isinstance(parsed.get("error"), str):  # vLLM, Ollama, TGI
            error = {"message": parsed["error"]}
        elif isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            error = {"message": parsed["message"]}
    except orjson.JSONDecodeError:
        pass
    message = str(error.get("message") or "")[:_MAX_ERROR_MESSAGE]
    if status >= 500:
        return UpstreamError(
            f"The provider '{provider}' failed with HTTP {status}" + (f": {message}" if message else "."),
        )
    headers = {"retry-after": retry_after} if status == 429 and retry_after else None
    proxied = ProxyError(
        message or f"The provider '{provider}' refused the request with HTTP {status}.",
        param=error.get("param") if isinstance(error.get("param"), str) else None,
        code=error.get("code") if isinstance(error.get("code"), str) else None,
        status=status if 400 <= status < 500 else 502,
        headers=headers,
    )
    proxied.type = error.get("type") if isinstance(error.get("type"), str) else "invalid_request_error"
    return proxied


def _misconfigured(message: str, **kwargs: str) -> UpstreamError:
    error = UpstreamError(message, **kwargs)
    error.failover_only = True
    return error


class OpenAIStream:
    def __init__(self, response: aiohttp.ClientResponse, deployment: DeploymentSnapshot) -> None:
        self._response = response
        self._deployment = deployment
        # Chunks already received and waiting to be yielded: a relay that sees more waiting can
        # send them together, in one write, as they arrived in one read.
        self.buffered = 0
        # The chunk last yielded and the bytes it was read from: a relay that changes nothing but
        # the model name can pass those bytes on instead of encoding the chunk again.
        self.last: tuple[dict, bytes] | None = None

    @property
    def complete(self) -> bool:
        """The upstream's whole answer has been received: reading the rest will not wait."""
        return self._response.content.is_eof()

    async def __aiter__(self) -> AsyncIterator[dict]:
        # One generator over the upstream's reads (not one per layer: each async generator costs
        # its creation, the event loop's registration and a resumption per item).
        done = False
        with mid_stream_failures():
            async for payloads in data_batches(
                self._response.content.iter_any(), max_event_bytes=settings.UPSTREAM_MAX_RESPONSE_BYTES
            ):
                self.buffered = len(payloads)
                for data in payloads:
                    self.buffered -= 1
                    if data == b"[DONE]":
                        done = True
                        break
                    chunk = _chunk(data)  # what came before a bad event has reached the client already
                    self.last = (chunk, data)
                    yield chunk
                if done:
                    break
        if not done:
            raise UpstreamError("The provider's stream ended before it was complete.")

    async def aclose(self) -> None:
        # close(), not release(): an unfinished stream's connection must be dropped, which is
        # what tells the upstream to stop generating (and billing).
        self._response.close()


def _chunk(data: bytes) -> dict:
    """One stream event's JSON, or the error it carries."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("The provider sent a malformed stream event.") from None
    if not isinstance(chunk, dict):
        raise UpstreamError("The provider sent a malformed stream event.")
    if "error" in chunk:
        error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        raise UpstreamError(
            "The provider reported an error mid-stream: "
            + str(error.get("message") or "unknown error")[:_MAX_ERROR_MESSAGE]
        )
    return chunk


class OpenAIAdapter:
    def __init__(self, *, default_base_url: str) -> None:
        self._default_base_url = default_base_url

    def _url(self, deployment: DeploymentSnapshot, path: str) -> str:
        return (deployment.base_url or self._default_base_url).rstrip("/") + path

    async def _open(
        self, deployment: DeploymentSnapshot, path: str, payload: dict, *, stream: bool
    ) -> aiohttp.ClientResponse:
        headers = _headers(deployment)
        if stream:
            headers["Accept"] = "text/event-stream"
        return await open_post(
            deployment,
            self._url(deployment, path),
            payload,
            headers,
            stream=stream,
            failure=lambda status, body, answer: upstream_failure(status, body, deployment, answer.get("retry-after")),
        )

    async def _post_json(self, deployment: DeploymentSnapshot, path: str, payload: dict) -> dict:
        return await read_json(await self._open(deployment, path, payload, stream=False), deployment)

    async def chat(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        return await self._post_json(deployment, "/chat/completions", payload)

    async def embeddings(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        return await self._post_json(deployment, "/embeddings", payload)

    async def moderations(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        """OpenAI's moderation endpoint (the guardrails' classifier check)."""
        return await self._post_json(deployment, "/moderations", payload)

    async def open_chat_stream(self, deployment: DeploymentSnapshot, payload: dict) -> OpenAIStream:
        return OpenAIStream(await self._open(deployment, "/chat/completions", payload, stream=True), deployment)

    async def responses(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        """OpenAI's Responses API (`POST /responses`), passed through."""
        return await self._post_json(deployment, "/responses", payload)

    async def open_responses_stream(self, deployment: DeploymentSnapshot, payload: dict) -> ResponsesStream:
        return ResponsesStream(await self._open(deployment, "/responses", payload, stream=True), deployment)

    async def completions(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        """The legacy text completions endpoint (`POST /completions`)."""
        return await self._post_json(deployment, "/completions", payload)

    async def open_completions_stream(self, deployment: DeploymentSnapshot, payload: dict) -> OpenAIStream:
        return OpenAIStream(await self._open(deployment, "/completions", payload, stream=True), deployment)
