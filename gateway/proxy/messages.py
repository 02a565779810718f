"""The Anthropic-compatible endpoint, POST /v1/messages. Async end to end; no ORM call in here.

Claude SDKs and tools that take ANTHROPIC_BASE_URL send their requests here unchanged: the
virtual key in `x-api-key` or `Authorization: Bearer`, any `anthropic-version`. The checks
(key, model allow-list, approved provider) and the routing (retries, fallbacks, circuit breakers)
are the OpenAI endpoints'; only the shapes differ. For each deployment the router picks:

- Anthropic: the request is passed through with only `model` replaced by the upstream name; the
  client's `anthropic-version`, `anthropic-beta` flags and query string (`?beta=true`) go with it.
  The gateway checks only what it needs itself (`checked`): the upstream judges the rest, so a
  request the real API accepts is never refused here. A stream is relayed event by event,
  unchanged except that `message_start` names the public model.
- any other kind: the request is translated to an OpenAI chat request and the answer, or each
  stream chunk, back to Messages (gateway/proxy/anthropic_inbound.py); the `x-symbiosis-dropped`
  response header names what the translation left out (thinking, context_management, ...).

Betas the guardrail policy denies (`denied_betas`) are refused with 403 `beta_not_allowed`,
whatever the deployment.

Every error is Anthropic's error object with the matching status; a stream that breaks after it
started ends with an `error` event and no `message_stop`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import Router

from gateway import scrub
from gateway.proxy import anthropic_inbound as inbound
from gateway.proxy import catalog, limits, metering, router
from gateway.proxy import request as parse
from gateway.proxy.adapters import ChatStream, get_adapter
from gateway.proxy.adapters.anthropic import AnthropicAdapter, Forwarded
from gateway.proxy.errors import BadRequest, PermissionDenied, ProxyError, answer_json
from gateway.proxy.metering import Trace
from gateway.proxy.router import Routed
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

messages_routes = Router(tags=["Anthropic-compatible"])

R = TypeVar("R", bound=HttpResponseBase)

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
# Where each provider kind wants the output limit (see anthropic_inbound.to_chat_request); max_tokens elsewhere.
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


anthropic_errors = metering.traced(error_response)


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
    and for the translation (anthropic_inbound) otherwise.
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


# --- the endpoint ---


def _json(data: dict[str, Any], request_id: str) -> HttpResponse:
    return _identified(HttpResponse(answer_json(data), content_type="application/json"), request_id)


@messages_routes.post("/messages", summary="Create a message (Anthropic-compatible)")
@anthropic_errors
async def create_message(request: HttpRequest) -> HttpResponseBase:
    trace: Trace = request.trace  # type: ignore[attr-defined]
    request_id = trace.request_id
    trace.key = key = await catalog.authenticate(parse.presented_key(request))
    client = forwarded(request, key)
    body = parse.json_object(request)  # also refuses routing overrides (api_base, base_url, ...)
    trace.model = body.get("model") if isinstance(body.get("model"), str) else ""
    trace.stream = stream = checked(body)
    model = await catalog.resolve(key, body["model"])
    await _screen_input(trace, body)
    trace.prompt({"messages": [body.get("system") or "", body.get("messages")]})
    trace.request_payload = body
    await trace.admit(
        body, stream=stream, model=model, output=body["max_tokens"], prompt=lambda: limits.chat_prompt(body)
    )
    trace.routed = routed = Routed()
    if not stream:
        dropped: list[str] = []
        reply = await router.route(key, model, routed, _answerer(body, client, dropped))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        trace.usage = metering.anthropic_usage(reply.get("usage"))
        trace.saw_output(_message_text(reply.get("content")))
        _screen_reply(trace, reply)
        trace.response_payload = reply
        return _said_dropped(_json(reply, request_id), dropped)

    opened = await router.route(key, model, routed, _opener(body, client))
    events = _relay(
        opened,
        router.idle_guarded(opened.rest, routed.deployment),  # type: ignore[union-attr]
        public_name=routed.model.name,  # type: ignore[union-attr]
        stop_sequences=body.get("stop_sequences"),
        trace=trace,
        secrets=scrub.current().plus(parse.presented_key(request)),
    )
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return _said_dropped(_identified(response, request_id), opened.dropped)


def _said_dropped(response: R, dropped: list[str]) -> R:
    """Name what a translation left out (thinking, context_management, anthropic-beta, ...), if anything."""
    if dropped:
        response[DROPPED_HEADER] = ", ".join(dropped)
    return response


async def _screen_input(trace: Trace, body: dict[str, Any]) -> None:
    """The input guardrails on the system prompt and the messages (redacted in place)."""
    system = body.get("system")
    head = [{"role": "system", "content": system}] if system else []
    if (screened := await trace.screen_input(head + list(body["messages"]))) is not None:
        if head:
            body["system"] = screened[0]["content"]
        body["messages"] = screened[len(head) :]


def _screen_reply(trace: Trace, reply: dict[str, Any]) -> None:
    """The output guardrails on each text block, through the filter a stream uses (same verdicts)."""
    for block in reply.get("content") or ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            if (screen := trace.output_filter()) is None:
                return
            block["text"] = screen.feed(block["text"]) + screen.close()
            trace.delivered.append(block["text"])  # type: ignore[union-attr]


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


@dataclass
class _Opened:
    """A stream whose first item has arrived: Messages events (passed through) or OpenAI chunks."""

    first: dict[str, Any]
    rest: AsyncIterator[dict[str, Any]]
    upstream: ChatStream
    passthrough: bool
    dropped: list[str]  # what the translation left out (nothing when passed through)


def _opener(
    body: dict[str, Any], client: Forwarded
) -> Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[_Opened]]:
    """The routed call for a stream: open it and read its first item, so retries and fallbacks
    happen only before anything reaches the client (as router.open_stream does)."""

    async def open_stream(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> _Opened:
        adapter = get_adapter(deployment.provider_kind)
        dropped: list[str] = []
        if isinstance(adapter, AnthropicAdapter):
            request = body | {"model": deployment.upstream_model}
            opening: Awaitable[ChatStream] = adapter.open_messages_stream(deployment, request, client=client)
        else:
            opening = adapter.open_chat_stream(deployment, _chat_request(body, deployment, client, dropped))
        first, rest, upstream = await router.read_first(deployment, opening)
        return _Opened(first, rest, upstream, passthrough=isinstance(adapter, AnthropicAdapter), dropped=dropped)

    return open_stream


def _sse(event: dict[str, Any]) -> bytes:
    """One event as Anthropic frames it: an `event:` line naming its type, then the data."""
    name = event.get("type")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        name = "message"  # an upstream type we cannot put on an event line as it is
    return b"event: " + name.encode() + b"\ndata: " + answer_json(event) + b"\n\n"


async def _relay(
    opened: _Opened,
    rest: AsyncIterator[dict[str, Any]],
    *,
    public_name: str,
    stop_sequences: Any,
    trace: Trace,
    secrets: scrub.Secrets,
) -> AsyncIterator[bytes]:
    """Send the stream on as Messages events, as they arrive; every write scrubbed of the known
    `secrets`, and secrets split across a block's deltas caught.

    A client that disconnects cancels this generator and `finally` drops the upstream connection.
    An upstream that fails mid-stream ends the client's stream with an `error` event and no
    `message_stop`.
    """
    translator = (
        None if opened.passthrough else inbound.StreamTranslator(model=public_name, stop_sequences=stop_sequences)
    )

    screens: dict[int, Any] = {}
    screening = trace.key is not None and trace.key.guardrails.checks_output

    def screened(event: dict[str, Any]) -> dict[str, Any] | None:
        """The output guardrails on text deltas, per content block; what a block's filter still
        holds goes out (the event returned) just before the block stops."""
        kind, index = event.get("type"), event.get("index")
        if not isinstance(index, int):
            return None
        delta = event.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict) and isinstance(delta.get("text"), str):
            if index not in screens and (screen := trace.output_filter()) is not None:
                screens[index] = screen
            if index in screens:
                delta["text"] = screens[index].feed(delta["text"])
                trace.delivered.append(delta["text"])  # type: ignore[union-attr]
        elif kind == "content_block_stop" and index in screens and (rest := screens.pop(index).close()):
            trace.delivered.append(rest)  # type: ignore[union-attr]
            return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": rest}}
        return None

    def meter(event: dict[str, Any]) -> bytes:
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            started = metering.anthropic_usage(event["message"].get("usage"))
            if started is not None:
                trace.usage = started
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            delta = event["delta"]
            trace.saw_output(str(delta.get("text") or delta.get("partial_json") or ""))
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            trace.saw_finish(event["delta"].get("stop_reason") if isinstance(event.get("delta"), dict) else None)
            # Output tokens (and, from some servers, corrected input tokens) arrive at the end.
            merged = (trace.usage and _as_anthropic(trace.usage)) or {}
            trace.usage = metering.anthropic_usage(merged | event["usage"]) or trace.usage
        released = screened(event) if screening else None  # after metering: estimates count what was produced
        return (hide(released) if released else b"") + hide(event)

    windows: dict[tuple[int, str], scrub.StreamWindow] = {}

    def hide(event: dict[str, Any]) -> bytes:
        """Known secrets split across a block's deltas (gateway/scrub.py): each text field of a
        block through a window; what a window holds goes out in a delta just before the block stops."""
        index = event.get("index")
        if not secrets or not isinstance(index, int):
            return _sse(event)
        kind, delta, out = event.get("type"), event.get("delta"), b""
        if kind == "content_block_delta" and isinstance(delta, dict):
            for name in _DELTA_TEXT:
                if isinstance(delta.get(name), str):
                    window = windows.get((index, name)) or windows.setdefault((index, name), secrets.window())
                    delta[name] = window.feed(delta[name])
        elif kind == "content_block_stop":
            for key in [k for k in windows if k[0] == index]:
                if held := windows.pop(key).flush():
                    out += _sse(
                        {"type": "content_block_delta", "index": index, "delta": _DELTA_TEXT[key[1]] | {key[1]: held}}
                    )
        return out + _sse(event)

    def encode(item: dict[str, Any]) -> bytes:
        if translator is not None:
            return b"".join(meter(event) for event in translator.feed(item))
        if item.get("type") == "message_start" and isinstance(item.get("message"), dict):
            trace.response_model = str(item["message"].get("model") or "")
            item["message"]["model"] = public_name
        return meter(item)

    finished = False
    try:
        if data := encode(opened.first):
            yield secrets.bytes(data)
        async for item in rest:
            if data := encode(item):
                yield secrets.bytes(data)
        if translator is not None:
            yield secrets.bytes(b"".join(meter(event) for event in translator.finish()))
        finished = True
    except ProxyError as exc:
        trace.failed(exc.status, exc.code)
        yield secrets.bytes(_sse(error_body(exc, trace.request_id)))
    finally:
        if not finished and not trace.error_code:
            trace.failed(499, "client_disconnected")
        trace.finish()  # the row first, before anything that awaits (and could be cancelled)
        await opened.upstream.aclose()
        await trace.release()


def _as_anthropic(usage: metering.Usage) -> dict[str, int]:
    """Our usage back in Anthropic's terms, to merge a message_delta's counts into it."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _message_text(content: Any) -> str:
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
