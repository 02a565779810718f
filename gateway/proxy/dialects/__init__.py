"""Dialects: one per wire format a client speaks (OpenAI chat completions, responses, legacy
completions, embeddings and moderations; Anthropic messages and their token count). A dialect
does what depends on the format, at both edges of the one pipeline (gateway/proxy/pipeline.py):

- `parse()`: check the request, naming the field at fault, into a `Call` (the model asked for,
  stream or not, the output limit, the prompt's bound);
- `screen()`: hand the input's text to the screening stage, and put redactions back in place;
- `answer()`: make the routed call for a non-streamed request, read the usage and the text of the
  reply, screen it, and encode it;
- `open()` and `encoder()`: open a routed stream, then turn each upstream item into the bytes the
  client's SDK expects, metering and screening as it passes;
- `error_response()` and `StreamEncoder.error()`: errors in the shape the client's SDK expects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from gateway import scrub
from gateway.proxy import limits
from gateway.proxy.adapters import ChatStream
from gateway.proxy.errors import ProxyError
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import Screening
from gateway.selectors import KeySnapshot, ModelSnapshot

R = TypeVar("R", bound=HttpResponseBase)


@dataclass(slots=True)
class Call:
    """A checked request: what the pipeline needs of it, whatever its wire format."""

    body: dict[str, Any]
    model: str  # the public model name asked for
    stream: bool = False
    output: int | None = None  # the output limit the request set (None: none)
    choices: int = 1
    extra_output: int = 0  # output tokens a prediction may add
    output_field: str = "max_completion_tokens"  # where a held default output limit is written
    prompt: Callable[[], limits.Prompt] = lambda: limits.Prompt(0)  # the prompt's bound (budgets)
    prompt_source: Any = None  # what an input-token estimate is made from
    options: dict[str, Any] = field(default_factory=dict)  # the dialect's own (stream options, headers)


@dataclass(slots=True)
class Opened:
    """A routed stream whose first item has arrived (retries and fallbacks happen only before)."""

    first: dict[str, Any]
    rest: AsyncIterator[dict[str, Any]]
    upstream: ChatStream
    passthrough: bool = True  # items are in the client's format already (else translated)
    dropped: list[str] = field(default_factory=list)  # what a translation left out


class StreamEncoder(Protocol):
    """One stream's items to the client's bytes (None: nothing to send for this item)."""

    def encode(self, item: dict[str, Any]) -> bytes | None: ...

    def tail(self) -> bytes:
        """What closes a complete stream (held text, `[DONE]`, ...)."""
        ...

    def error(self, exc: ProxyError) -> bytes:
        """The event that ends a broken stream."""
        ...


class Dialect(Protocol):
    endpoint: str  # its path under /v1, for the log ("chat/completions")

    def error_response(self, exc: ProxyError, request_id: str) -> HttpResponse: ...

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call: ...

    async def screen(self, call: Call, screening: Screening) -> None: ...

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse: ...

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened: ...

    def encoder(
        self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets
    ) -> StreamEncoder: ...

    def stream_headers(self, opened: Opened) -> dict[str, str]: ...

    def identify(self, response: R, request_id: str) -> R:
        """The response with the request id where the client's SDK looks for it."""
        ...


def name_of(value: Any) -> str:
    """The model an upstream says answered (telemetry), if it is a name at all."""
    return value[:200] if isinstance(value, str) else ""
