"""The wire to Anthropic's Messages API: `POST {base_url}/v1/messages`, its streams and its error bodies.

An OpenAI-shaped request (the chat-completions endpoints) is translated on its way in and out by
gateway/proxy/translate/chat_to_messages.py; a Messages request (the Anthropic-compatible
endpoint, /v1/messages) is passed through untranslated (`messages`, `open_messages_stream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from django.conf import settings

from gateway.proxy.adapters.openai import upstream_failure
from gateway.proxy.adapters.transport import mid_stream_failures, open_post, read_json
from gateway.proxy.errors import BadRequest, ProxyError, UpstreamError, UpstreamTimeout
from gateway.proxy.sse import data_payloads
from gateway.proxy.translate.chat_to_messages import (
    StreamTranslator,
    stream_error,
    to_chat_completion,
    to_messages_request,
)
from gateway.selectors import DeploymentSnapshot

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
_MAX_ERROR_MESSAGE = 2_000


# --- errors ---


def anthropic_failure(status: int, body: bytes, deployment: DeploymentSnapshot, retry_after: str | None) -> ProxyError:
    """Turn Anthropic's non-2xx answer (`{"type": "error", "error": {"type", "message"}}`) into our error.

    Rejected credentials and redirects follow the OpenAI adapter's policy (a 502 that never
    echoes the upstream's text); the rest keep Anthropic's message where it is about the request.
    """
    error = _failure(status, body, deployment, retry_after)
    error.upstream_status = status  # for the router's retry decisions and attempt log
    if retry_after and isinstance(error, UpstreamError):
        error.headers.setdefault("retry-after", retry_after)
    return error


def _failure(status: int, body: bytes, deployment: DeploymentSnapshot, retry_after: str | None) -> ProxyError:
    if status in (401, 403) or 300 <= status < 400:
        return upstream_failure(status, body, deployment, retry_after)
    error_type, message = _error_fields(body)
    provider = deployment.provider_name
    if status == 529 or error_type == "overloaded_error":
        return UpstreamError(
            f"The provider '{provider}' is overloaded right now; try again shortly.",
            code="upstream_overloaded",
            status=503,
            headers={"retry-after": retry_after} if retry_after else None,
        )
    if status == 402 or error_type == "billing_error":
        return UpstreamError(
            f"The provider '{provider}' refused the request for billing reasons (HTTP {status}); "
            "an administrator must check the provider account.",
            code="upstream_billing_error",
        )
    if status == 504 or error_type == "timeout_error":
        return UpstreamTimeout(f"The provider '{provider}' timed out while processing the request.")
    if status >= 500:
        return UpstreamError(
            f"The provider '{provider}' failed with HTTP {status}" + (f": {message}" if message else ".")
        )
    if status == 429:
        limited = ProxyError(
            message or f"The provider '{provider}' is rate limiting the gateway; try again later.",
            code="rate_limit_exceeded",
            status=429,
            headers={"retry-after": retry_after} if retry_after else None,
        )
        limited.type = "rate_limit_error"
        return limited
    code = "request_too_large" if status == 413 else None
    return ProxyError(
        message or f"The provider '{provider}' refused the request with HTTP {status}.", code=code, status=status
    )


def _error_fields(body: bytes) -> tuple[str | None, str]:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, ""
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    return error_type, str(error.get("message") or "")[:_MAX_ERROR_MESSAGE]


# --- the wire ---


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What /v1/messages passes on of its client's request besides the body (each checked there)."""

    version: str | None = None  # `anthropic-version`
    betas: tuple[str, ...] = ()  # `anthropic-beta`, one flag each
    query: str = ""  # the query string, already encoded ("beta=true")


def _headers(deployment: DeploymentSnapshot, *, accept: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": accept, "anthropic-version": ANTHROPIC_VERSION}
    if deployment.api_key:
        headers["x-api-key"] = deployment.api_key
    return headers


class AnthropicStream:
    def __init__(self, response: aiohttp.ClientResponse, *, include_usage: bool) -> None:
        self._response = response
        self._translator = StreamTranslator(include_usage=include_usage)

    async def __aiter__(self) -> AsyncIterator[dict]:
        translator = self._translator
        with mid_stream_failures():
            async for data in data_payloads(
                self._response.content.iter_any(), max_event_bytes=settings.UPSTREAM_MAX_RESPONSE_BYTES
            ):
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamError("The provider sent a malformed stream event.") from None
                if not isinstance(event, dict):
                    raise UpstreamError("The provider sent a malformed stream event.")
                for chunk in translator.feed(event):
                    yield chunk
                if translator.finished:
                    break
        if not translator.finished:
            raise UpstreamError("The provider's stream ended before it was complete.")

    async def aclose(self) -> None:
        # close(), not release(): an unfinished stream's connection must be dropped, which is
        # what tells the upstream to stop generating (and billing).
        self._response.close()


class MessagesStream:
    """An open Messages stream for a client that speaks Messages too: iterate its events as they are.

    Each item is one event's data (Anthropic names every event after its `type`). An `error` event
    raises, as a broken connection does; so does a stream that ends before `message_stop`.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[dict]:
        finished = False
        with mid_stream_failures():
            async for data in data_payloads(
                self._response.content.iter_any(), max_event_bytes=settings.UPSTREAM_MAX_RESPONSE_BYTES
            ):
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamError("The provider sent a malformed stream event.") from None
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise UpstreamError("The provider sent a malformed stream event.")
                if event["type"] == "error":
                    raise stream_error(event.get("error"))
                yield event
                if event["type"] == "message_stop":
                    finished = True
                    break
        if not finished:
            raise UpstreamError("The provider's stream ended before it was complete.")

    async def aclose(self) -> None:
        self._response.close()  # close(), not release(): see AnthropicStream.aclose


def _message(reply: dict[str, Any], deployment: DeploymentSnapshot) -> dict[str, Any]:
    if reply.get("type") != "message":
        raise UpstreamError(f"The provider '{deployment.provider_name}' answered with an unexpected body.")
    return reply


class AnthropicAdapter:
    def __init__(self, *, default_base_url: str = DEFAULT_BASE_URL) -> None:
        self._default_base_url = default_base_url

    async def _open(
        self,
        deployment: DeploymentSnapshot,
        request: dict[str, Any],
        *,
        client: Forwarded | None = None,
        path: str = "/v1/messages",
    ) -> aiohttp.ClientResponse:
        """POST to /v1/messages; the open response on 200, else the mapped error.

        `client` carries what a passed-through request keeps of its client's: its API version (in
        place of the pinned one), its `anthropic-beta` flags and its query string (`?beta=true`).
        """
        accept = "text/event-stream" if request.get("stream") else "application/json"
        url = (deployment.base_url or self._default_base_url).rstrip("/") + path
        headers = _headers(deployment, accept=accept)
        if client is not None:
            if client.version:
                headers["anthropic-version"] = client.version
            if client.betas:
                headers["anthropic-beta"] = ",".join(client.betas)
            if client.query:
                url += "?" + client.query
        return await open_post(
            deployment,
            url,
            request,
            headers,
            stream=bool(request.get("stream")),
            failure=lambda status, body, answer: anthropic_failure(status, body, deployment, answer.get("retry-after")),
        )

    async def chat(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        request = to_messages_request(payload)
        request.pop("stream", None)
        response = await self._open(deployment, request)
        return to_chat_completion(_message(await read_json(response, deployment), deployment))

    async def open_chat_stream(self, deployment: DeploymentSnapshot, payload: dict) -> AnthropicStream:
        request = to_messages_request(payload) | {"stream": True}
        include_usage = (payload.get("stream_options") or {}).get("include_usage") is True
        return AnthropicStream(await self._open(deployment, request), include_usage=include_usage)

    async def messages(
        self, deployment: DeploymentSnapshot, request: dict[str, Any], *, client: Forwarded | None = None
    ) -> dict[str, Any]:
        """A Messages request passed through as it is (its `model` already the upstream's); the reply as it came."""
        response = await self._open(deployment, request, client=client)
        return _message(await read_json(response, deployment), deployment)

    async def open_messages_stream(
        self, deployment: DeploymentSnapshot, request: dict[str, Any], *, client: Forwarded | None = None
    ) -> MessagesStream:
        """A Messages stream passed through: its events, untranslated."""
        response = await self._open(deployment, request | {"stream": True}, client=client)
        return MessagesStream(response)

    async def count_tokens(
        self, deployment: DeploymentSnapshot, request: dict[str, Any], *, client: Forwarded | None = None
    ) -> dict[str, Any]:
        """`POST /v1/messages/count_tokens` passed through (its `model` already the upstream's):
        Anthropic's `{"input_tokens": N}`."""
        response = await self._open(deployment, request, client=client, path="/v1/messages/count_tokens")
        reply = await read_json(response, deployment)
        counted = reply.get("input_tokens")
        if isinstance(counted, bool) or not isinstance(counted, int) or counted < 0:
            raise UpstreamError(f"The provider '{deployment.provider_name}' answered with an unexpected body.")
        return reply

    async def embeddings(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        raise BadRequest(
            f"The provider '{deployment.provider_name}' (Anthropic) offers no embeddings; "
            "use an embedding model served by another provider.",
            param="model",
            code="unsupported_operation",
        )
