"""Anthropic's token counting (`POST /v1/messages/count_tokens`): Messages in, `{"input_tokens": N}` out.

Claude Code and the Anthropic SDK (`client.messages.count_tokens`) ask it before they send. The
request is a Messages request without `max_tokens` (`model`, `messages`, `system`, `tools`, ...);
the key must be valid and the model on its allow-list, and the input guardrails screen it as they
screen /v1/messages (what leaves for a provider obeys the policy). Then:

- a model with Anthropic deployments: passed through to the upstream's
  `/v1/messages/count_tokens` (routed like any request: retries, fallbacks), with only `model`
  replaced and the client's `anthropic-version`, allowed `anthropic-beta` flags and query string;
  the upstream's answer comes back as it is;
- any other model (or a fallback that is not Anthropic): the gateway's own estimate, with the one
  estimator of the gateway (`gateway.guardrails.approx_tokens`, through stages/usage.py) over the
  system prompt, the messages and the tools, and the response header `x-symbiosis-estimate: true`.

Counting is free upstream, so it holds no budget and costs nothing (its log row has zero tokens
and, when it reached a provider, a zero cost), but it is one request against the key's and the
project's requests-per-minute limits (no tokens against the tokens-per-minute ones). Its log rows
have the endpoint `messages/count_tokens`. Errors are Anthropic's error object.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from gateway import scrub
from gateway.proxy import catalog, router
from gateway.proxy import request as parse
from gateway.proxy.adapters import get_adapter
from gateway.proxy.adapters.anthropic import AnthropicAdapter
from gateway.proxy.dialects import Call, Dialect, Opened
from gateway.proxy.dialects.anthropic_messages import AnthropicMessages, forwarded
from gateway.proxy.errors import BadRequest, answer_json
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.admission import Admission
from gateway.proxy.stages.screening import Screening
from gateway.proxy.stages.usage import Usage, estimate_prompt
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

ESTIMATE_HEADER = "x-symbiosis-estimate"  # "true" when the count is the gateway's own estimate


def estimate(body: dict[str, Any]) -> int:
    """The gateway's count of a Messages request's input: its system prompt, messages and tools."""
    return estimate_prompt([body.get("system") or "", body.get("messages") or [], body.get("tools") or []])


class AnthropicCountTokens(AnthropicMessages):
    endpoint = "messages/count_tokens"

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        client = forwarded(request, key)
        body = parse.json_object(request)
        exchange.model = model = parse.required_str(body, "model")
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
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise BadRequest("Invalid 'tools': expected an array of tools.", param="tools", code="invalid_type")
        if "stream" in body:
            raise BadRequest("'stream' is not a parameter of count_tokens.", param="stream", code="invalid_value")
        return Call(body=body, model=model, output=0, options={"client": client})

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        body, client = call.body, call.options["client"]
        estimated = [False]

        async def count(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict[str, Any]:
            adapter = get_adapter(deployment.provider_kind)
            if isinstance(adapter, AnthropicAdapter):
                estimated[0] = False
                return await adapter.count_tokens(
                    deployment, body | {"model": deployment.upstream_model}, client=client
                )
            estimated[0] = True
            return {"input_tokens": estimate(body)}

        if any(d.provider_kind == "anthropic" for d in model.deployments):
            reply = await router.route(key, model, routed, count)
        else:  # nothing to ask upstream: the gateway's own count, no provider involved
            reply, estimated[0] = {"input_tokens": estimate(body)}, True
        exchange.usage = Usage()  # counting is free: nothing to bill, nothing to hold
        exchange.response_payload = reply
        response = HttpResponse(answer_json(reply), content_type="application/json")
        if estimated[0]:
            response[ESTIMATE_HEADER] = "true"
        return self.identify(response, exchange.request_id)

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        raise AssertionError("count_tokens never streams")  # Call.stream is always False here

    def encoder(self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets):  # type: ignore[no-untyped-def]
        raise AssertionError("count_tokens never streams")

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return {}


async def run(request: HttpRequest, dialect: Dialect, exchange: Exchange) -> HttpResponseBase:
    """The pipeline's stages for a request no provider bills: authenticate, parse, resolve the
    model, screen the input, count one request against the rate limits (no budget hold), answer."""
    exchange.key = key = await catalog.authenticate(exchange.presented or None)
    call = dialect.parse(request, key, exchange)
    model = await catalog.resolve(key, call.model)
    exchange.screening = screening = Screening(key)
    await dialect.screen(call, screening)
    exchange.prompt(call.prompt_source, call.body)
    exchange.admission = admission = Admission(key, exchange.request_id)
    await admission.admit_free()
    exchange.routed = routed = Routed()
    return await dialect.answer(call, key, model, routed, exchange)
