"""OpenAI's Responses API (`POST /responses`) for the mock upstreams: JSON and typed SSE events.

Served by the OpenAI mock started with `MockUpstream(responses=True)` and by the Azure mock (an
OpenAI-compatible server has no /responses: the plain `MockUpstream()` answers it 404). What it
answers is chosen by the request:

- `tools` of type `function` and no `function_call_output` in `input`: a call of the first tool
  with the arguments `{"city": "Utrecht"}` (`call_id` "call_mock_1")
- a `function_call_output` item in `input`: the text "the tool said: <its output>"
- `text.format` of type `json_schema`: a JSON object that conforms to the schema (strings
  "mock", numbers 1, booleans true, arrays empty, objects filled in recursively)
- otherwise: "echo: <the last user text>" (`instructions` are not echoed)
- the upstream model `mock-status-<code>`: OpenAI's error object with that status
- `mock-die-mid-stream`: streaming, the connection is cut after the first text delta
- `mock-failed`: a response that failed (`status: failed` with an `error`; streaming, a
  `response.failed` event after `response.in_progress`), as OpenAI reports a server error

Like the real API it refuses (400, `unknown_parameter`) a parameter it does not know, such as
`max_tokens` or `messages`, and `max_output_tokens` below 16. Usage: 11 input tokens, one output
token per word (a function call: 5), billed in `state` once the answer has left. Every stream
event carries its `sequence_number`, and a stream ends with `response.completed` (no `[DONE]`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from tests.mock_upstream import MockState, Recorded

KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens", "temperature",
        "top_p", "metadata", "reasoning", "stream", "store", "parallel_tool_calls", "include", "user",
        "truncation", "service_tier", "safety_identifier", "prompt_cache_key", "stream_options", "top_logprobs",
        "max_tool_calls", "background", "conversation", "previous_response_id", "prompt", "prompt_cache_retention",
    }
)  # fmt: skip
USAGE_INPUT = 11
CALL_ARGUMENTS = ('{"city": ', '"Utrecht"}')
FAILURE = {"code": "server_error", "message": "The model failed to generate a response."}


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    value = body.get("input")
    if isinstance(value, str):
        return value
    for item in reversed(value if isinstance(value, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def _tool_output(body: dict[str, Any]) -> str | None:
    for item in reversed(body.get("input") if isinstance(body.get("input"), list) else []):
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            return _text_of(item.get("output"))
    return None


def conforming(schema: Any) -> Any:
    """A value that conforms to a (simple) JSON schema."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object":
        return {name: conforming(sub) for name, sub in (schema.get("properties") or {}).items()}
    return {"string": "mock", "integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(kind, "mock")


def _answer(body: dict[str, Any]) -> tuple[str, str | None]:
    """(the text, or the name of the tool to call)."""
    output = _tool_output(body)
    if output is not None:
        return f"the tool said: {output}", None
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        return "", str(tools[0].get("name"))
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return orjson.dumps(conforming(fmt.get("schema"))).decode(), None
    return f"echo: {last_user_text(body)}", None


def _response(body: dict[str, Any], output: list[dict[str, Any]], usage: dict[str, Any] | None, status: str) -> dict:
    return {
        "id": "resp_mock",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _usage(output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": USAGE_INPUT,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": USAGE_INPUT + output_tokens,
    }


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    )
    return {"id": "msg_mock", "type": "message", "status": status, "role": "assistant", "content": content}


def _call(name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": "fc_mock",
        "type": "function_call",
        "status": status,
        "call_id": "call_mock_1",
        "name": name,
        "arguments": arguments,
    }


def _bill(state: MockState, body: dict[str, Any], usage: dict[str, Any]) -> None:
    state.bill(
        body,
        {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        },
    )


class _Events:
    """SSE frames, each with its `sequence_number`."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def responses(request: web.Request, state: MockState) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "mock: body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "mock: body is not an object")
    if state.record:
        state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
    if unknown := sorted(set(body) - KNOWN):
        return _error(400, f"Unsupported parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < 16):
        return _error(400, "Invalid 'max_output_tokens': integer below minimum value 16.", param="max_output_tokens")
    model = str(body.get("model", ""))
    if model.startswith("mock-status-"):
        status = int(model.removeprefix("mock-status-"))
        return _error(status, f"mock upstream error {status}", code=f"mock_{status}")
    text, tool = _answer(body)
    if tool is not None:
        output, usage = [_call(tool, "".join(CALL_ARGUMENTS))], _usage(5)
    else:
        output, usage = [_message(text)], _usage(len(text.split()))
    if model == "mock-failed":
        failed = _response(body, [], None, "failed") | {"error": FAILURE}
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(failed), content_type="application/json")
        event = _Events()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        started = _response(body, [], None, "in_progress")
        for kind, sent in (
            ("response.created", started),
            ("response.in_progress", started),
            ("response.failed", failed),
        ):
            await response.write(event(kind, response=sent))
        return response
    if not body.get("stream"):
        _bill(state, body, usage)
        return web.Response(
            body=orjson.dumps(_response(body, output, usage, "completed")), content_type="application/json"
        )

    event = _Events()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        started = _response(body, [], None, "in_progress")
        await response.write(event("response.created", response=started))
        await response.write(event("response.in_progress", response=started))
        if tool is not None:
            await response.write(
                event("response.output_item.added", output_index=0, item=_call(tool, "", "in_progress"))
            )
            for part in CALL_ARGUMENTS:
                await response.write(
                    event("response.function_call_arguments.delta", item_id="fc_mock", output_index=0, delta=part)
                )
            arguments = "".join(CALL_ARGUMENTS)
            await response.write(
                event("response.function_call_arguments.done", item_id="fc_mock", output_index=0, arguments=arguments)
            )
            await response.write(event("response.output_item.done", output_index=0, item=output[0]))
        else:
            await response.write(event("response.output_item.added", output_index=0, item=_message("", "in_progress")))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            where = {"item_id": "msg_mock", "output_index": 0, "content_index": 0}
            await response.write(event("response.content_part.added", **where, part=part))
            words = text.split(" ")
            for i, word in enumerate(words):
                delta = word + (" " if i < len(words) - 1 else "")
                await response.write(event("response.output_text.delta", **where, delta=delta, logprobs=[]))
                if model == "mock-die-mid-stream":
                    await asyncio.sleep(0.05)
                    assert request.transport is not None
                    request.transport.abort()
                    return response
            await response.write(event("response.output_text.done", **where, text=text, logprobs=[]))
            await response.write(event("response.content_part.done", **where, part=part | {"text": text}))
            await response.write(event("response.output_item.done", output_index=0, item=output[0]))
        await response.write(event("response.completed", response=_response(body, output, usage, "completed")))
    except ConnectionResetError:
        state.disconnects.append(model)
        return response
    _bill(state, body, usage)
    state.completed_streams.append(model)
    return response
