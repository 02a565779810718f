"""The /v1 endpoints: each names its dialect and hands the request to the one pipeline
(gateway/proxy/pipeline.py). Async end to end; no ORM call in here."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from ninja import NinjaAPI, Router

from gateway.proxy import catalog, pipeline
from gateway.proxy.dialects import Dialect, anthropic_count_tokens
from gateway.proxy.dialects.anthropic_count_tokens import AnthropicCountTokens
from gateway.proxy.dialects.anthropic_messages import AnthropicMessages
from gateway.proxy.dialects.openai_chat import OpenAIChat, json_response
from gateway.proxy.dialects.openai_completions import OpenAICompletions
from gateway.proxy.dialects.openai_embeddings import OpenAIEmbeddings
from gateway.proxy.dialects.openai_moderations import OpenAIModerations
from gateway.proxy.dialects.openai_responses import OpenAIResponses
from gateway.proxy.errors import NotFound
from gateway.proxy.exchange import Exchange

OPENAI_CHAT = OpenAIChat()
OPENAI_EMBEDDINGS = OpenAIEmbeddings()
ANTHROPIC_MESSAGES = AnthropicMessages()
OPENAI_RESPONSES = OpenAIResponses()
OPENAI_COMPLETIONS = OpenAICompletions()
OPENAI_MODERATIONS = OpenAIModerations()
ANTHROPIC_COUNT_TOKENS = AnthropicCountTokens()

openai_routes = Router(tags=["OpenAI-compatible"])
anthropic_routes = Router(tags=["Anthropic-compatible"])


@openai_routes.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, OPENAI_CHAT)


@openai_routes.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, OPENAI_EMBEDDINGS)


@openai_routes.post("/responses", summary="Create a model response (OpenAI's Responses API)")
async def create_response(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, OPENAI_RESPONSES)


@anthropic_routes.post("/messages", summary="Create a message (Anthropic-compatible)")
async def create_message(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, ANTHROPIC_MESSAGES)


@openai_routes.post("/completions", summary="Create a text completion (OpenAI-compatible, legacy)")
async def completions(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, OPENAI_COMPLETIONS)


@openai_routes.post("/moderations", summary="Classify text and images for harmful content (OpenAI-compatible)")
async def moderations(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, OPENAI_MODERATIONS)


@anthropic_routes.post("/messages/count_tokens", summary="Count a message's input tokens (Anthropic-compatible)")
async def count_message_tokens(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, ANTHROPIC_COUNT_TOKENS, anthropic_count_tokens.run)


def _model_object(model: catalog.ModelSnapshot) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "symbiosis-gateway"}


async def _list_models(request: HttpRequest, dialect: Dialect, exchange: Exchange) -> HttpResponseBase:
    exchange.key = key = await catalog.authenticate(exchange.presented or None)
    models = await catalog.visible_models(key)
    return json_response({"object": "list", "data": [_model_object(m) for m in models]}, exchange.request_id)


@openai_routes.get("/models", summary="List the models this key may use")
async def list_models(request: HttpRequest) -> HttpResponseBase:
    return await pipeline.serve(request, OPENAI_CHAT, _list_models)


@openai_routes.get("/models/{path:model_id}", summary="Retrieve one model this key may use")
async def retrieve_model(request: HttpRequest, model_id: str) -> HttpResponseBase:
    async def find(request: HttpRequest, dialect: Dialect, exchange: Exchange) -> HttpResponseBase:
        exchange.key = key = await catalog.authenticate(exchange.presented or None)
        for model in await catalog.visible_models(key):
            if model.name == model_id:
                return json_response(_model_object(model), exchange.request_id)
        raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model")

    return await pipeline.serve(request, OPENAI_CHAT, find)


api = NinjaAPI(
    title="Symbiosis Gateway — OpenAI-compatible API",
    version="1",
    urls_namespace="proxy",
    docs_url=None,
    openapi_url=None,
)
api.add_router("", openai_routes)
api.add_router("", anthropic_routes)
