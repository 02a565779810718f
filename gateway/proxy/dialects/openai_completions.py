"""OpenAI legacy text completions (`POST /v1/completions`): the request, the answer, the stream.

Passed through to OpenAI, Azure OpenAI and OpenAI-compatible deployments (vLLM, llama.cpp and
TGI serve `/completions`); the router refuses the others (Anthropic, the demo provider) with a
400 `unsupported_operation` naming the provider, since text completion has no faithful Messages
equivalent (`suffix`, `echo`, `logprobs`, `best_of`).

What the gateway checks itself, naming the field at fault: `prompt` as a string or a non-empty
array of strings (token arrays are refused: the guardrails and the budget bound read text),
`max_tokens` (the one output limit), `n` and `best_of` (the upstream generates `best_of`
candidates for each prompt and bills them all, so the hold covers max_tokens x max(n, best_of) x
the number of prompts), `echo`, `suffix`, `logprobs`, `stop`, `stream` and `stream_options`. The
rest passes through unchanged. Like chat, a stream always asks the upstream for usage and drops
the usage-only chunk again when the client did not ask for it; each choice's text goes through
its own output filter and secret window, as chat's does (gateway/proxy/dialects/openai_chat.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from gateway import scrub
from gateway.proxy import limits, router
from gateway.proxy import request as parse
from gateway.proxy.dialects import Call, Opened, name_of
from gateway.proxy.dialects.openai_chat import OpenAIErrors, json_response
from gateway.proxy.errors import BadRequest, ProxyError, answer_json
from gateway.proxy.exchange import Exchange
from gateway.proxy.router import Routed
from gateway.proxy.stages.screening import OutputSlots, Screening
from gateway.proxy.stages.usage import openai_usage
from gateway.selectors import KeySnapshot, ModelSnapshot

MAX_PROMPTS = 2048  # prompts in one request (each is answered `best_of` times)
MAX_BEST_OF = 20  # OpenAI's own limit
MAX_LOGPROBS = 20  # OpenAI allows 5; self-hosted servers more
MAX_STOP = 16  # stop sequences (OpenAI allows 4; the upstream judges past that)


def prompts(body: dict[str, Any]) -> list[str]:
    """The request's prompts as a list (a string is one prompt); 400 for anything else."""
    if "prompt" not in body or body["prompt"] is None:
        raise BadRequest("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    value = body["prompt"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        if len(value) > MAX_PROMPTS:
            raise BadRequest(
                f"Invalid 'prompt': at most {MAX_PROMPTS} prompts in one request, but got {len(value)}.",
                param="prompt",
                code="invalid_value",
            )
        return value
    if (
        isinstance(value, list)
        and value
        and all(_token_array(p) for p in (value if isinstance(value[0], list) else [value]))
    ):
        raise BadRequest(
            "'prompt' as token arrays is not supported by this gateway: its guardrails and budget bounds read "
            "text. Send the prompt as a string or an array of strings.",
            param="prompt",
            code="unsupported_value",
        )
    raise BadRequest(
        "Invalid type for 'prompt': expected a string or a non-empty array of strings.",
        param="prompt",
        code="invalid_type",
    )


def _token_array(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _optional_int(body: dict[str, Any], field: str, *, low: int, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"Invalid type for '{field}': expected an integer.", param=field, code="invalid_type")
    if not low <= value <= high:
        raise BadRequest(
            f"Invalid '{field}': expected an integer from {low} to {high}, but got {value}.",
            param=field,
            code="invalid_value",
        )
    return value


def _check_text_fields(body: dict[str, Any]) -> None:
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise BadRequest("Invalid type for 'suffix': expected a string.", param="suffix", code="invalid_type")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest(
                "Invalid type for 'stop': expected a string or an array of strings.", param="stop", code="invalid_type"
            )
        if len(stop) > MAX_STOP:
            raise BadRequest(f"Invalid 'stop': at most {MAX_STOP} stop sequences.", param="stop", code="invalid_value")


def completion_text(choices: Any) -> str:
    """The text a completion (or a chunk) produced."""
    return "".join(
        c["text"]
        for c in (choices if isinstance(choices, list) else ())
        if isinstance(c, dict) and isinstance(c.get("text"), str)
    )


class OpenAICompletions(OpenAIErrors):
    endpoint = "completions"

    def parse(self, request: HttpRequest, key: KeySnapshot, exchange: Exchange) -> Call:
        body = parse.json_object(request)
        exchange.model = model = parse.required_str(body, "model")
        texts = prompts(body)
        exchange.stream = stream = parse.optional_bool(body, "stream")
        options = parse.stream_options(body)
        parse.optional_bool(body, "echo")
        _check_text_fields(body)
        _optional_int(body, "logprobs", low=0, high=MAX_LOGPROBS)
        output, n = limits.output_limit(body, ("max_tokens",)), limits.choices(body)
        best_of = _optional_int(body, "best_of", low=1, high=MAX_BEST_OF)
        if best_of is not None and best_of < n:
            raise BadRequest(
                f"Invalid 'best_of': it must be at least 'n' ({n}), but got {best_of}.",
                param="best_of",
                code="invalid_value",
            )
        return Call(
            body=body,
            model=model,
            stream=stream,
            output=output,
            choices=max(n, best_of or n) * len(texts),  # every candidate of every prompt is billed
            output_field="max_tokens",
            prompt=lambda: limits.chat_prompt(body),  # the body's bytes bound its prompts and suffix
            options={"stream_options": options},
        )

    async def screen(self, call: Call, screening: Screening) -> None:
        """The input checks on the prompts and the suffix (redacted in place)."""
        body = call.body
        texts = [body["prompt"]] if isinstance(body["prompt"], str) else list(body["prompt"])
        suffix = body.get("suffix") if isinstance(body.get("suffix"), str) else None
        parts = texts + ([suffix] if suffix else [])
        screened = await screening.input([{"role": "user", "content": text} for text in parts])
        if screened is not None:
            redacted = [message["content"] for message in screened]
            body["prompt"] = redacted[0] if isinstance(body["prompt"], str) else redacted[: len(texts)]
            if suffix:
                body["suffix"] = redacted[len(texts)]
        call.prompt_source = [body["prompt"], body.get("suffix") or ""]

    async def answer(
        self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed, exchange: Exchange
    ) -> HttpResponse:
        reply = await router.completions(key, model, call.body, routed)
        exchange.response_model = name_of(reply.get("model"))
        reply["model"] = routed.model.name  # type: ignore[union-attr]
        exchange.usage = openai_usage(reply.get("usage"))
        exchange.saw_output(completion_text(reply.get("choices")))
        screening = exchange.screening
        if screening is not None and screening.checks_output:
            for choice in reply.get("choices") or ():
                if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                    choice["text"] = screening.whole(choice["text"])
        exchange.response_payload = reply
        return json_response(reply, exchange.request_id)

    async def open(self, call: Call, key: KeySnapshot, model: ModelSnapshot, routed: Routed) -> Opened:
        body = call.body
        body["stream_options"] = call.options["stream_options"] | {"include_usage": True}  # usage always known
        first, rest, upstream = await router.open_completions_stream(key, model, body, routed)
        return Opened(first=first, rest=rest, upstream=upstream)

    def encoder(
        self, call: Call, opened: Opened, exchange: Exchange, public_name: str, secrets: scrub.Secrets
    ) -> TextChunkEncoder:
        exchange.response_model = name_of(opened.first.get("model"))
        return TextChunkEncoder(
            exchange,
            secrets=secrets,
            public_name=public_name,
            wants_usage=call.options["stream_options"].get("include_usage") is True,
            template={k: opened.first[k] for k in ("id", "object", "created") if k in opened.first},
        )

    def stream_headers(self, opened: Opened) -> dict[str, str]:
        return {}


class TextChunkEncoder:
    """text_completion chunks to `data:` events: the public model name, usage read (the usage-only
    chunk dropped unless asked for), each choice's `text` through its output filter and its secret
    window; what they hold is released with the choice's finish, or in a last chunk."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        secrets: scrub.Secrets,
        public_name: str,
        wants_usage: bool,
        template: dict[str, Any],
    ) -> None:
        self.exchange = exchange
        self.public_name = public_name
        self.wants_usage = wants_usage
        self.template = template
        screening = exchange.screening
        self.slots = OutputSlots(screening) if screening is not None and screening.checks_output else None
        self.secrets = secrets
        self.windows: dict[int, scrub.StreamWindow] = {}

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        exchange = self.exchange
        if "usage" in chunk:
            if chunk["usage"] is not None:
                exchange.usage = openai_usage(chunk["usage"]) or exchange.usage
            if not self.wants_usage:
                if not chunk.get("choices"):
                    return None  # the usage-only chunk we asked for on the client's behalf
                del chunk["usage"]
        choices = chunk.get("choices")
        exchange.saw_output(completion_text(choices))
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self._pass(choice)
            if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
                exchange.saw_finish(*(c.get("finish_reason") for c in choices if isinstance(c, dict)))
        chunk["model"] = self.public_name
        return b"data: " + answer_json(chunk) + b"\n\n"

    def _pass(self, choice: dict[str, Any]) -> None:
        """One choice's text through its filter, then its secret window (both release on finish)."""
        index = choice["index"] if isinstance(choice.get("index"), int) else 0
        text = choice["text"] if isinstance(choice.get("text"), str) else ""
        finished = bool(choice.get("finish_reason"))
        if self.slots is not None:
            self.slots.open(index)
            text = self.slots.feed(index, text) if text else ""
            if finished:
                text += self.slots.close(index)
        if self.secrets:
            window = self.windows.get(index)
            if window is None:
                window = self.windows[index] = self.secrets.window()
            text = window.feed(text) if text else ""
            if finished:
                text += self.windows.pop(index).flush()
        if "text" in choice or text:
            choice["text"] = text

    def tail(self) -> bytes:
        """What the output filters and the secret windows still hold, as a last chunk, and [DONE]."""
        held: dict[int, str] = {}
        if self.slots is not None:
            for slot in self.slots.open_slots():
                if text := self.slots.close(slot):
                    held[slot] = text
        if self.secrets:
            for index, text in held.items():
                window = self.windows.get(index)
                if window is None:
                    window = self.windows[index] = self.secrets.window()
                held[index] = window.feed(text)
            for index, window in list(self.windows.items()):
                held[index] = held.get(index, "") + window.flush()
            self.windows.clear()
        choices = [
            {"index": index, "text": text, "logprobs": None, "finish_reason": None}
            for index, text in held.items()
            if text
        ]
        out = b""
        if choices:
            out = b"data: " + answer_json({**self.template, "model": self.public_name, "choices": choices}) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, exc: ProxyError) -> bytes:
        return b"data: " + orjson.dumps(exc.body()) + b"\n\n"
