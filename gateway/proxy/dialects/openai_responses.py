"""OpenAI's Responses API (`POST /v1/responses`): the request, the answer, the stream, the errors.

For each deployment the router picks:

- `openai` and `azure_openai`: the request is passed through to the upstream's /responses
  (gateway/proxy/adapters/{openai,azure}.py) with only `model` replaced and `store` set to false
  (the gateway keeps no conversation state, so nothing should be kept upstream on its behalf
  either); a stream is relayed event by event.
- any other kind (`anthropic`, `openai_compatible`, `demo`): the request is translated to an
  OpenAI chat request (gateway/proxy/translate/responses_to_chat.py; an Anthropic deployment's
  adapter takes it on to Messages) and the answer, or each stream chunk, back to the Responses
  API (gateway/proxy/translate/responses_from_chat.py). The `x-symbiosis-dropped` response
  header names what the translation left out.

Refused on every deployment, with a 400 naming the field: `previous_response_id` and
`conversation` (the gateway keeps no conversation state: send the whole input), `background`
(it would be fetched later from an endpoint the gateway does not serve), `prompt` (a stored prompt
the guardrails cannot read), hosted tools (`web_search`, `file_search`, `code_interpreter`, ...:
billed by the provider beyond tokens, so no budget hold bounds them; the tools a client runs
itself, `function`, `custom` and `local_shell`, are served, the last two by passthrough only),
and chat's `max_tokens` or `max_completion_tokens` (the output limit is `max_output_tokens`,
which the budget hold covers).

Errors are OpenAI's error object; a stream that breaks after it started ends with an `error`
event. An upstream's own failed response (`status: failed`, or a `response.failed` event) is
passed on as it came, and logged as the upstream's failure (502 `upstream_error`). Every event
the client receives carries the gateway's own `sequence_number` (events may be added: text an
output filter held back), and every answer names the public model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from gateway import scrub
from gateway.proxy import limits, router
from gateway.proxy import request as parse
from gateway.proxy.adapters import ChatStream, get_adapter
from gateway.proxy.dialects import Call, Opened, name_of
from gateway.proxy.dialects.openai_chat import OpenAIErrors, json_response
from gateway.proxy.errors import BadRequest, ProxyError, UpstreamError, answer_json
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import OutputSlots, Screening
from gateway.proxy.stages.usage import Usage
from gateway.proxy.translate import messages_to_chat
from gateway.proxy.translate import responses_from_chat as outbound
from gateway.proxy.translate import responses_to_chat as inbound
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot
from gateway.writable import MAX_COUNT

DROPPED_HEADER = "x-symbiosis-dropped"
_MAX_NAMED = 16

# Refused whatever the deployment: (why, code).
_STATEFUL = {
    "previous_response_id": "the gateway keeps no conversation state; send the whole conversation in 'input'.",
    "conversation": "the gateway keeps no conversation state; send the whole conversation in 'input'.",
    "prompt": "stored prompts are kept by the provider, where the gateway's guardrails cannot read them; "
    "send 'instructions' and 'input' instead.",
}
_CHAT_LIMITS = ("max_tokens", "max_completion_tokens")
# Tools the client runs itself, as it runs function tools (Codex CLI's): passed through, billed as
# tokens only. Every other non-function type is a hosted tool.
_CLIENT_TOOLS = frozenset({"custom", "local_shell"})
_EVENT_NAME = re.compile(r"[a-z_.]{1,64}")
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SLOT_STRIDE = 1 << 16  # slot of a content part: output_index * stride + content_index


# --- the request ---


def checked(body: dict[str, Any]) -> tuple[int | None, bool]:
    """Check what the gateway itself needs of a Responses request, naming the field at fault, and
    refuse what it cannot serve; (the output limit, stream or not)."""
    parse.required_str(body, "model")
    for field, why in _STATEFUL.items():
        if body.get(field) is not None:
            raise BadRequest(f"'{field}' is not supported: {why}", param=field, code="unsupported_parameter")
    if body.get("background") is not None and parse.optional_bool(body, "background"):
        raise BadRequest(
            "'background' is not supported: the gateway does not serve background responses; leave it out.",
            param="background",
            code="unsupported_parameter",
        )
    for field in _CHAT_LIMITS:
        if field in body:
            raise BadRequest(
                f"Unsupported parameter: '{field}' is a chat completions field; the Responses API's output limit is "
                "'max_output_tokens'.",
                param=field,
                code="unsupported_parameter",
            )
    _check_input(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest(
            "Invalid type for 'instructions': expected a string.", param="instructions", code="invalid_type"
        )
    _check_tools(body.get("tools"))
    _check_number(body, "temperature", 0, 2)
    _check_number(body, "top_p", 0, 1)
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise BadRequest(
            "Invalid 'metadata': expected an object of at most 16 string values.", param="metadata", code="invalid_type"
        )
    for field in ("text", "reasoning"):
        if body.get(field) is not None and not isinstance(body[field], dict):
            raise BadRequest(f"Invalid type for '{field}': expected an object.", param=field, code="invalid_type")
    inbound.reasoning_effort(body)
    parse.optional_bool(body, "store")
    output = limits.output_limit(body, ("max_output_tokens",))
    return output, parse.optional_bool(body, "stream")


def _check_input(value: Any) -> None:
    if value is None:
        raise BadRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise BadRequest(
            "Invalid 'input': expected a string or a non-empty array of input items.",
            param="input",
            code="invalid_type",
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type", item.get("role")), str):
            raise BadRequest(
                f"Invalid input item at 'input[{index}]': expected an object with a 'type' or a 'role'.",
                param=f"input[{index}]",
                code="invalid_type",
            )


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise BadRequest("Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise BadRequest(
                    f"Invalid 'tools[{index}].name': a function tool needs a name.",
                    param=f"tools[{index}].name",
                    code="invalid_type",
                )
            continue
        if kind in _CLIENT_TOOLS:
            continue  # a translation refuses them (gateway/proxy/translate/responses_to_chat.py)
        if not isinstance(kind, str):
            raise BadRequest(
                f"Invalid 'tools[{index}]': expected an object with a 'type'.",
                param=f"tools[{index}]",
                code="invalid_type",
            )
        raise BadRequest(
            f"The hosted tool '{kind[:64]}' (tools[{index}].type) is not supported through the gateway: the provider "
            "bills hosted tools beyond tokens, which no budget hold can bound. Use function tools.",
            param=f"tools[{index}].type",
            code="unsupported_parameter",
        )


def _check_number(body: dict[str, Any], field: str, low: float, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"Invalid type for '{field}': expected a number.", param=field, code="invalid_type")
    if not low <= value <= high:
        raise BadRequest(
            f"Invalid '{field}': expected a number from {low} to {high}, but got {value}.",
            param=field,
            code="invalid_value",
        )


# --- usage and text ---


def _count(value: Any) -> int | None:
    """A reported token count, if believable: a whole number from 0 to what a column holds."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT else None


def responses_usage(reported: Any) -> Usage | None:
    """Usage from the Responses API's usage object (None when absent or not believable)."""
    if not isinstance(reported, dict):
        return None
    prompt, output = _count(reported.get("input_tokens")), _count(reported.get("output_tokens"))
    if prompt is None or output is None:
        return None
    details = reported.get("input_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(input_tokens=prompt, output_tokens=output, cached_tokens=cached or 0)


def output_text(output: Any) -> str:
    """The text a response produced: its messages' text and its function calls' arguments."""
    parts: list[str] = []
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
            parts.append(item["arguments"])
        for part in item.get("content") if isinstance(item.get("content"), list) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "".join(parts)


def _text_parts(output: Any) -> list[tuple[int, int, dict[str, Any]]]:
    """(output index, content index, part) of every output_text part of a response's messages."""
    found = []
    for at, item in enumerate(output if isinstance(output, list) else ()):
        if isinstance(item, dict) and item.get("type") == "message" and isinstance(item.get("content"), list):
            for index, part in enumerate(item["content"]):
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    found.append((at, index, part))
    return found


# --- routing ---


def _chat_request(
    body: dict[str, Any], candidate: ModelSnapshot, deployment: DeploymentSnapshot, dropped: list[str]
) -> dict[str, Any]:
    """The chat request for a deployment that does not serve the Responses API; `dropped` becomes
    what it leaves out."""
    request = inbound.to_chat_request(
        body,
        model=deployment.upstream_model,
        max_tokens_field="max_tokens",
        reasoning=deployment.provider_kind == "openai_compatible"
        and messages_to_chat.has_reasoning(deployment.upstream_model),
    )
    if "max_tokens" not in request and deployment.provider_kind == "anthropic" and candidate.default_max_tokens:
        request["max_tokens"] = candidate.default_max_tokens
    dropped[:] = inbound.dropped_fields(body, request)
    return request


def _answerer(
    body: dict[str, Any], dropped: list[str]
) -> Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[dict]]:
    async def answer(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        request = _chat_request(body, candidate, deployment, dropped)
        completion = await get_adapter(deployment.provider_kind).chat(deployment, request)
        return outbound.to_response(completion, body=body, model=name_of(completion.get("model")) or candidate.name)

    return answer


def _opener(
    body: dict[str, Any], dropped: list[str]
) -> Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[ChatStream]]:
    async def open_stream(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> ChatStream:
        request = _chat_request(body, candidate, deployment, dropped)
        request |= {"stream": True, "stream_options": {"include_usage": True}}
        return await get_adapter(deployment.provider_kind).open_chat_stream(deployment, request)

    return open_stream


def _dropped_headers(dropped: list[str]) -> dict[str, str]:
    """The header naming what a translation left out (none when it left out nothing)."""
    if not dropped:
        return {}
    named = dropped[:_MAX_NAMED] + (["..."] if len(dropped) > _MAX_NAMED else [])
    return {DROPPED_HEADER: ", ".join(named)}


def _sse(event: dict[str, Any]) -> bytes:
    name = event.get("type")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        name = "message"  # an upstream type we cannot put on an event line as it is
    return b"event: " + name.encode() + b"\ndata: " + answer_json(event) + b"\n\n"


class OpenAIResponses(OpenAIErrors):
    endpoint = "responses"

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        body = parse.json_object(request)
        exchange.model = body.get("model") if isinstance(body.get("model"), str) else ""
        output, stream = checked(body)
        exchange.stream = stream
        body["store"] = False  # the gateway keeps no state, and asks the upstream to keep none
        return Call(
            body=body,
            model=body["model"],
            stream=stream,
            output=output,
            output_field="max_output_tokens",
            prompt=lambda: limits.chat_prompt(body),
        )

    async def screen(self, call: Call, screening: Screening) -> None:
        """The input checks on `instructions` and `input` (redacted in place)."""
        body = call.body
        instructions = body.get("instructions")
        head = [{"role": "system", "content": instructions}] if instructions else []
        value = body["input"]
        items = [{"role": "user", "content": value}] if isinstance(value, str) else list(value)
        if (screened := await screening.input(head + items)) is not None:
            if head:
                body["instructions"] = screened[0]["content"]
            rest = screened[len(head) :]
            body["input"] = rest[0]["content"] if isinstance(value, str) else rest
        call.prompt_source = {"messages": [body.get("instructions") or "", body["input"]]}

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        body, dropped = call.body, []
        reply = await router.responses(key, model, body, routed, translated=_answerer(body, dropped))
        if routed.deployment is not None and routed.deployment.provider_kind in router.RESPONSES_SERVED:
            dropped.clear()
        exchange.response_model = name_of(reply.get("model"))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        exchange.usage = responses_usage(reply.get("usage"))
        exchange.saw_output(output_text(reply.get("output")))
        exchange.saw_finish(reply.get("status"))
        if reply.get("status") == "failed":  # passed on as it came; the log says the upstream failed
            exchange.failed(UpstreamError.status, UpstreamError.code)
        screening = exchange.screening
        if screening is not None and screening.checks_output:
            for _, _, part in _text_parts(reply.get("output")):
                part["text"] = screening.whole(part["text"])
        exchange.response_payload = reply
        response = json_response(reply, exchange.request_id)
        for name, value in _dropped_headers(dropped).items():
            response[name] = value
        return response

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        dropped: list[str] = []
        first, rest, upstream, served = await router.open_responses_stream(
            key, model, call.body, routed, translated=_opener(call.body, dropped)
        )
        return Opened(first, rest, upstream, passthrough=served, dropped=[] if served else dropped)

    def encoder(
        self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets
    ) -> EventEncoder:
        return EventEncoder(exchange, opened, secrets=secrets, public_name=public_name, body=call.body)

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return _dropped_headers(opened.dropped)


class EventEncoder:
    """Stream items to Responses events: passed-through events, or chat chunks translated. Every
    event is numbered anew (`sequence_number`) and names the public model; usage is read from the
    terminal event; each output_text part's text goes through its own output filter (what it
    held back goes out in one more delta just before the part's `output_text.done`, and the
    `done` events, which repeat the whole text, carry what was released); secrets split across
    deltas are caught by a window per text part and per function call."""

    def __init__(
        self,
        exchange: Exchange,
        opened: Opened,
        *,
        secrets: scrub.Secrets,
        public_name: str,
        body: dict[str, Any],
    ) -> None:
        self.exchange = exchange
        self.public_name = public_name
        self.secrets = secrets
        self.translator = None if opened.passthrough else outbound.StreamTranslator(body, model=public_name)
        screening = exchange.screening
        self.slots = OutputSlots(screening) if screening is not None and screening.checks_output else None
        self.released: dict[int, str] = {}  # slot -> the text its filter released
        self.windows: dict[tuple[str, int], scrub.StreamWindow] = {}
        self.sequence = 0

    def encode(self, item: dict[str, Any]) -> bytes | None:
        if self.translator is None:
            return self._send(item)
        if not self.translator.started:  # the chunks name the upstream's model, the events the public one
            self.exchange.response_model = name_of(item.get("model"))
        return b"".join(self._send(event) for event in self.translator.feed(item)) or None

    def tail(self) -> bytes:
        if self.translator is None:
            return b""
        return b"".join(self._send(event) for event in self.translator.finish())

    def error(self, exc: ProxyError) -> bytes:
        error = exc.body()["error"]
        event = {"type": "error", "code": exc.code, "message": exc.message, "param": exc.param, "error": error}
        return self._frame(event)

    def _frame(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self.sequence
        self.sequence += 1
        return _sse(event)

    def _send(self, event: dict[str, Any]) -> bytes:
        exchange, kind = self.exchange, event.get("type")
        response = event.get("response")
        if isinstance(response, dict) and isinstance(kind, str) and kind.startswith("response."):
            if kind == "response.created" and self.translator is None:
                exchange.response_model = name_of(response.get("model"))
            response["model"] = self.public_name
            if (usage := responses_usage(response.get("usage"))) is not None:
                exchange.usage = usage
            if kind in _TERMINAL:
                exchange.saw_finish(response.get("status"))
                if kind == "response.failed":  # passed on as it came; the log says the upstream failed
                    exchange.failed(UpstreamError.status, UpstreamError.code)
                self._rewrite_parts(_text_parts(response.get("output")))
        slot = self._slot(event)
        out = b""
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            exchange.saw_output(event["delta"])
            event["delta"] = self._delta(slot, event["delta"])
        elif kind == "response.function_call_arguments.delta" and isinstance(event.get("delta"), str):
            exchange.saw_output(event["delta"])
            event["delta"] = self._hide(("arguments", slot), event["delta"])
        elif kind == "response.output_text.done":
            out += self._held_text(event, slot)
            if slot in self.released:
                event["text"] = self.released[slot]
        elif kind == "response.function_call_arguments.done" and (held := self._flush(("arguments", slot))):
            out += self._frame({**_where(event), "type": "response.function_call_arguments.delta", "delta": held})
        elif kind == "response.content_part.done" and slot in self.released and isinstance(event.get("part"), dict):
            event["part"]["text"] = self.released[slot]
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            at = event.get("output_index") if isinstance(event.get("output_index"), int) else -1
            self._rewrite_parts([(at, index, part) for _, index, part in _text_parts([event["item"]])])
        return out + self._frame(event)

    @staticmethod
    def _slot(event: dict[str, Any]) -> int:
        at, index = event.get("output_index"), event.get("content_index")
        at = at if isinstance(at, int) and not isinstance(at, bool) else 0
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        return at * _SLOT_STRIDE + index

    def _delta(self, slot: int, text: str) -> str:
        if self.slots is not None:
            text = self.slots.feed(slot, text)
            self.released[slot] = self.released.get(slot, "") + text
        return self._hide(("text", slot), text)

    def _held_text(self, event: dict[str, Any], slot: int) -> bytes:
        """What the part's output filter and secret window still hold, as one more delta."""
        held = ""
        if self.slots is not None:
            self.slots.open(slot)
            held = self.slots.close(slot)
            self.released[slot] = self.released.get(slot, "") + held
            held = self._hide(("text", slot), held)
        held += self._flush(("text", slot))
        if not held:
            return b""
        return self._frame({**_where(event), "type": "response.output_text.delta", "delta": held, "logprobs": []})

    def _rewrite_parts(self, parts: list[tuple[int, int, dict[str, Any]]]) -> None:
        for at, index, part in parts:
            slot = at * _SLOT_STRIDE + index
            if slot in self.released:
                part["text"] = self.released[slot]

    def _hide(self, key: tuple[str, int], text: str) -> str:
        if not self.secrets or not text:
            return text
        window = self.windows.get(key) or self.windows.setdefault(key, self.secrets.window())
        return window.feed(text)

    def _flush(self, key: tuple[str, int]) -> str:
        window = self.windows.pop(key, None)
        return window.flush() if window is not None else ""


def _where(event: dict[str, Any]) -> dict[str, Any]:
    return {name: event[name] for name in ("item_id", "output_index", "content_index") if name in event}
