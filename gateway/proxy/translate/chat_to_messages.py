"""Translation from OpenAI chat completions to Anthropic Messages and back (an OpenAI-speaking
client, a Claude deployment). Pure functions and one class, each tested without a network:

- `to_messages_request(payload)`: an OpenAI chat request -> a Messages request
- `to_chat_completion(message)`: a Messages reply -> an OpenAI chat.completion
- `StreamTranslator`: Messages stream events -> OpenAI chat.completion.chunk dicts, one event at a time

The wire (`POST {base_url}/v1/messages`, Anthropic's error bodies) is the adapter's:
gateway/proxy/adapters/anthropic.py. The other direction (a Messages client, an OpenAI-speaking
deployment) is gateway/proxy/translate/messages_to_chat.py.

What has no Anthropic counterpart is refused with a 400 when ignoring it would change the answer
(`n` > 1, `logprobs`, legacy `functions`, audio), and dropped when it would not (penalties,
`seed`, `logit_bias`, `store`, `service_tier`, OpenAI's `metadata`): the request is built from the
fields we know, never copied.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from gateway.proxy.errors import BadRequest, UnreadableAnswer, UpstreamError

# Anthropic requires max_tokens and OpenAI does not: this is used when a request sets neither
# max_tokens nor max_completion_tokens. The model's configured default output limit will replace
# it once the catalog carries one (to_messages_request already takes it as `default_max_tokens`).
DEFAULT_MAX_TOKENS = 4096

_MAX_ERROR_MESSAGE = 2_000
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused a long turn; the client may send the reply back to continue
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# response_format has no direct counterpart that every Claude model accepts, so it becomes an
# instruction appended to the system prompt. The model follows it reliably, but nothing enforces
# it: a client that needs a guarantee must still validate what comes back. (A forced tool call
# would enforce the schema but turn the answer into tool_calls, which a json_schema client does
# not expect; Anthropic's newer `output_config.format` works only on some models.)
_JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it, no code fences."
)
_JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else (no prose before or after it, no code fences). "
    "It must conform to this JSON Schema"
)


# --- requests: OpenAI chat completions -> Anthropic Messages ---


def to_messages_request(payload: dict[str, Any], *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """The Messages request for an OpenAI chat request; raises BadRequest for what cannot be translated."""
    _refuse_untranslatable(payload)
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(payload.get("messages") or []):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"Invalid message at {where}: expected an object.", param=where, code="invalid_type")
        role = message.get("role")
        if role in ("system", "developer"):
            if text := _text_only(message.get("content"), param=f"{where}.content"):
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        elif role == "function":
            raise BadRequest(
                f"The legacy 'function' role ({where}) is not supported for this model; use 'tool' messages.",
                param=f"{where}.role",
                code="unsupported_value",
            )
        else:
            raise BadRequest(f"Unknown role {role!r} at {where}.", param=f"{where}.role", code="invalid_value")
        if blocks:
            _add_turn(turns, role, blocks)

    request: dict[str, Any] = {"model": payload.get("model"), "messages": [_compact(turn) for turn in turns]}
    if instruction := _response_format_instruction(payload.get("response_format")):
        system.append(instruction)
    if system:
        request["system"] = "\n\n".join(system)
    max_tokens = payload.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = payload.get("max_tokens")
    request["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    if (stop := _stop_sequences(payload.get("stop"))) is not None:
        request["stop_sequences"] = stop
    for field in ("temperature", "top_p"):
        if payload.get(field) is not None:
            request[field] = payload[field]
    if tools := payload.get("tools"):
        request["tools"] = _tools(tools)
        if (choice := _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))) is not None:
            request["tool_choice"] = choice
    if isinstance(payload.get("user"), str) and payload["user"]:
        request["metadata"] = {"user_id": payload["user"]}
    if payload.get("stream") is True:
        request["stream"] = True
    return request


def _refuse_untranslatable(payload: dict[str, Any]) -> None:
    def refuse(param: str, why: str) -> BadRequest:
        return BadRequest(
            f"'{param}' is not supported for this model: {why}", param=param, code="unsupported_parameter"
        )

    if payload.get("n") not in (None, 1):
        raise refuse("n", "Anthropic returns one choice per request.")
    if payload.get("logprobs") or payload.get("top_logprobs"):
        raise refuse("logprobs", "Anthropic does not return log probabilities.")
    for legacy in ("functions", "function_call"):
        if payload.get(legacy) is not None:
            raise refuse(legacy, "use 'tools' and 'tool_choice'.")
    if payload.get("audio") is not None or "audio" in (payload.get("modalities") or ()):
        raise refuse("audio", "Anthropic models do not produce audio.")


def _add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Consecutive messages of one role become one turn (tool results and the user's text share a user turn)."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _compact(turn: dict[str, Any]) -> dict[str, Any]:
    content = turn["content"]
    # Anthropic wants a user turn's tool_result blocks before anything else in it.
    content = [b for b in content if b["type"] == "tool_result"] + [b for b in content if b["type"] != "tool_result"]
    if len(content) == 1 and content[0]["type"] == "text" and set(content[0]) == {"type", "text"}:
        return {"role": turn["role"], "content": content[0]["text"]}
    return {"role": turn["role"], "content": content}


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return content
    raise BadRequest(f"Invalid '{param}': expected a string or an array of content parts.", param=param)


def _text_only(content: Any, *, param: str) -> str:
    texts = []
    for i, part in enumerate(_parts(content, param)):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadRequest(
                f"Invalid '{param}[{i}]': only text parts are allowed here.", param=f"{param}[{i}]", code="invalid_type"
            )
        texts.append(part["text"])
    return "\n".join(text for text in texts if text)


def _with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    # Not OpenAI's spec, but the common convention for asking Anthropic to cache a prefix.
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(_parts(content, f"{where}.content")):
        param = f"{where}.content[{i}]"
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise BadRequest(f"Invalid '{param}.text': expected a string.", param=f"{param}.text")
            if part["text"]:
                blocks.append(_with_cache_control({"type": "text", "text": part["text"]}, part))
        elif kind == "image_url":
            blocks.append(_with_cache_control(_image_block(part.get("image_url"), param), part))
        elif kind == "file":
            blocks.append(_with_cache_control(_document_block(part.get("file"), param), part))
        elif kind in ("input_audio", "audio"):
            raise BadRequest(
                f"Audio input ({param}) is not supported for this model.", param=param, code="unsupported_value"
            )
        else:
            raise BadRequest(f"Unknown content part type {kind!r} at {param}.", param=f"{param}.type")
    return blocks


def _image_block(image_url: Any, param: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise BadRequest(f"Invalid '{param}.image_url': expected an object with a 'url'.", param=f"{param}.image_url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _base64_data_url(url, f"{param}.image_url.url")
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    if media_type not in _IMAGE_TYPES:
        raise BadRequest(
            f"Unsupported image type '{media_type}' at {param}: use JPEG, PNG, GIF or WebP.",
            param=f"{param}.image_url.url",
            code="invalid_image_format",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document_block(file: Any, param: str) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise BadRequest(
            f"Only inline PDF files ('file_data' as a data: URL) are supported for this model ({param}); "
            "uploaded file ids are not.",
            param=f"{param}.file",
            code="unsupported_value",
        )
    if not data_url.startswith("data:"):  # OpenAI's SDK also accepts bare base64 here
        data_url = "data:application/pdf;base64," + data_url
    media_type, data = _base64_data_url(data_url, f"{param}.file.file_data")
    if media_type != "application/pdf":
        raise BadRequest(
            f"Unsupported file type '{media_type}' at {param}: only PDF files are supported for this model.",
            param=f"{param}.file.file_data",
            code="unsupported_value",
        )
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _base64_data_url(url: str, param: str) -> tuple[str, str]:
    match = _DATA_URL.fullmatch(url)
    if match is None or ";base64" not in match["params"]:
        raise BadRequest(
            f"Invalid '{param}': expected an http(s) URL or a base64 data: URL.", param=param, code="invalid_value"
        )
    return match["media_type"].lower(), match["data"]


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(_parts(message.get("content"), f"{where}.content")):
        kind = part.get("type")
        text = part.get("text") if kind == "text" else part.get("refusal") if kind == "refusal" else None
        if not isinstance(text, str):
            raise BadRequest(
                f"Invalid '{where}.content[{i}]': an assistant message holds text or refusal parts.",
                param=f"{where}.content[{i}]",
            )
        if text:
            blocks.append(_with_cache_control({"type": "text", "text": text}, part))
    for j, call in enumerate(message.get("tool_calls") or []):
        param = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
            raise BadRequest(f"Invalid '{param}': expected an id and a function with a name.", param=param)
        arguments = function.get("arguments") or "{}"
        try:
            tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise BadRequest(
                f"Invalid '{param}.function.arguments': not valid JSON.", param=f"{param}.function.arguments"
            ) from None
        if not isinstance(tool_input, dict):
            raise BadRequest(
                f"Invalid '{param}.function.arguments': this model needs a JSON object.",
                param=f"{param}.function.arguments",
            )
        blocks.append({"type": "tool_use", "id": str(call["id"]), "name": function["name"], "input": tool_input})
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise BadRequest(
            f"Missing 'tool_call_id' in the tool message at {where}.",
            param=f"{where}.tool_call_id",
            code="missing_required_parameter",
        )
    result = {"type": "tool_result", "tool_use_id": tool_call_id}
    if content := _text_only(message.get("content"), param=f"{where}.content"):
        result["content"] = content
    return result


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("Invalid 'tools': expected an array.", param="tools", code="invalid_type")
    translated = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(
                f"Invalid 'tools[{i}]': only function tools with a name are supported for this model.",
                param=f"tools[{i}]",
            )
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        entry: dict[str, Any] = {"name": function["name"], "input_schema": schema}
        if function.get("description"):
            entry["description"] = function["description"]
        translated.append(entry)
    return translated


def _tool_choice(choice: Any, parallel_tool_calls: Any) -> dict[str, Any] | None:
    if choice is None:
        translated = None
    elif choice == "auto":
        translated = {"type": "auto"}
    elif choice == "none":
        translated = {"type": "none"}
    elif choice == "required":
        translated = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        translated = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequest(
            "Invalid 'tool_choice': expected 'auto', 'none', 'required' or a function by name.", param="tool_choice"
        )
    if parallel_tool_calls is False:
        translated = translated or {"type": "auto"}
        if translated["type"] != "none":
            translated["disable_parallel_tool_use"] = True
    return translated


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s] or None
    raise BadRequest("Invalid 'stop': expected a string or an array of strings.", param="stop", code="invalid_type")


def _response_format_instruction(response_format: Any) -> str | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
        spec = response_format["json_schema"]
        schema = orjson.dumps(spec.get("schema") or {"type": "object"}).decode()
        named = f" (named '{spec['name']}')" if isinstance(spec.get("name"), str) else ""
        described = f"\nWhat it holds: {spec['description']}" if isinstance(spec.get("description"), str) else ""
        return f"{_JSON_SCHEMA_INSTRUCTION}{named}:\n{schema}{described}"
    raise BadRequest(
        "Invalid 'response_format': expected type 'text', 'json_object' or 'json_schema'.", param="response_format"
    )


# --- replies: Anthropic Messages -> OpenAI chat completions ---


def finish_reason(stop_reason: Any) -> str:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def to_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage from Anthropic's: prompt tokens include the cached ones, as OpenAI counts them."""
    usage = usage if isinstance(usage, dict) else {}

    def count(field: str) -> int:
        value = usage.get(field)
        return value if isinstance(value, int) else 0

    cache_read = count("cache_read_input_tokens")
    prompt = count("input_tokens") + cache_read + count("cache_creation_input_tokens")
    completion = count("output_tokens")
    translated: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
        translated["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return translated


def to_chat_completion(message: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """An OpenAI chat.completion for a Messages reply (thinking and server-tool blocks have no place in it)."""
    content = message.get("content") if isinstance(message.get("content"), list) else []
    content = [b for b in content if isinstance(b, dict)]
    text = "".join(b["text"] for b in content if b.get("type") == "text" and isinstance(b.get("text"), str))
    try:
        tool_calls = [
            {
                "id": b.get("id"),
                "type": "function",
                "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input") or {}).decode()},
            }
            for b in content
            if b.get("type") == "tool_use"
        ]
    except orjson.JSONEncodeError:
        raise UnreadableAnswer(
            "The provider's answer cannot be passed on: a tool call's input is nested too deeply.",
            usage=to_usage(message.get("usage")),
        ) from None
    reply: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else ""), "refusal": None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": message.get("model"),
        "choices": [
            {"index": 0, "message": reply, "logprobs": None, "finish_reason": finish_reason(message.get("stop_reason"))}
        ],
        "usage": to_usage(message.get("usage")),
    }


def stream_error(error: Any) -> UpstreamError:
    """The error for an `error` event inside a stream (the HTTP status was already 200)."""
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or "unknown error")[:_MAX_ERROR_MESSAGE]
    code = "upstream_overloaded" if error.get("type") == "overloaded_error" else None
    return UpstreamError(f"The provider reported an error mid-stream: {message}", code=code)


class StreamTranslator:
    """Turns Anthropic's stream events into OpenAI chunks, one event at a time.

    Tool calls are numbered among themselves (OpenAI's `index`), whereas Anthropic numbers every
    content block; usage is the input counted at message_start plus the cumulative counts of
    message_delta. `finished` turns true at message_stop: a stream that ends before is incomplete.
    """

    def __init__(self, *, include_usage: bool = True, created: int | None = None) -> None:
        self.include_usage = include_usage
        self.finished = False
        self._created = created if created is not None else int(time.time())
        self._id = ""
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._tool_calls: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            self._id = str(message.get("id") or "")
            self._model = str(message.get("model") or "")
            self._usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta"))
        if kind == "message_delta":
            delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
            usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
            self._usage.update({field: value for field, value in usage.items() if value is not None})
            return [self._chunk({}, finish_reason(delta.get("stop_reason")))]
        if kind == "message_stop":
            self.finished = True
            if not self.include_usage:
                return []
            return [self._base() | {"choices": [], "usage": to_usage(self._usage)}]
        if kind == "error":
            raise stream_error(event.get("error"))
        # ping, content_block_stop, and event types Anthropic may add (its versioning policy allows it)
        return []

    def _block_start(self, index: Any, block: Any) -> list[dict[str, Any]]:
        block = block if isinstance(block, dict) else {}
        if block.get("type") == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if block.get("type") == "tool_use" and isinstance(index, int):
            position = self._tool_calls[index] = len(self._tool_calls)
            call = {"index": position, "id": block.get("id"), "type": "function"}
            call["function"] = {"name": block.get("name"), "arguments": ""}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking and server-tool blocks have no place in OpenAI's chunks

    def _block_delta(self, index: Any, delta: Any) -> list[dict[str, Any]]:
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and index in self._tool_calls and delta.get("partial_json"):
            call = {"index": self._tool_calls[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _base(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk = self._base() | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            chunk["usage"] = None  # as OpenAI sends it when usage was asked for
        return chunk
