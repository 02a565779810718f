"""The OpenAI-compatible endpoints at /v1. Async end to end; no ORM call in here."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import NinjaAPI, Router

from gateway.proxy import catalog, router
from gateway.proxy import request as parse
from gateway.proxy.adapters import ChatStream
from gateway.proxy.errors import InternalError, NotFound, ProxyError
from gateway.proxy.router import Routed

logger = logging.getLogger("gateway.proxy")
routes = Router(tags=["OpenAI-compatible"])

View = Callable[..., Awaitable[HttpResponse]]


def _json(data: Any, request_id: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), status=status, content_type="application/json")
    response["x-request-id"] = request_id
    return response


def openai_errors(view: View) -> View:
    """Give the request an id and turn every failure into an OpenAI error object."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request_id = parse.new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        try:
            return await view(request, *args, **kwargs)
        except ProxyError as exc:
            return exc.response(request_id)
        except Exception as exc:
            # No traceback text: it can carry values. Where it happened is enough to find it.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            logger.error(
                "unexpected %s at %s:%s (request %s)", type(exc).__name__, frame.filename, frame.lineno, request_id
            )
            return InternalError("The gateway failed unexpectedly; the request id identifies it.").response(request_id)

    return wrapper


@routes.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
@openai_errors
async def chat_completions(request: HttpRequest) -> HttpResponse:
    key = await catalog.authenticate(parse.presented_key(request))
    body = parse.json_object(request)
    model_name = parse.required_str(body, "model")
    parse.chat_messages(body)
    stream = parse.optional_bool(body, "stream")
    options = parse.stream_options(body)
    model = await catalog.resolve(key, model_name)
    routed = Routed()
    if not stream:
        reply = await router.chat(key, model, body, routed)
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        return _json(reply, request.request_id)  # type: ignore[attr-defined]

    wants_usage = options.get("include_usage") is True
    body["stream_options"] = options | {"include_usage": True}  # so usage is always known
    first, rest, upstream = await router.open_stream(key, model, body, routed)
    chunks = router.idle_guarded(rest, routed.deployment.idle_timeout)  # type: ignore[union-attr]
    response = StreamingHttpResponse(
        _relay(first, chunks, upstream, public_name=routed.model.name, wants_usage=wants_usage),  # type: ignore[union-attr]
        content_type="text/event-stream",
    )
    response["x-request-id"] = request.request_id  # type: ignore[attr-defined]
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _relay(
    first: dict, rest: AsyncIterator[dict], upstream: ChatStream, *, public_name: str, wants_usage: bool
) -> AsyncIterator[bytes]:
    """Pass the upstream's chunks on one by one, as they arrive.

    A client that disconnects cancels this generator (Django cancels the response task), and
    `finally` drops the upstream connection. An upstream that fails mid-stream ends the client's
    stream with an error event and no `[DONE]`.
    """

    def encode(chunk: dict) -> bytes | None:
        if not wants_usage and "usage" in chunk:
            if not chunk.get("choices"):
                return None  # the usage-only chunk we asked for on the client's behalf
            del chunk["usage"]
        chunk["model"] = public_name
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    try:
        if (data := encode(first)) is not None:
            yield data
        async for chunk in rest:
            if (data := encode(chunk)) is not None:
                yield data
        yield b"data: [DONE]\n\n"
    except ProxyError as exc:
        yield b"data: " + orjson.dumps(exc.body()) + b"\n\n"
    finally:
        await upstream.aclose()


@routes.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
@openai_errors
async def embeddings(request: HttpRequest) -> HttpResponse:
    key = await catalog.authenticate(parse.presented_key(request))
    body = parse.json_object(request)
    model_name = parse.required_str(body, "model")
    parse.embedding_input(body)
    model = await catalog.resolve(key, model_name)
    routed = Routed()
    reply = await router.embeddings(key, model, body, routed)
    reply["model"] = routed.model.name  # type: ignore[union-attr]
    return _json(reply, request.request_id)  # type: ignore[attr-defined]


def _model_object(model: catalog.ModelSnapshot) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "symbiosis-gateway"}


@routes.get("/models", summary="List the models this key may use")
@openai_errors
async def list_models(request: HttpRequest) -> HttpResponse:
    key = await catalog.authenticate(parse.presented_key(request))
    models = await catalog.visible_models(key)
    return _json({"object": "list", "data": [_model_object(m) for m in models]}, request.request_id)  # type: ignore[attr-defined]


@routes.get("/models/{path:model_id}", summary="Retrieve one model this key may use")
@openai_errors
async def retrieve_model(request: HttpRequest, model_id: str) -> HttpResponse:
    key = await catalog.authenticate(parse.presented_key(request))
    for model in await catalog.visible_models(key):
        if model.name == model_id:
            return _json(_model_object(model), request.request_id)  # type: ignore[attr-defined]
    raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model")


api = NinjaAPI(
    title="Symbiosis Gateway — OpenAI-compatible API",
    version="1",
    urls_namespace="proxy",
    docs_url=None,
    openapi_url=None,
)
api.add_router("", routes)
