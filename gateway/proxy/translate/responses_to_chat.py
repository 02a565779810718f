"""Translation of a Responses API request (`POST /v1/responses`) to an OpenAI chat request, for
the deployments that do not serve the Responses API themselves: OpenAI-compatible servers, and
Anthropic (whose adapter takes the chat request on to Messages, gateway/proxy/translate/chat_to_messages.py).

Pure functions, each tested without a network. The chat request is built from the fields we know,
never copied: what changes the answer and has no chat counterpart is refused with a 400 naming
the field (an input item or content part of another kind, a file by id); what does not change it
(`metadata`, `store`, `include`, `service_tier`, ...) is left out and named by `dropped_fields`,
for the response header that says so. The way back is gateway/proxy/translate/responses_from_chat.py.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.proxy.errors import BadRequest

# Request fields the translation carries (or that the gateway itself handles).
_CARRIED = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens", "temperature",
        "top_p", "stream", "parallel_tool_calls", "user", "safety_identifier", "reasoning",
        "store",  # the gateway sets it false itself: nothing is stored anywhere
    }
)  # fmt: skip
_USER_MAX = 64
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})


def _bad(message: str, param: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, param=param, code=code)


def _unsupported(what: str, param: str) -> BadRequest:
    return BadRequest(
        f"{what} ('{param}') cannot be translated for this model, which does not serve the Responses API itself.",
        param=param,
        code="unsupported_parameter",
    )


def to_chat_request(body: dict[str, Any], *, model: str, max_tokens_field: str, reasoning: bool) -> dict[str, Any]:
    """The chat request for a (checked) Responses request; raises BadRequest for what cannot be
    translated. `reasoning`: whether the upstream model takes `reasoning_effort`."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    value = body.get("input")
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    else:
        for index, item in enumerate(value or ()):
            _add_item(messages, item, f"input[{index}]")
    request: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("max_output_tokens") is not None:
        request[max_tokens_field] = body["max_output_tokens"]
    for field in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(field) is not None:
            request[field] = body[field]
    if tools := body.get("tools"):
        request["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if (choice := _tool_choice(body.get("tool_choice"))) is not None:
        request["tool_choice"] = choice
    if (response_format := _response_format(body.get("text"))) is not None:
        request["response_format"] = response_format
    effort = reasoning_effort(body)
    if effort is not None and reasoning:
        request["reasoning_effort"] = effort
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        request["user"] = user[:_USER_MAX]
    return request


def reasoning_effort(body: dict[str, Any]) -> str | None:
    """`reasoning.effort`, checked; None when not asked for."""
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise _bad("Invalid type for 'reasoning': expected an object.", "reasoning", "invalid_type")
    effort = reasoning.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise _bad(f"Invalid 'reasoning.effort': expected one of {', '.join(sorted(_EFFORTS))}.", "reasoning.effort")
    return effort


def dropped_fields(body: dict[str, Any], request: dict[str, Any]) -> list[str]:
    """What of the Responses request the chat `request` does not carry (x-symbiosis-dropped)."""
    dropped = sorted(name for name in body if name not in _CARRIED and body[name] is not None)
    if body.get("reasoning") and "reasoning_effort" not in request:
        dropped.append("reasoning")
    if isinstance(body.get("text"), dict) and set(body["text"]) - {"format"}:
        dropped.append("text.verbosity" if "verbosity" in body["text"] else "text")
    if isinstance(body.get("input"), list) and any(
        isinstance(item, dict) and item.get("type") == "reasoning" for item in body["input"]
    ):
        dropped.append("input.reasoning")
    return dropped


# --- input items ---


def _add_item(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise _bad(f"Invalid input item at '{where}': expected an object.", where, "invalid_type")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        _add_message(messages, item, where)
    elif kind == "function_call":
        call = {
            "id": _string(item, "call_id", where),
            "type": "function",
            "function": {"name": _string(item, "name", where), "arguments": _arguments(item.get("arguments"), where)},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        content = output if isinstance(output, str) else _parts(output, f"{where}.output", "user")
        messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": content})
    elif kind == "reasoning":
        return  # the upstream cannot read another model's reasoning; named in the dropped header
    elif isinstance(kind, str):
        raise _unsupported(f"An input item of type '{kind[:64]}'", f"{where}.type")
    else:
        raise _bad(f"Invalid input item at '{where}': expected a 'type' or a 'role'.", where, "invalid_type")


def _add_message(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _bad(f"Invalid '{where}.role': expected 'user', 'assistant', 'system' or 'developer'.", f"{where}.role")
    content = item.get("content")
    if role == "developer":
        role = "system"
    if isinstance(content, str):
        translated: Any = content
    elif isinstance(content, list):
        translated = _parts(content, f"{where}.content", role)
        if role != "user":  # system and assistant messages carry text only
            translated = "".join(part["text"] for part in translated if part.get("type") == "text")
    else:
        raise _bad(
            f"Invalid type for '{where}.content': expected a string or an array of content parts.",
            f"{where}.content",
            "invalid_type",
        )
    if role == "assistant" and messages and messages[-1]["role"] == "assistant" and "tool_calls" not in messages[-1]:
        messages[-1]["content"] = (messages[-1]["content"] or "") + translated
        return
    messages.append({"role": role, "content": translated})


def _parts(content: Any, where: str, role: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise _bad(f"Invalid type for '{where}': expected an array of content parts.", where, "invalid_type")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal"):
            text = part.get("text") if kind != "refusal" else part.get("refusal")
            if not isinstance(text, str):
                raise _bad(f"Invalid '{at}': expected a string 'text'.", f"{at}.text", "invalid_type")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                if part.get("file_id") is not None:
                    raise _unsupported("An image by 'file_id' (the gateway stores no files)", f"{at}.file_id")
                raise _bad(f"Invalid '{at}': expected an 'image_url'.", f"{at}.image_url", "invalid_type")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and role == "user":
            if not isinstance(part.get("file_data"), str):
                raise _unsupported("A file by 'file_id' or 'file_url' (send 'file_data')", at)
            file = {"file_data": part["file_data"]}
            if isinstance(part.get("filename"), str):
                file["filename"] = part["filename"]
            parts.append({"type": "file", "file": file})
        elif isinstance(kind, str):
            raise _unsupported(f"A content part of type '{kind[:64]}'", f"{at}.type")
        else:
            raise _bad(f"Invalid content part at '{at}': expected an object with a 'type'.", at, "invalid_type")
    return parts


def _string(item: dict[str, Any], field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise _bad(f"Invalid '{where}.{field}': expected a non-empty string.", f"{where}.{field}", "invalid_type")
    return value


def _arguments(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    raise _bad(f"Invalid '{where}.arguments': expected a JSON string.", f"{where}.arguments", "invalid_type")


# --- tools, tool choice, output format ---


def _tool(tool: Any, where: str) -> dict[str, Any]:
    """A function tool (the dialect refused hosted tools before); to chat's shape."""
    if isinstance(tool, dict) and tool.get("type") != "function":
        raise _unsupported(f"A tool of type '{str(tool.get('type'))[:64]}'", f"{where}.type")
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
        raise _bad(f"Invalid '{where}': a function tool needs a 'name'.", f"{where}.name", "invalid_type")
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _unsupported("This 'tool_choice' (only 'auto', 'none', 'required' or a function by name)", "tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        for field in ("description", "strict"):
            if fmt.get(field) is not None:
                spec[field] = fmt[field]
        return {"type": "json_schema", "json_schema": spec}
    raise _bad("Invalid 'text.format': expected type 'text', 'json_object' or 'json_schema'.", "text.format")
