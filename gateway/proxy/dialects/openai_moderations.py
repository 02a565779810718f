"""OpenAI moderations (`POST /v1/moderations`): text (and images) in, flags and scores out.

The moderation model is a gateway model like any other: its deployments point at an OpenAI or
OpenAI-compatible provider's `/moderations` with the upstream name (`omni-moderation-latest`,
...), and the request's `model` must be on the key's allow-list. A request without `model` uses
the classifier of the key's guardrail policy when that is a moderation model
(`classifier_kind: moderation`), still subject to the allow-list; with neither it is a 400.
Deployments of other kinds (Anthropic, Azure OpenAI, the demo) are refused with a 400
`unsupported_operation`: they offer no moderation endpoint.

`input` is a string, an array of strings, or an array of content parts (`{"type": "text"}` and
`{"type": "image_url"}`), as OpenAI takes it. The input guardrails screen its text like any
request (redactions go upstream in place of the values). Moderation answers report no usage, so
the log row's input tokens are the gateway's estimate (flagged), and the cost follows the
deployment's prices, if it has any. There is no output to screen and no stream.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from gateway import scrub
from gateway.proxy import limits, router
from gateway.proxy import request as parse
from gateway.proxy.dialects import Call, Opened, name_of
from gateway.proxy.dialects.openai_chat import OpenAIErrors, json_response
from gateway.proxy.errors import BadRequest
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import Screening
from gateway.proxy.stages.usage import openai_usage
from gateway.selectors import KeySnapshot, ModelSnapshot

MAX_INPUTS = 2048  # strings or parts in one request


def moderation_input(body: dict[str, Any]) -> None:
    """Check `input`: a string, a non-empty array of strings, or of text and image_url parts."""
    value = body.get("input")
    if value is None:
        raise BadRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise BadRequest(
            "Invalid type for 'input': expected a string, an array of strings or an array of content parts.",
            param="input",
            code="invalid_type",
        )
    if len(value) > MAX_INPUTS:
        raise BadRequest(
            f"Invalid 'input': at most {MAX_INPUTS} entries, but got {len(value)}.", param="input", code="invalid_value"
        )
    if all(isinstance(item, str) for item in value):
        return
    for index, part in enumerate(value):
        where = f"input[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        image = part.get("image_url") if kind == "image_url" else None
        if isinstance(image, dict) and isinstance(image.get("url"), str):
            continue
        raise BadRequest(
            f"Invalid content part at '{where}': expected {{'type': 'text', 'text': ...}} or "
            "{'type': 'image_url', 'image_url': {'url': ...}} (and strings and parts are not mixed).",
            param=where,
            code="invalid_type",
        )


def _model(body: dict[str, Any], key: KeySnapshot) -> str:
    """The moderation model asked for, or the guardrail policy's moderation classifier."""
    if body.get("model") is not None:
        return parse.required_str(body, "model")
    rules = key.guardrails
    if rules.classifier_model and rules.classifier_kind == "moderation":
        body["model"] = rules.classifier_model
        return rules.classifier_model
    raise BadRequest(
        "Missing required parameter: 'model'. This key's guardrail policy names no moderation classifier to use "
        "by default; name a moderation model this key may use.",
        param="model",
        code="missing_required_parameter",
    )


class OpenAIModerations(OpenAIErrors):
    endpoint = "moderations"

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        body = parse.json_object(request)
        moderation_input(body)
        exchange.model = model = _model(body, key)
        return Call(body=body, model=model, output=0, prompt=lambda: limits.chat_prompt(body))

    async def screen(self, call: Call, screening: Screening) -> None:
        body = call.body
        value = body["input"]
        if isinstance(value, str):
            messages = [{"role": "user", "content": value}]
        elif all(isinstance(item, str) for item in value):
            messages = [{"role": "user", "content": item} for item in value]
        else:
            messages = [{"role": "user", "content": value}]
        if (screened := await screening.input(messages)) is not None:
            if isinstance(value, str):
                body["input"] = screened[0]["content"]
            elif all(isinstance(item, str) for item in value):
                body["input"] = [message["content"] for message in screened]
            else:
                body["input"] = screened[0]["content"]
        call.prompt_source = body["input"]

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        reply = await router.moderations(key, model, call.body, routed)
        exchange.response_model = name_of(reply.get("model"))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        # OpenAI reports no usage for moderations: then the input is estimated (and flagged).
        exchange.usage = openai_usage(reply.get("usage"), output_optional=True)
        exchange.response_payload = reply
        return json_response(reply, exchange.request_id)

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        raise AssertionError("moderations never stream")  # Call.stream is always False here

    def encoder(self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets):  # type: ignore[no-untyped-def]
        raise AssertionError("moderations never stream")

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return {}
