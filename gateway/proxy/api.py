"""The OpenAI-compatible endpoints at /v1. Async end to end; no ORM call in here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import NinjaAPI, Router

from gateway import scrub
from gateway.proxy import catalog, guard, limits, metering, router
from gateway.proxy import request as parse
from gateway.proxy.adapters import ChatStream
from gateway.proxy.errors import NotFound, ProxyError, answer_json
from gateway.proxy.messages import messages_routes
from gateway.proxy.metering import Trace
from gateway.proxy.router import Routed

routes = Router(tags=["OpenAI-compatible"])


def _json(data: Any, request_id: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(answer_json(data), status=status, content_type="application/json")
    response["x-request-id"] = request_id
    return response


openai_errors = metering.traced(lambda exc, request_id: exc.response(request_id))


def _name(value: Any) -> str:
    """The model an upstream says answered (telemetry), if it is a name at all."""
    return value[:200] if isinstance(value, str) else ""


def _output_text(choices: Any) -> str:
    """The text a completion (or chunk) produced: content and tool-call arguments."""
    parts: list[str] = []
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    parts.append(function["arguments"])
    return "".join(parts)


@routes.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
@openai_errors
async def chat_completions(request: HttpRequest) -> HttpResponse:
    trace: Trace = request.trace  # type: ignore[attr-defined]
    trace.key = key = await catalog.authenticate(parse.presented_key(request))
    body = parse.json_object(request)
    trace.model = model_name = parse.required_str(body, "model")
    parse.chat_messages(body)
    trace.stream = stream = parse.optional_bool(body, "stream")
    options = parse.stream_options(body)
    output, choices = limits.output_limit(body), limits.choices(body)
    model = await catalog.resolve(key, model_name)
    if (screened := await trace.screen_input(body["messages"])) is not None:
        body["messages"] = screened  # the model sees placeholders, never the redacted values
    trace.prompt(body)
    await trace.admit(
        body,
        stream=stream,
        model=model,
        output=output,
        choices=choices,
        extra_output=limits.predicted(body),
        prompt=lambda: limits.chat_prompt(body),
    )
    trace.routed = routed = Routed()
    if not stream:
        reply = await router.chat(key, model, body, routed)
        trace.response_model = _name(reply.get("model"))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        trace.usage = metering.usage_from(reply.get("usage"))
        trace.saw_output(_output_text(reply.get("choices")))
        _screen_reply(trace, reply)
        trace.response_payload = reply
        return _json(reply, trace.request_id)

    wants_usage = options.get("include_usage") is True
    body["stream_options"] = options | {"include_usage": True}  # so usage is always known
    first, rest, upstream = await router.open_stream(key, model, body, routed)
    trace.response_model = _name(first.get("model"))
    chunks = router.idle_guarded(rest, routed.deployment)  # type: ignore[union-attr]
    response = StreamingHttpResponse(
        _relay(
            first,
            chunks,
            upstream,
            trace=trace,
            public_name=routed.model.name,  # type: ignore[union-attr]
            wants_usage=wants_usage,
            secrets=scrub.current().plus(parse.presented_key(request)),
        ),
        content_type="text/event-stream",
    )
    response["x-request-id"] = trace.request_id
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _screen_reply(trace: Trace, reply: dict) -> None:
    """The output guardrails on each choice's text, through the filter a stream uses (same verdicts)."""
    for choice in reply.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            if (screen := trace.output_filter()) is None:
                return
            message["content"] = screen.feed(message["content"]) + screen.close()
            trace.delivered.append(message["content"])  # type: ignore[union-attr]


class _StreamScreen:
    """The output guardrails over a stream's choices: each choice's text through its own filter,
    released only as far as the filter has cleared it."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.filters: dict[int, guard.OutputFilter] = {}
        self.closed: set[int] = set()

    def chunk(self, choices: list) -> None:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            screen = self.filters.get(index)
            if screen is None:
                if (screen := self.trace.output_filter()) is None:
                    return
                self.filters[index] = screen
            delta = choice.get("delta")
            text = (
                screen.feed(delta["content"])
                if isinstance(delta, dict) and isinstance(delta.get("content"), str)
                else ""
            )
            if choice.get("finish_reason") and index not in self.closed:
                self.closed.add(index)
                text += screen.close()
            if isinstance(delta, dict) and (text or "content" in delta):
                delta["content"] = text
            elif text:
                choice["delta"] = {"content": text}
            if text:
                self.trace.delivered.append(text)  # type: ignore[union-attr]

    def rest(self) -> list[dict]:
        """What the filters still hold when the stream ends without a finish reason (as choices)."""
        choices = []
        for index, screen in self.filters.items():
            if index not in self.closed and (text := screen.close()):
                self.trace.delivered.append(text)  # type: ignore[union-attr]
                choices.append({"index": index, "delta": {"content": text}})
        return choices


_DELTA_TEXT = ("content", "refusal", "reasoning_content", "reasoning")


class _SplitSecrets:
    """Known secrets split across a stream's chunks (gateway/scrub.py): one window per choice and
    text field (and per tool call's arguments). What a window holds is released into the choice's
    finishing chunk, or `rest()` at the end."""

    def __init__(self, secrets: scrub.Secrets) -> None:
        self.secrets = secrets
        self.windows: dict[tuple[int, str, int], scrub.StreamWindow] = {}

    def chunk(self, choices: list) -> None:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index") if isinstance(choice.get("index"), int) else 0
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for name in _DELTA_TEXT:
                    if isinstance(delta.get(name), str):
                        delta[name] = self._feed((index, name, 0), delta[name])
                for call in delta.get("tool_calls") if isinstance(delta.get("tool_calls"), list) else ():
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                        at = call.get("index") if isinstance(call.get("index"), int) else 0
                        function["arguments"] = self._feed((index, "tool_calls", at), function["arguments"])
            if choice.get("finish_reason"):
                self._release(index, choice)

    def rest(self) -> list[dict]:
        """Choices carrying what the windows still hold when the stream ends without finishing."""
        choices: dict[int, dict] = {}
        for index, *_ in list(self.windows):
            if index not in choices:
                choices[index] = {"index": index, "delta": {}}
                self._release(index, choices[index])
        return [choice for choice in choices.values() if choice["delta"]]

    def _feed(self, key: tuple[int, str, int], text: str) -> str:
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = self.secrets.window()
        return window.feed(text)

    def _release(self, index: int, choice: dict) -> None:
        for key in [k for k in self.windows if k[0] == index]:
            if not (held := self.windows.pop(key).flush()):
                continue
            if not isinstance(choice.get("delta"), dict):
                choice["delta"] = {}
            delta, (_, name, at) = choice["delta"], key
            if name == "tool_calls":
                calls = delta["tool_calls"] if isinstance(delta.get("tool_calls"), list) else []
                delta["tool_calls"] = [*calls, {"index": at, "function": {"arguments": held}}]
            else:
                delta[name] = (delta.get(name) or "") + held


async def _relay(
    first: dict,
    rest: AsyncIterator[dict],
    upstream: ChatStream,
    *,
    trace: Trace,
    public_name: str,
    wants_usage: bool,
    secrets: scrub.Secrets,
) -> AsyncIterator[bytes]:
    """Pass the upstream's chunks on one by one, as they arrive, metering as they pass; every
    write scrubbed of the known `secrets`, and secrets split across chunks caught per choice.

    A client that disconnects cancels this generator (Django cancels the response task), and
    `finally` drops the upstream connection. An upstream that fails mid-stream ends the client's
    stream with an error event and no `[DONE]`. Either way the log row is written, with the usage
    the upstream reported or, failing that, an estimate of what it produced.
    """

    def encode(chunk: dict) -> bytes | None:
        if "usage" in chunk:
            if chunk["usage"] is not None:
                trace.usage = metering.usage_from(chunk["usage"]) or trace.usage
            if not wants_usage:
                if not chunk.get("choices"):
                    return None  # the usage-only chunk we asked for on the client's behalf
                del chunk["usage"]
        choices = chunk.get("choices")
        trace.saw_output(_output_text(choices))
        if screen is not None and isinstance(choices, list):
            screen.chunk(choices)
        if hidden is not None and isinstance(choices, list):
            hidden.chunk(choices)
        if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
            trace.saw_finish(*(c.get("finish_reason") for c in choices if isinstance(c, dict)))
        chunk["model"] = public_name
        return b"data: " + answer_json(chunk) + b"\n\n"

    def tail() -> bytes:
        """What the output filters and the secret windows still hold, as a last chunk or two."""
        out = b""
        held = screen.rest() if screen is not None else []
        if hidden is not None:
            hidden.chunk(held)
        for choices in (held, hidden.rest() if hidden is not None else []):
            if choices:
                out += b"data: " + answer_json({**template, "model": public_name, "choices": choices}) + b"\n\n"
        return out

    screen = _StreamScreen(trace) if trace.key is not None and trace.key.guardrails.checks_output else None
    hidden = _SplitSecrets(secrets) if secrets else None
    template = {k: first[k] for k in ("id", "object", "created") if k in first}
    finished = False
    waiting: list[bytes] = []
    try:
        if (data := encode(first)) is not None:
            waiting.append(data)
        if not getattr(upstream, "buffered", 0):
            yield secrets.bytes(b"".join(waiting))
            waiting.clear()
        async for chunk in rest:
            if (data := encode(chunk)) is not None:
                waiting.append(data)
            if waiting and not getattr(upstream, "buffered", 0):
                # Nothing else has arrived: send what has, in one write.
                yield secrets.bytes(b"".join(waiting))
                waiting.clear()
        waiting.append(tail())
        finished = True
        waiting.append(b"data: [DONE]\n\n")
        yield secrets.bytes(b"".join(waiting))
    except ProxyError as exc:
        trace.failed(exc.status, exc.code)
        yield secrets.bytes(b"".join(waiting) + b"data: " + orjson.dumps(exc.body()) + b"\n\n")
    finally:
        if not finished and not trace.error_code:
            trace.failed(499, "client_disconnected")
        trace.finish()  # the row first, before anything that awaits (and could be cancelled)
        await upstream.aclose()
        await trace.release()


@routes.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
@openai_errors
async def embeddings(request: HttpRequest) -> HttpResponse:
    trace: Trace = request.trace  # type: ignore[attr-defined]
    trace.key = key = await catalog.authenticate(parse.presented_key(request))
    body = parse.json_object(request)
    trace.model = model_name = parse.required_str(body, "model")
    parse.embedding_input(body)
    model = await catalog.resolve(key, model_name)
    await _screen_embedding_input(trace, body)
    trace.prompt(body)
    await trace.admit(  # embeddings produce no output tokens
        body, stream=False, model=model, output=0, prompt=lambda: limits.embedding_prompt(body["input"])
    )
    trace.routed = routed = Routed()
    reply = await router.embeddings(key, model, body, routed)
    trace.response_model = _name(reply.get("model"))
    reply["model"] = routed.model.name  # type: ignore[union-attr]
    trace.usage = metering.usage_from(reply.get("usage"), output_optional=True)
    vectors = reply.get("data")
    trace.response_payload = reply | {"data": f"{len(vectors) if isinstance(vectors, list) else 0} embedding(s)"}
    return _json(reply, trace.request_id)


async def _screen_embedding_input(trace: Trace, body: dict) -> None:
    """The input guardrails on embedding inputs (text ones; token arrays carry no text)."""
    texts = body["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        return
    if (screened := await trace.screen_input([{"role": "user", "content": t} for t in texts])) is not None:
        redacted = [m["content"] for m in screened]
        body["input"] = redacted[0] if isinstance(body["input"], str) else redacted


def _model_object(model: catalog.ModelSnapshot) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "symbiosis-gateway"}


@routes.get("/models", summary="List the models this key may use")
@openai_errors
async def list_models(request: HttpRequest) -> HttpResponse:
    request.trace.key = key = await catalog.authenticate(parse.presented_key(request))  # type: ignore[attr-defined]
    models = await catalog.visible_models(key)
    return _json({"object": "list", "data": [_model_object(m) for m in models]}, request.trace.request_id)  # type: ignore[attr-defined]


@routes.get("/models/{path:model_id}", summary="Retrieve one model this key may use")
@openai_errors
async def retrieve_model(request: HttpRequest, model_id: str) -> HttpResponse:
    request.trace.key = key = await catalog.authenticate(parse.presented_key(request))  # type: ignore[attr-defined]
    for model in await catalog.visible_models(key):
        if model.name == model_id:
            return _json(_model_object(model), request.trace.request_id)  # type: ignore[attr-defined]
    raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model")


api = NinjaAPI(
    title="Symbiosis Gateway — OpenAI-compatible API",
    version="1",
    urls_namespace="proxy",
    docs_url=None,
    openapi_url=None,
)
api.add_router("", routes)
api.add_router("", messages_routes)
