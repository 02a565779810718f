"""Anthropic Messages (`POST /v1/messages`): the request, the answer, the stream, the errors.

Claude SDKs and tools that take ANTHROPIC_BASE_URL send their requests here unchanged: the
virtual key in `x-api-key` or `Authorization: Bearer`, any `anthropic-version`. For each
deployment the router picks:

- Anthropic: the request is passed through with only `model` replaced by the upstream name; the
  client's `anthropic-version`, `anthropic-beta` flags and query string (`?beta=true`) go with it.
  The gateway checks only what it needs itself (`checked`): the upstream judges the rest, so a
  request the real API accepts is never refused here. A stream is relayed event by event,
  unchanged except that `message_start` names the public model.
- any other kind: the request is translated to an OpenAI chat request and the answer, or each
  stream chunk, back to Messages (gateway/proxy/translate/messages_to_chat.py); the
  `x-symbiosis-dropped` response header names what the translation left out (thinking, ...).

Betas the guardrail policy denies (`denied_betas`) are refused with 403 `beta_not_allowed`,
whatever the deployment. Every error is Anthropic's error object with the matching status; a
stream that breaks after it started ends with an `error` event and no `message_stop`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from gateway import scrub
from gateway.proxy import limits, router
from gateway.proxy import request as parse
from gateway.proxy.adapters import ChatStream, get_adapter
from gateway.proxy.adapters.anthropic import AnthropicAdapter, Forwarded
from gateway.proxy.dialects import Call, Opened
from gateway.proxy.errors import BadRequest, PermissionDenied, ProxyError, answer_json
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import OutputSlots, Screening
from gateway.proxy.stages.usage import anthropic_usage, as_anthropic
from gateway.proxy.translate import messages_to_chat as inbound
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

R = TypeVar("R", bound=HttpResponseBase)
DROPPED_HEADER = "x-symbiosis-dropped"  # what a translation left out (thinking, context_management, ...)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}
# Where each provider kind wants the output limit (see messages_to_chat.to_chat_request); max_tokens elsewhere.
_MAX_TOKENS_FIELD = {"openai": "max_completion_tokens"}
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
# The text fields of a content block's deltas, and the delta type each belongs to.
_DELTA_TEXT = {
    "text": {"type": "text_delta"},
    "partial_json": {"type": "input_json_delta"},
    "thinking": {"type": "thinking_delta"},
}
_EVENT_NAME = re.compile(r"[a-z_]{1,64}")
_BETA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_MAX_BETAS = 64
_MAX_QUERY = 2048
DROPPED_HEADER = "x-symbiosis-dropped"  # what a translation left out (thinking, context_management, ...)


# --- errors ---


def error_type(exc: ProxyError) -> str:
    """Anthropic's error type for our error: by status, and "overloaded" whenever the provider said so."""
    if exc.code == "upstream_overloaded":
        return "overloaded_error"
    return _ERROR_TYPES.get(exc.status) or ("api_error" if exc.status >= 500 else "invalid_request_error")


def error_body(exc: ProxyError, request_id: str) -> dict[str, Any]:
    """Anthropic's error object; our machine-readable `code` rides along (SDKs ignore extra keys)."""
    error = {"type": error_type(exc), "message": exc.message}
    if exc.code:
        error["code"] = exc.code
    return {"type": "error", "error": error, "request_id": request_id}


def _identified(response: R, request_id: str) -> R:
    response["x-request-id"] = request_id
    response["request-id"] = request_id  # where Anthropic's SDKs look for it (`exc.request_id`, `message._request_id`)
    return response


def error_response(exc: ProxyError, request_id: str) -> HttpResponse:
    response = HttpResponse(
        orjson.dumps(error_body(exc, request_id)), status=exc.status, content_type="application/json"
    )
    for name, value in exc.headers.items():
        response[name] = value
    return _identified(response, request_id)


# --- the request ---


def anthropic_version(request: HttpRequest) -> str | None:
    """The client's `anthropic-version`, if it sent one (any dated version: the upstream judges it)."""
    version = request.headers.get("anthropic-version")
    if version is None:
        return None
    if not _VERSION.fullmatch(version):
        raise BadRequest(
            "Invalid 'anthropic-version' header: expected a dated version such as 2023-06-01.",
            param="anthropic-version",
            code="invalid_value",
        )
    return version


def anthropic_betas(request: HttpRequest) -> tuple[str, ...]:
    """The flags of the client's `anthropic-beta` header (comma-separated; the upstream judges them)."""
    header = request.headers.get("anthropic-beta")
    if not header:
        return ()
    betas = tuple(dict.fromkeys(beta.strip() for beta in header.split(",") if beta.strip()))
    if len(betas) > _MAX_BETAS or not all(_BETA.fullmatch(beta) for beta in betas):
        raise BadRequest(
            f"Invalid 'anthropic-beta' header: expected at most {_MAX_BETAS} comma-separated beta names such as "
            "files-api-2025-04-14.",
            param="anthropic-beta",
            code="invalid_value",
        )
    return betas


def forwarded(request: HttpRequest, key: KeySnapshot) -> Forwarded:
    """What a passed-through request keeps of its client's besides the body: the API version, the
    betas the guardrail policy allows (a denied one is refused, by name) and the query string."""
    betas = anthropic_betas(request)
    if betas and (denied := key.guardrails.denied_beta(betas)):
        raise PermissionDenied(
            f"The beta '{denied}' (anthropic-beta header) is not allowed by the guardrail policy of "
            f"{key.guardrails.policy_name or 'this organisation'}. Leave it out, or ask an administrator.",
            param="anthropic-beta",
            code="beta_not_allowed",
        )
    query = request.GET.urlencode() if request.GET else ""
    if len(query) > _MAX_QUERY:
        raise BadRequest(f"The query string is longer than {_MAX_QUERY} characters.", code="invalid_value")
    return Forwarded(version=anthropic_version(request), betas=betas, query=query)


def checked(body: dict[str, Any]) -> bool:
    """Check what the gateway itself needs of a Messages request, naming the field at fault; True for a stream.

    That is the model, the output limit (for the budget hold), `messages` as a list of objects and
    `system` as a string or a list (the text to screen), `stream`. The rest is for the upstream to
    judge when the request is passed through (so nothing the real API accepts is refused here),
    and for the translation (translate/messages_to_chat.py) otherwise.
    """
    parse.required_str(body, "model")
    if body.get("max_tokens") is None:
        raise BadRequest(
            "Missing required parameter: 'max_tokens'.", param="max_tokens", code="missing_required_parameter"
        )
    limits.output_limit(body, ("max_tokens",))
    messages = parse.required_list(body, "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(
                f"Invalid message at messages[{index}]: expected an object with 'role' and 'content'.",
                param=f"messages[{index}]",
                code="invalid_type",
            )
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise BadRequest("Invalid 'system': expected a string or an array of text blocks.", param="system")
    return parse.optional_bool(body, "stream")


def message_text(content: Any) -> str:
    """The text a Messages reply produced: text blocks and tool inputs."""
    parts: list[str] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_use":
                with contextlib.suppress(orjson.JSONEncodeError):  # too deep: the answer is refused anyway
                    parts.append(orjson.dumps(block.get("input")).decode())
    return "".join(parts)


def _chat_request(
    body: dict[str, Any], deployment: DeploymentSnapshot, client: Forwarded, dropped: list[str]
) -> dict[str, Any]:
    """The OpenAI chat request for this deployment; `dropped` becomes what it leaves out."""
    field = _MAX_TOKENS_FIELD.get(deployment.provider_kind, "max_tokens")
    request = inbound.to_chat_request(
        body,
        model=deployment.upstream_model,
        max_tokens_field=field,
        reasoning=inbound.has_reasoning(deployment.upstream_model),
    )
    dropped[:] = inbound.dropped_fields(body, request, betas=client.betas)
    return request


def _answerer(
    body: dict[str, Any], client: Forwarded, dropped: list[str]
) -> Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[dict[str, Any]]]:
    """The routed call for a non-streaming request: one attempt at one deployment; `dropped`
    names what the translation for the deployment that answered left out."""

    async def answer(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict[str, Any]:
        adapter = get_adapter(deployment.provider_kind)
        if isinstance(adapter, AnthropicAdapter):
            dropped.clear()
            request = body | {"model": deployment.upstream_model}
            return await adapter.messages(deployment, request, client=client)
        completion = await adapter.chat(deployment, _chat_request(body, deployment, client, dropped))
        return inbound.to_message(completion, model=candidate.name, stop_sequences=body.get("stop_sequences"))

    return answer


def _opener(
    body: dict[str, Any], client: Forwarded
) -> Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[Opened]]:
    """The routed call for a stream: open it and read its first item, so retries and fallbacks
    happen only before anything reaches the client (as router.open_stream does)."""

    async def open_stream(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> Opened:
        adapter = get_adapter(deployment.provider_kind)
        dropped: list[str] = []
        if isinstance(adapter, AnthropicAdapter):
            request = body | {"model": deployment.upstream_model}
            opening: Awaitable[ChatStream] = adapter.open_messages_stream(deployment, request, client=client)
        else:
            opening = adapter.open_chat_stream(deployment, _chat_request(body, deployment, client, dropped))
        first, rest, upstream = await router.read_first(deployment, opening)
        return Opened(first, rest, upstream, passthrough=isinstance(adapter, AnthropicAdapter), dropped=dropped)

    return open_stream


def _sse(event: dict[str, Any]) -> bytes:
    """One event as Anthropic frames it: an `event:` line naming its type, then the data."""
    name = event.get("type")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        name = "message"  # an upstream type we cannot put on an event line as it is
    return b"event: " + name.encode() + b"\ndata: " + answer_json(event) + b"\n\n"


class AnthropicMessages:
    endpoint = "messages"

    def error_response(self, exc: ProxyError, request_id: str) -> HttpResponse:
        return error_response(exc, request_id)

    def identify(self, response: R, request_id: str) -> R:
        return _identified(response, request_id)

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        client = forwarded(request, key)
        body = parse.json_object(request)  # also refuses routing overrides (api_base, base_url, ...)
        exchange.model = body.get("model") if isinstance(body.get("model"), str) else ""
        exchange.stream = stream = checked(body)
        return Call(
            body=body,
            model=body["model"],
            stream=stream,
            output=body["max_tokens"],
            prompt=lambda: limits.chat_prompt(body),
            options={"client": client},
        )

    async def screen(self, call: Call, screening: Screening) -> None:
        """The input checks on the system prompt and the messages (redacted in place)."""
        body = call.body
        system = body.get("system")
        head = [{"role": "system", "content": system}] if system else []
        if (screened := await screening.input(head + list(body["messages"]))) is not None:
            if head:
                body["system"] = screened[0]["content"]
            body["messages"] = screened[len(head) :]
        call.prompt_source = {"messages": [body.get("system") or "", body.get("messages")]}

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        body, dropped = call.body, []
        reply = await router.route(key, model, routed, _answerer(body, call.options["client"], dropped))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        exchange.usage = anthropic_usage(reply.get("usage"))
        exchange.saw_output(message_text(reply.get("content")))
        screening = exchange.screening
        if screening is not None and screening.checks_output:
            for block in reply.get("content") or ():
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    block["text"] = screening.whole(block["text"])
        exchange.response_payload = reply
        response = _identified(HttpResponse(answer_json(reply), content_type="application/json"), exchange.request_id)
        return _said_dropped(response, dropped)

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        return await router.route(key, model, routed, _opener(call.body, call.options["client"]))

    def encoder(
        self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets
    ) -> EventEncoder:
        return EventEncoder(
            exchange, opened, secrets=secrets, public_name=public_name, stop_sequences=call.body.get("stop_sequences")
        )

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return {DROPPED_HEADER: ", ".join(opened.dropped)} if opened.dropped else {}


def _said_dropped(response: R, dropped: list[str]) -> R:
    """Name what a translation left out (thinking, context_management, anthropic-beta, ...), if anything."""
    if dropped:
        response[DROPPED_HEADER] = ", ".join(dropped)
    return response


class EventEncoder:
    """Stream items to Messages events: passed-through events (the public model named in
    `message_start`) or OpenAI chunks translated; usage read, each content block's text through
    its output filter, and secrets split across a block's deltas caught."""

    def __init__(
        self,
        exchange: Exchange,
        opened: Opened,
        *,
        secrets: scrub.Secrets,
        public_name: str,
        stop_sequences: Any,
    ) -> None:
        self.exchange = exchange
        self.public_name = public_name
        self.secrets = secrets
        self.translator = (
            None if opened.passthrough else inbound.StreamTranslator(model=public_name, stop_sequences=stop_sequences)
        )
        screening = exchange.screening
        self.slots = OutputSlots(screening) if screening is not None and screening.checks_output else None
        self.windows: dict[tuple[int, str], scrub.StreamWindow] = {}

    def encode(self, item: dict[str, Any]) -> bytes | None:
        if self.translator is not None:
            return b"".join(self._meter(event) for event in self.translator.feed(item))
        if item.get("type") == "message_start" and isinstance(item.get("message"), dict):
            self.exchange.response_model = str(item["message"].get("model") or "")
            item["message"]["model"] = self.public_name
        return self._meter(item)

    def tail(self) -> bytes:
        if self.translator is None:
            return b""
        return b"".join(self._meter(event) for event in self.translator.finish())

    def error(self, exc: ProxyError) -> bytes:
        return _sse(error_body(exc, self.exchange.request_id))

    def _meter(self, event: dict[str, Any]) -> bytes:
        exchange, kind = self.exchange, event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            started = anthropic_usage(event["message"].get("usage"))
            if started is not None:
                exchange.usage = started
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            delta = event["delta"]
            exchange.saw_output(str(delta.get("text") or delta.get("partial_json") or ""))
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            exchange.saw_finish(event["delta"].get("stop_reason") if isinstance(event.get("delta"), dict) else None)
            # Output tokens (and, from some servers, corrected input tokens) arrive at the end.
            merged = (exchange.usage and as_anthropic(exchange.usage)) or {}
            exchange.usage = anthropic_usage(merged | event["usage"]) or exchange.usage
        released = (
            self._screened(event) if self.slots is not None else None
        )  # after metering: estimates count what was produced
        return (self._hide(released) if released else b"") + self._hide(event)

    def _screened(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The output checks on text deltas, per content block; what a block's filter still holds
        goes out (the event returned) just before the block stops."""
        kind, index = event.get("type"), event.get("index")
        if not isinstance(index, int):
            return None
        slots, delta = self.slots, event.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict) and isinstance(delta.get("text"), str):
            delta["text"] = slots.feed(index, delta["text"])  # type: ignore[union-attr]
        elif kind == "content_block_stop" and (held := slots.close(index)):  # type: ignore[union-attr]
            return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": held}}
        return None

    def _hide(self, event: dict[str, Any]) -> bytes:
        """Known secrets split across a block's deltas (gateway/scrub.py): each text field of a
        block through a window; what a window holds goes out in a delta just before the block stops."""
        index = event.get("index")
        if not self.secrets or not isinstance(index, int):
            return _sse(event)
        windows = self.windows
        kind, delta, out = event.get("type"), event.get("delta"), b""
        if kind == "content_block_delta" and isinstance(delta, dict):
            for name in _DELTA_TEXT:
                if isinstance(delta.get(name), str):
                    window = windows.get((index, name)) or windows.setdefault((index, name), self.secrets.window())
                    delta[name] = window.feed(delta[name])
        elif kind == "content_block_stop":
            for key in [k for k in windows if k[0] == index]:
                if held := windows.pop(key).flush():
                    out += _sse(
                        {"type": "content_block_delta", "index": index, "delta": _DELTA_TEXT[key[1]] | {key[1]: held}}
                    )
        return out + _sse(event)
