"""The Responses API's stream (`POST /responses` with `stream: true`) as OpenAI and Azure send it:
typed events (`response.created`, `response.output_text.delta`, ...), each an SSE `data:` JSON
object with its `type`, ending with a terminal event (`response.completed`, `response.incomplete`
or `response.failed`) rather than `[DONE]`. The transport is the OpenAI adapter's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
from django.conf import settings

from gateway.proxy.adapters.transport import mid_stream_failures
from gateway.proxy.errors import UpstreamError
from gateway.proxy.sse import data_batches
from gateway.selectors import DeploymentSnapshot

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_MAX_ERROR_MESSAGE = 2_000


def _event(data: bytes) -> dict:
    """One stream event, or the error it reports."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("The provider sent a malformed stream event.") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise UpstreamError("The provider sent a malformed stream event.")
    if event["type"] == "error":
        error = event.get("error") if isinstance(event.get("error"), dict) else event
        raise UpstreamError(
            "The provider reported an error mid-stream: "
            + str(error.get("message") or "unknown error")[:_MAX_ERROR_MESSAGE]
        )
    return event


class ResponsesStream:
    """An open Responses stream: iterate its events (dicts), then aclose()."""

    def __init__(self, response: aiohttp.ClientResponse, deployment: DeploymentSnapshot) -> None:
        self._response = response
        self._deployment = deployment
        self.buffered = 0  # events received and waiting (a relay sends them in one write)

    @property
    def complete(self) -> bool:
        """The upstream's whole answer has been received: reading the rest will not wait."""
        return self._response.content.is_eof()

    async def __aiter__(self) -> AsyncIterator[dict]:
        done = False
        with mid_stream_failures():
            async for payloads in data_batches(
                self._response.content.iter_any(), max_event_bytes=settings.UPSTREAM_MAX_RESPONSE_BYTES
            ):
                events = []
                for data in payloads:
                    if data == b"[DONE]":
                        done = True
                        break
                    events.append(_event(data))
                    if events[-1]["type"] in TERMINAL:
                        done = True
                        break
                self.buffered = len(events)
                for event in events:
                    self.buffered -= 1
                    yield event
                if done:
                    break
        if not done:
            raise UpstreamError("The provider's stream ended before it was complete.")

    async def aclose(self) -> None:
        self._response.close()  # drop an unfinished stream's connection: the upstream stops
