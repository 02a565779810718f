"""Translation from Anthropic Messages to OpenAI chat completions and back (a Messages client on
/v1/messages, an OpenAI-speaking deployment).

The mirror image of translate/chat_to_messages.py, in three pure pieces tested without a network:

- `to_chat_request(body, model=...)`: a Messages request -> an OpenAI chat request
- `to_message(completion, model=...)`: an OpenAI chat.completion -> a Messages reply
- `StreamTranslator`: OpenAI chat.completion.chunk dicts -> Messages stream events, in
  Anthropic's order (message_start, content_block_start/delta/stop per block, message_delta,
  message_stop)

What has no OpenAI counterpart is refused with a 400 naming the field when ignoring it would
change the answer (server tools, images inside tool results, files by id, documents by URL), and
dropped when it would not matter or cannot be honoured anyway (`cache_control`, since OpenAI caches
prefixes by itself; `thinking` and thinking blocks; `top_k`; `service_tier`): the request is
built from the fields we know, never copied.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from gateway.proxy.errors import BadRequest, UpstreamError

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})  # a model's own reasoning: nothing to send back


# --- requests: Anthropic Messages -> OpenAI chat completions ---


def to_chat_request(
    body: dict[str, Any], *, model: str, max_tokens_field: str = "max_tokens", reasoning: bool = False
) -> dict[str, Any]:
    """The OpenAI chat request for a Messages request; raises BadRequest for what cannot be translated.

    `max_tokens_field` is where the limit goes: OpenAI itself wants `max_completion_tokens` (its
    reasoning models refuse `max_tokens`), while many OpenAI-compatible servers know only `max_tokens`.
    `reasoning` says the upstream model takes `reasoning_effort` (see `has_reasoning`): then
    `output_config.effort` and `thinking` become it; otherwise they are dropped (`dropped_fields`).
    A `system` message in the conversation (Claude Code sends them) stays where it is.
    """
    messages: list[dict[str, Any]] = []
    if system := system_text(body.get("system")):
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(body.get("messages") or []):
        where = f"messages[{index}]"
        role = message.get("role")
        if role == "system":
            if text := system_text(message.get("content"), param=f"{where}.content"):
                messages.append({"role": "system", "content": text})
            continue
        if role not in ("user", "assistant"):
            raise BadRequest(
                f"Invalid '{where}.role' {role!r}: expected 'user', 'assistant' or 'system'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        blocks = _blocks(message.get("content"), f"{where}.content")
        if role == "assistant":
            messages.append(_assistant_message(blocks, where))
        else:
            messages.extend(_user_messages(blocks, where))
    if mcp_servers := body.get("mcp_servers"):
        raise BadRequest(
            f"'mcp_servers' ({len(mcp_servers) if isinstance(mcp_servers, list) else 1}) are not available for "
            "this model: it calls no servers on your behalf.",
            param="mcp_servers",
            code="unsupported_value",
        )

    request: dict[str, Any] = {"model": model, "messages": messages, max_tokens_field: body.get("max_tokens")}
    if (stop := body.get("stop_sequences")) is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest(
                "Invalid 'stop_sequences': expected an array of strings.", param="stop_sequences", code="invalid_type"
            )
        if stop:
            request["stop"] = stop
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            request[field] = body[field]
    tools = body.get("tools")
    if tools:
        request["tools"] = _tools(tools)
    _tool_choice(body.get("tool_choice"), request)
    if user := _user_id(body.get("metadata")):
        request["user"] = user
    if (response_format := _response_format(body.get("output_config"))) is not None:
        request["response_format"] = response_format
    effort = reasoning_effort(body)
    if reasoning and effort:
        request["reasoning_effort"] = effort
    if body.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}  # so usage is always known
    return request


# The upstream models that take OpenAI's `reasoning_effort`, by the last segment of their name.
_REASONING_MODEL = re.compile(r"(o[1-9]|gpt-5|gpt-oss)", re.IGNORECASE)
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}
# A thinking budget's effort when no effort is given: below 4,096 tokens low, below 16,384 medium.
_BUDGET_EFFORT = ((4096, "low"), (16384, "medium"))
# The top-level fields to_chat_request carries over (wholly or in part).
_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
        "output_config",
        "stream",
    }
)
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_MAX_NAMED = 16  # dropped fields named in x-symbiosis-dropped; "..." says there were more
_USER_MAX = 64  # OpenAI's end-user identifiers are short; a longer one (Claude Code's JSON) stays here


def has_reasoning(upstream_model: str) -> bool:
    """Whether an OpenAI-shaped upstream model takes `reasoning_effort` (o1..o9, gpt-5*, gpt-oss*)."""
    return _REASONING_MODEL.match(upstream_model.rsplit("/", 1)[-1]) is not None


def reasoning_effort(body: dict[str, Any]) -> str | None:
    """OpenAI's reasoning effort for a Messages request: `output_config.effort` (max as high), else
    from a `thinking` budget; None when it asks for neither (the upstream's default)."""
    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort is not None:
        if not isinstance(effort, str) or effort not in _EFFORTS:
            raise BadRequest(
                "Invalid 'output_config.effort': expected 'low', 'medium', 'high' or 'max'.",
                param="output_config.effort",
                code="invalid_value",
            )
        return _EFFORTS[effort]
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            return next((effort for limit, effort in _BUDGET_EFFORT if budget < limit), "high")
    return None


def dropped_fields(body: dict[str, Any], request: dict[str, Any], *, betas: tuple[str, ...] = ()) -> list[str]:
    """What of a Messages request (and its `anthropic-beta` flags) the translated `request` does
    not carry: for the response header that says so (x-symbiosis-dropped)."""
    unknown = sorted(name for name in body if name not in _TRANSLATED and body[name] is not None)
    # The client chose these names: only plain ones are named, and not too many, in a header.
    dropped = [name for name in unknown if _FIELD_NAME.fullmatch(name)][:_MAX_NAMED]
    if len(dropped) < len(unknown):
        dropped.append("...")
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and "effort" in output_config and "reasoning_effort" not in request:
        dropped.append("output_config.effort")
    if "thinking" in dropped and "reasoning_effort" in request:
        dropped.remove("thinking")  # it became the reasoning effort
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id") and "user" not in request:
        dropped.append("metadata.user_id")
    if _has_cache_control(body):
        dropped.append("cache_control")
    if betas:
        dropped.append("anthropic-beta")
    return dropped


def _has_cache_control(body: dict[str, Any]) -> bool:
    """Whether a system block, a message's block or a tool carries a cache_control hint."""
    blocks: list[Any] = []
    for field in ("system", "tools"):
        if isinstance(body.get(field), list):
            blocks.extend(body[field])
    for message in body.get("messages") or ():
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            blocks.extend(message["content"])
    return any(isinstance(block, dict) and "cache_control" in block for block in blocks)


def _user_id(metadata: Any) -> str | None:
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user if isinstance(user, str) and 0 < len(user) <= _USER_MAX else None


def system_text(system: Any, *, param: str = "system") -> str:
    """A system prompt as one string (a string, or text blocks joined by blank lines)."""
    if system is None or isinstance(system, str):
        return system or ""
    if not isinstance(system, list):
        raise BadRequest(f"Invalid '{param}': expected a string or an array of text blocks.", param=param)
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise BadRequest(f"Invalid '{param}[{i}]': expected a text block.", param=f"{param}[{i}]")
        texts.append(block["text"])
    return "\n\n".join(text for text in texts if text)


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(block, dict) for block in content):
        return content
    raise BadRequest(f"Invalid '{param}': expected a string or an array of content blocks.", param=param)


def _text_of(block: dict[str, Any], param: str) -> str:
    if not isinstance(block.get("text"), str):
        raise BadRequest(f"Invalid '{param}.text': expected a string.", param=f"{param}.text", code="invalid_type")
    return block["text"]


def _unsupported(kind: Any, param: str) -> BadRequest:
    return BadRequest(
        f"Content blocks of type {kind!r} ({param}) are not supported for this model.",
        param=f"{param}.type",
        code="unsupported_value",
    )


def _user_messages(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """One user turn -> its tool results as `tool` messages (first, as OpenAI wants them), then a user message."""
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            if text := _text_of(block, param):
                parts.append({"type": "text", "text": text})
        elif kind == "image":
            parts.append(_image_part(block.get("source"), param))
        elif kind == "document":
            parts.append(_document_part(block.get("source"), param))
        elif kind == "tool_result":
            tool_messages.append(_tool_message(block, param))
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            raise _unsupported(kind, param)
    messages = tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts or not tool_messages:
        messages.append({"role": "user", "content": parts or ""})
    return messages


def _image_part(source: Any, param: str) -> dict[str, Any]:
    source = source if isinstance(source, dict) else {}
    if (
        source.get("type") == "base64"
        and isinstance(source.get("media_type"), str)
        and isinstance(source.get("data"), str)
    ):
        return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise BadRequest(
        f"Invalid '{param}.source': this model takes images as base64 data or by URL.",
        param=f"{param}.source",
        code="unsupported_value",
    )


def _document_part(source: Any, param: str) -> dict[str, Any]:
    source = source if isinstance(source, dict) else {}
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if (
        source.get("type") == "base64"
        and source.get("media_type") == "application/pdf"
        and isinstance(source.get("data"), str)
    ):
        return {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{source['data']}"},
        }
    raise BadRequest(
        f"Invalid '{param}.source': this model takes documents as plain text or base64 PDF only.",
        param=f"{param}.source",
        code="unsupported_value",
    )


def _tool_message(block: dict[str, Any], param: str) -> dict[str, Any]:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise BadRequest(
            f"Missing '{param}.tool_use_id'.", param=f"{param}.tool_use_id", code="missing_required_parameter"
        )
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            where = f"{param}.content[{k}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else None
                raise BadRequest(
                    f"Tool results hold text only for this model ({where} is {kind!r}).",
                    param=f"{where}.type",
                    code="unsupported_value",
                )
            texts.append(_text_of(part, where))
        text = "\n".join(texts)
    else:
        raise BadRequest(
            f"Invalid '{param}.content': expected a string or an array of text blocks.", param=f"{param}.content"
        )
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}


def _assistant_message(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            if text := _text_of(block, param):
                texts.append(text)
        elif kind == "tool_use":
            name, call_input = block.get("name"), block.get("input")
            if not isinstance(block.get("id"), str) or not isinstance(name, str) or not isinstance(call_input, dict):
                raise BadRequest(
                    f"Invalid '{param}': a tool_use block needs an 'id', a 'name' and an 'input' object.", param=param
                )
            arguments = orjson.dumps(call_input).decode()
            tool_calls.append(
                {"id": block["id"], "type": "function", "function": {"name": name, "arguments": arguments}}
            )
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            raise _unsupported(kind, param)
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("Invalid 'tools': expected an array.", param="tools", code="invalid_type")
    translated = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise BadRequest(f"Invalid '{param}': expected an object.", param=param, code="invalid_type")
        if tool.get("type") not in (None, "custom"):
            raise BadRequest(
                f"The Anthropic server tool {tool.get('type')!r} ({param}) is not available for this model; "
                "only client tools (name, description, input_schema) are.",
                param=f"{param}.type",
                code="unsupported_value",
            )
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            raise BadRequest(f"Invalid '{param}': a tool needs a 'name' and an 'input_schema' object.", param=param)
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        translated.append({"type": "function", "function": function})
    return translated


def _tool_choice(choice: Any, request: dict[str, Any]) -> None:
    """Set OpenAI's tool_choice (and parallel_tool_calls) on `request` from Anthropic's tool_choice."""
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise BadRequest("Invalid 'tool_choice': expected type 'auto', 'any', 'tool' or 'none'.", param="tool_choice")
    if "tools" not in request:
        if kind in ("auto", "none"):
            return  # nothing to choose from either way
        raise BadRequest("'tool_choice' may only be specified while providing 'tools'.", param="tool_choice")
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise BadRequest("Invalid 'tool_choice': type 'tool' needs a 'name'.", param="tool_choice.name")
        request["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        request["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        request["parallel_tool_calls"] = False


def _response_format(output_config: Any) -> dict[str, Any] | None:
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if output_format is None:
        return None
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        raise BadRequest("Invalid 'output_config.format': expected type 'json_schema'.", param="output_config.format")
    schema = output_format.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest(
            "Invalid 'output_config.format.schema': expected an object.", param="output_config.format.schema"
        )
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}


# --- replies: OpenAI chat completions -> Anthropic Messages ---


def message_id(upstream_id: Any) -> str:
    """A Messages id that keeps the upstream's id, to trace a reply back to it."""
    if isinstance(upstream_id, str) and upstream_id:
        return upstream_id if upstream_id.startswith("msg_") else f"msg_{upstream_id}"
    return f"msg_{secrets.token_hex(12)}"


def stop_reason(finish_reason: Any, *, matched: Any = None, stop_sequences: Any = None) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence) for OpenAI's finish_reason.

    OpenAI does not say which stop string ended the text; some OpenAI-compatible servers (vLLM)
    do, in the choice's `stop_reason`, and then the answer is "stop_sequence".
    """
    if (
        finish_reason == "stop"
        and isinstance(matched, str)
        and isinstance(stop_sequences, list)
        and matched in stop_sequences
    ):
        return "stop_sequence", matched
    return _STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn", None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def to_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage from OpenAI's: OpenAI counts cached tokens among prompt tokens, Anthropic does not."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(usage.get("prompt_tokens"))
    translated: dict[str, Any] = {
        "input_tokens": max(prompt - cached, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": _count(usage.get("completion_tokens")),
    }
    output_details = usage.get("completion_tokens_details")
    if isinstance(output_details, dict) and isinstance(output_details.get("reasoning_tokens"), int):
        translated["output_tokens_details"] = {"thinking_tokens": _count(output_details["reasoning_tokens"])}
    return translated


def _tool_input(arguments: Any, provider_said: str) -> dict[str, Any]:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(f"The provider {provider_said} returned tool arguments that are not a JSON object.")
    return parsed


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some OpenAI-compatible servers answer with content parts
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def to_message(completion: dict[str, Any], *, model: str, stop_sequences: Any = None) -> dict[str, Any]:
    """The Messages reply for an OpenAI chat.completion; raises UpstreamError for an answer that is not one."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice else None
    if not isinstance(message, dict):
        raise UpstreamError("The provider answered without a message.")
    content: list[dict[str, Any]] = []
    text = _message_text(message.get("content")) or (
        message["refusal"] if isinstance(message.get("refusal"), str) else ""
    )
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UpstreamError("The provider answered with a malformed tool call.")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{secrets.token_hex(12)}",
                "name": function["name"],
                "input": _tool_input(function.get("arguments"), f"(tool '{function['name']}')"),
            }
        )
    finish = choice.get("finish_reason")  # type: ignore[union-attr]
    if any(block["type"] == "tool_use" for block in content) and finish in ("stop", None):
        finish = "tool_calls"  # some servers finish a tool call with "stop"
    reason, sequence = stop_reason(
        finish,
        matched=choice.get("stop_reason"),  # type: ignore[union-attr]
        stop_sequences=stop_sequences,
    )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": to_usage(completion.get("usage")),
    }


class StreamTranslator:
    """Turns OpenAI chunks into Messages stream events, one chunk at a time; `finish()` closes the message.

    Content blocks are numbered in the order they open: text opens a text block, each new tool
    call (OpenAI's `index`) opens a tool_use block, and opening a block closes the one before.
    OpenAI reports usage only at the end, so message_start carries the input tokens when the first
    chunk already has them (some servers send usage on every chunk) and 0 otherwise; message_delta
    then carries the final counts.
    """

    def __init__(self, *, model: str, stop_sequences: Any = None) -> None:
        self.model = model
        self._stop_sequences = stop_sequences
        self._started = False
        self._index = -1  # the open (or last) content block
        self._open: str | None = None  # its type while open
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> content block index
        self._finish: Any = None
        self._matched: Any = None
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        if not self._started:
            self._started = True
            usage = to_usage(self._usage) if self._usage else {"input_tokens": 0}
            events.append(
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id(chunk.get("id")),
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": usage["input_tokens"],
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0),
                            "output_tokens": 0,
                        },
                    },
                }
            )
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            for field in ("content", "refusal"):
                if isinstance(delta.get(field), str) and delta[field]:
                    events += self._text(delta[field])
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")
        return events

    def finish(self) -> list[dict[str, Any]]:
        """The events that end the message, once the upstream's stream is complete."""
        events = self._close()
        finish = self._finish
        if self._tools and finish in ("stop", None):
            finish = "tool_calls"
        reason, sequence = stop_reason(finish, matched=self._matched, stop_sequences=self._stop_sequences)
        usage = to_usage(self._usage) if self._usage else {"output_tokens": 0}
        events.append(
            {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage}
        )
        events.append({"type": "message_stop"})
        return events

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _start(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self._index += 1
        self._open = block["type"]
        events.append({"type": "content_block_start", "index": self._index, "content_block": block})
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events = [] if self._open == "text" else self._start({"type": "text", "text": ""})
        events.append(
            {"type": "content_block_delta", "index": self._index, "delta": {"type": "text_delta", "text": text}}
        )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        position = call.get("index")
        if not isinstance(position, int):  # servers that send each call whole, without an index
            position = len(self._tools) if call.get("id") or not self._tools else max(self._tools)
        events: list[dict[str, Any]] = []
        if position not in self._tools:
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{secrets.token_hex(12)}",
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._start(block)
            self._tools[position] = self._index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            # A late fragment of an earlier call keeps that call's block index (OpenAI streams calls one by one).
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append({"type": "content_block_delta", "index": self._tools[position], "delta": delta})
        return events
