"""OpenAI chat completions (`POST /v1/chat/completions`): the request, the answer, the stream, the errors.

Any deployment answers it: the adapters speak OpenAI's shapes to the pipeline (an Anthropic
deployment translates inside its adapter, gateway/proxy/translate/chat_to_messages.py). A stream
always asks the upstream for usage (`stream_options.include_usage`), and the usage-only chunk is
dropped again when the client did not ask for it.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from gateway import scrub
from gateway.proxy import limits, router
from gateway.proxy import request as parse
from gateway.proxy.dialects import Call, Opened, name_of
from gateway.proxy.errors import ProxyError, answer_json
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import OutputSlots, Screening
from gateway.proxy.stages.usage import openai_usage
from gateway.selectors import KeySnapshot, ModelSnapshot

# The text fields of a chunk's delta that can carry a secret split across chunks.
_DELTA_TEXT = ("content", "refusal", "reasoning_content", "reasoning")


def output_text(choices: Any) -> str:
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


def json_response(data: Any, request_id: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(answer_json(data), status=status, content_type="application/json")
    response["x-request-id"] = request_id
    return response


class OpenAIErrors:
    """OpenAI's error object, and the request id where OpenAI's SDKs look for it (`x-request-id`):
    every OpenAI-shaped dialect's."""

    def error_response(self, exc: ProxyError, request_id: str) -> HttpResponse:
        return exc.response(request_id)

    def identify(self, response: HttpResponse, request_id: str) -> HttpResponse:
        response["x-request-id"] = request_id
        return response


class OpenAIChat(OpenAIErrors):
    endpoint = "chat/completions"

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        body = parse.json_object(request)
        exchange.model = model = parse.required_str(body, "model")
        parse.chat_messages(body)
        exchange.stream = stream = parse.optional_bool(body, "stream")
        options = parse.stream_options(body)
        output, choices = limits.output_limit(body), limits.choices(body)
        return Call(
            body=body,
            model=model,
            stream=stream,
            output=output,
            choices=choices,
            extra_output=limits.predicted(body),
            prompt=lambda: limits.chat_prompt(body),
            options={"stream_options": options},
        )

    async def screen(self, call: Call, screening: Screening) -> None:
        body = call.body
        if (screened := await screening.input(body["messages"])) is not None:
            body["messages"] = screened  # the model sees placeholders, never the redacted values
        call.prompt_source = body.get("messages") or ""

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        reply = await router.chat(key, model, call.body, routed)
        exchange.response_model = name_of(reply.get("model"))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        exchange.usage = openai_usage(reply.get("usage"))
        exchange.saw_output(output_text(reply.get("choices")))
        screening = exchange.screening
        if screening is not None and screening.checks_output:
            for choice in reply.get("choices") or ():
                message = choice.get("message") if isinstance(choice, dict) else None
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    message["content"] = screening.whole(message["content"])
        exchange.response_payload = reply
        return json_response(reply, exchange.request_id)

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        body = call.body
        body["stream_options"] = call.options["stream_options"] | {"include_usage": True}  # usage always known
        first, rest, upstream = await router.open_stream(key, model, body, routed)
        return Opened(first=first, rest=rest, upstream=upstream)

    def encoder(
        self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets
    ) -> ChunkEncoder:
        exchange.response_model = name_of(opened.first.get("model"))
        return ChunkEncoder(
            exchange,
            secrets=secrets,
            public_name=public_name,
            wants_usage=call.options["stream_options"].get("include_usage") is True,
            template={k: opened.first[k] for k in ("id", "object", "created") if k in opened.first},
            upstream=opened.upstream,
        )

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return {}


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

    def content(self, index: int, text: str) -> str:
        """A choice's content text, scrubbed (held in part if it may begin a secret)."""
        return self._feed((index, "content", 0), text)

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


_USAGE_NULL = b',"usage":null'
# The fields of the common chunk (OpenAI's, vLLM's, ...); a chunk with others is encoded again.
_PLAIN_CHUNK = frozenset(
    ("id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier", "obfuscation")
)
_PLAIN_CHOICE = frozenset(("index", "delta", "finish_reason", "logprobs"))


def _plain_text(chunk: dict[str, Any]) -> str | None:
    """The text of the common chunk, else None: known fields only, one choice whose delta holds
    only its content (and role), no finish reason, no logprobs, no usage, a model name."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return None
    if type(chunk.get("model")) is not str or not chunk.keys() <= _PLAIN_CHUNK or not choice.keys() <= _PLAIN_CHOICE:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or len(delta) > 2 or (len(delta) == 2 and "role" not in delta):
        return None
    text = delta.get("content")
    return text if type(text) is str else None


class ChunkEncoder:
    """chat.completion.chunk dicts to `data:` events: the public model name, usage read (and the
    chunk carrying only the usage dropped unless asked for), each choice's text through its output
    filter and its secret windows.

    The byte-level path: the common chunk (text only, see `_plain_text`), when no output check
    reads it and the secret window releases its text unchanged, goes out as the upstream's own
    bytes (`OpenAIStream.last`) with only the model name rewritten in place (and the usage field
    the client did not ask for cut out), instead of being encoded again. The upstream's JSON was
    still parsed, so a malformed event never reaches the client. Any doubt (another layout of the
    bytes, a name found more than once) falls back to encoding the chunk."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        secrets: scrub.Secrets,
        public_name: str,
        wants_usage: bool,
        template: dict[str, Any],
        upstream: Any = None,
    ) -> None:
        self.exchange = exchange
        self.public_name = public_name
        self.wants_usage = wants_usage
        self.template = template
        screening = exchange.screening
        self.slots = OutputSlots(screening) if screening is not None and screening.checks_output else None
        self.hidden = _SplitSecrets(secrets) if secrets else None
        self.upstream = upstream if self.slots is None else None  # the byte-level path's source
        self.renamed = b'"model":' + orjson.dumps(public_name)
        self.names: dict[str, bytes] = {}  # an upstream model name as it appears in the bytes

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        last = getattr(self.upstream, "last", None)
        if last is not None and last[0] is chunk and (text := _plain_text(chunk)) is not None:
            hidden = self.hidden
            index = chunk["choices"][0].get("index", 0)
            released = hidden.content(index if type(index) is int else 0, text) if hidden is not None else text
            self.exchange.saw_output(text)
            if released == text and (data := self._as_sent(chunk, last[1])) is not None:
                return data
            chunk["choices"][0]["delta"]["content"] = released
            return self._encoded(chunk)
        return self._encode(chunk)

    def _as_sent(self, chunk: dict[str, Any], data: bytes) -> bytes | None:
        """The upstream's bytes with the model renamed, or None where that is not certain."""
        name = chunk["model"]
        found = self.names.get(name)
        if found is None:
            found = self.names[name] = b'"model":' + orjson.dumps(name)
        if data.count(found) != 1 or b"\r" in data:  # one model field; no CR a client would split a line on
            return None
        data = data.replace(found, self.renamed)
        if "usage" in chunk and not self.wants_usage:
            if data.count(_USAGE_NULL) != 1:
                return None
            data = data.replace(_USAGE_NULL, b"")
        return b"data: " + data + b"\n\n"

    def _encoded(self, chunk: dict[str, Any]) -> bytes:
        if not self.wants_usage:
            chunk.pop("usage", None)
        chunk["model"] = self.public_name
        return b"data: " + answer_json(chunk) + b"\n\n"

    def _encode(self, chunk: dict[str, Any]) -> bytes | None:
        exchange = self.exchange
        if "usage" in chunk:
            if chunk["usage"] is not None:
                exchange.usage = openai_usage(chunk["usage"]) or exchange.usage
            if not self.wants_usage:
                if not chunk.get("choices"):
                    return None  # the usage-only chunk we asked for on the client's behalf
                del chunk["usage"]
        choices = chunk.get("choices")
        exchange.saw_output(output_text(choices))
        if isinstance(choices, list):
            if self.slots is not None:
                self._screen(choices)
            if self.hidden is not None:
                self.hidden.chunk(choices)
            if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
                exchange.saw_finish(*(c.get("finish_reason") for c in choices if isinstance(c, dict)))
        chunk["model"] = self.public_name
        return b"data: " + answer_json(chunk) + b"\n\n"

    def _screen(self, choices: list) -> None:
        slots = self.slots
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            slots.open(index)  # type: ignore[union-attr]
            delta = choice.get("delta")
            text = (
                slots.feed(index, delta["content"])  # type: ignore[union-attr]
                if isinstance(delta, dict) and isinstance(delta.get("content"), str)
                else ""
            )
            if choice.get("finish_reason"):
                text += slots.close(index)  # type: ignore[union-attr]
            if isinstance(delta, dict) and (text or "content" in delta):
                delta["content"] = text
            elif text:
                choice["delta"] = {"content": text}

    def tail(self) -> bytes:
        """What the output filters and the secret windows still hold, as a last chunk or two, and [DONE]."""
        out = b""
        held = []
        if self.slots is not None:
            held = [
                {"index": slot, "delta": {"content": text}}
                for slot in self.slots.open_slots()
                if (text := self.slots.close(slot))
            ]
        if self.hidden is not None:
            self.hidden.chunk(held)
        for choices in (held, self.hidden.rest() if self.hidden is not None else []):
            if choices:
                out += (
                    b"data: " + answer_json({**self.template, "model": self.public_name, "choices": choices}) + b"\n\n"
                )
        return out + b"data: [DONE]\n\n"

    def error(self, exc: ProxyError) -> bytes:
        return b"data: " + orjson.dumps(exc.body()) + b"\n\n"
