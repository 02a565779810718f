"""OpenAI embeddings (`POST /v1/embeddings`): text in, vectors out, no stream and no output tokens.

The input guardrails screen text inputs (token arrays carry no text); the log keeps how many
vectors came back, not the vectors.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from gateway import scrub
from gateway.proxy import limits, router
from gateway.proxy import request as parse
from gateway.proxy.dialects import Call, Opened, name_of
from gateway.proxy.dialects.openai_chat import OpenAIErrors, json_response
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import Screening
from gateway.proxy.stages.usage import openai_usage
from gateway.selectors import KeySnapshot, ModelSnapshot


class OpenAIEmbeddings(OpenAIErrors):
    endpoint = "embeddings"

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        body = parse.json_object(request)
        exchange.model = model = parse.required_str(body, "model")
        parse.embedding_input(body)
        return Call(body=body, model=model, output=0, prompt=lambda: limits.embedding_prompt(body["input"]))

    async def screen(self, call: Call, screening: Screening) -> None:
        body = call.body
        texts = body["input"]
        if isinstance(texts, str):
            texts = [texts]
        if all(isinstance(t, str) for t in texts):
            screened = await screening.input([{"role": "user", "content": t} for t in texts])
            if screened is not None:
                redacted = [m["content"] for m in screened]
                body["input"] = redacted[0] if isinstance(body["input"], str) else redacted
        call.prompt_source = body.get("input") or ""

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        reply = await router.embeddings(key, model, call.body, routed)
        exchange.response_model = name_of(reply.get("model"))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        exchange.usage = openai_usage(reply.get("usage"), output_optional=True)
        vectors = reply.get("data")
        exchange.response_payload = reply | {"data": f"{len(vectors) if isinstance(vectors, list) else 0} embedding(s)"}
        return json_response(reply, exchange.request_id)

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        raise AssertionError("embeddings never stream")  # Call.stream is always False here

    def encoder(self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets):  # type: ignore[no-untyped-def]
        raise AssertionError("embeddings never stream")

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return {}
