"""A real HTTP server that speaks Anthropic's Messages API (JSON and SSE) and records what it got.

It checks requests the way Anthropic does where a translation bug would show (headers, the
API version and its sampling rules, a required `max_tokens`, alternating user/assistant turns,
non-empty text blocks, tool_result blocks first in a user turn and answering a tool_use of the
turn before), answering `invalid_request_error` otherwise. What it answers is chosen by the *upstream* model name:

- any name: a text message echoing the last user text (SSE when `stream` is true); a `tool_use`
  of the first tool when `tools` are given, streamed as `input_json_delta` fragments; when the
  last user turn carries tool results, a text message quoting them
- `claude-cache`: the echo, with cache read and cache creation tokens in the usage
- `claude-refusal` / `claude-max-tokens`: the echo, stopped for that reason
- `claude-status-<code>`: answers <code> with Anthropic's error object (429 and 529 add `retry-after`;
  the 401 quotes the presented key, as a careless upstream might)
- `claude-no-stop`: streams, then closes cleanly without `message_stop`
- `claude-error-event`: streams a little, then an `error` event (overloaded_error)
- a name containing `agent` (`claude-agent`): a coding agent's model (tests/mock_agent.py)
- `POST /v1/messages/count_tokens`: Anthropic's `{"input_tokens": N}` (`counted_tokens`); like
  Anthropic it refuses `max_tokens`, `stream` and the sampling fields there
- `claude-echo-key`: an answer that quotes the key it was sent (`x-api-key`, or the bearer value):
  in a text block, in a tool_use's input, and in the message's `id` and `model`; streaming, the
  text and the input arrive a few characters an event, so the key is split across many events

Like Anthropic, it refuses top-level fields it does not know, and those of a beta the request did
not turn on (`anthropic-beta`): `context_management` without `context-management-2025-06-27`. A
`system` message inside `messages` is taken in place (Claude Code sends them, with or without the
`mid-conversation-system-2026-04-07` beta). Requests are recorded with their query string
(`/v1/messages?beta=true`).

Run standalone with `python -m tests.mock_anthropic --port 9101`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiohttp import web

from tests.mock_agent import agent_turn, is_agent, text_of
from tests.mock_upstream import MockState, MockUpstream, Recorded

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
API_VERSIONS = frozenset({"2023-06-01", "2026-10-21"})  # the SDK 2.x sends the newer one
TOOL_INPUT_FRAGMENTS = ('{"city": ', '"Utre', 'cht"}')
TOOL_USE_ID = "toolu_01A09q90qw90lq917835lq9"
_KNOWN_BLOCKS = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "output_config",
        "container",
        "mcp_servers",
        "context_management",
    }
)
# Fields and roles that need a beta flag (a prefix of it) in `anthropic-beta`.
_BETA_FIELDS = {"context_management": "context-management-"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
    body["request_id"] = "req_011CMockAnthropic"
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _invalid(message: str) -> web.Response:
    return _error(400, message)


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def check_request(body: dict[str, Any], betas: tuple[str, ...] = ()) -> str | None:
    """What Anthropic would refuse in this body (with these beta flags), in its words (roughly), or None."""
    for name in body:
        if name not in _KNOWN_FIELDS:
            return f"{name}: Extra inputs are not permitted"
        if (beta := _BETA_FIELDS.get(name)) and not any(b.startswith(beta) for b in betas):
            return f"{name}: Extra inputs are not permitted (this field needs the {beta}* beta)"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list"
    for k, block in enumerate(system if isinstance(system, list) else ()):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            return f"system.{k}: Input should be a text block"
    previous_tool_ids: set[str] = set()
    previous_role = None
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system":
            if not text_of(message.get("content")):
                return f"messages.{i}: a system message needs text"
            continue  # in place; the turns around it still alternate
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role == previous_role:
            return "messages: roles must alternate between 'user' and 'assistant'"
        previous_role = role
        if not isinstance(message.get("content"), str | list):
            return f"messages.{i}.content: Input should be a valid string or list"
        blocks = _blocks(message.get("content"))
        if not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        seen_other = False
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind not in _KNOWN_BLOCKS:
                return f"messages.{i}.content.{j}.type: unknown block type {kind!r}"
            if kind == "text" and not block.get("text"):
                return f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
            if kind == "tool_result":
                if role != "user" or seen_other:
                    return f"messages.{i}: tool_result blocks must come first in a user message"
                if block.get("tool_use_id") not in previous_tool_ids:
                    return f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks"
            else:
                seen_other = True
            if kind == "tool_use" and (role != "assistant" or not isinstance(block.get("input"), dict)):
                return f"messages.{i}.content.{j}: tool_use blocks belong to assistant turns and need an input object"
            if kind == "image" and block.get("source", {}).get("type") not in ("base64", "url"):
                return f"messages.{i}.content.{j}.source: unknown image source"
        previous_tool_ids = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    if "tool_choice" in body and not body.get("tools"):
        return "tool_choice may only be specified while providing tools"
    for k, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{k}: a tool needs a name and an input_schema"
    return None


def _last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            return _blocks(message["content"])
    return []


def agent_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The coding agent's answer (tests/mock_agent.py) as content blocks."""
    last = _last_user_blocks(body)
    results = [text_of(b.get("content")) for b in last if b.get("type") == "tool_result"]
    prompt = "\n".join(b["text"] for b in last if b.get("type") == "text" and isinstance(b.get("text"), str))
    tools = {t.get("name") for t in body.get("tools") or () if isinstance(t, dict)}
    turn = agent_turn(prompt, results or None, tools)  # type: ignore[arg-type]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
    if turn.tool:
        blocks.append({"type": "tool_use", "id": "toolu_01MockAgentCall", "name": turn.tool, "input": turn.arguments})
    return blocks


def answer_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content of the mock's answer to this request."""
    if is_agent(body["model"]):
        return agent_blocks(body)
    last = _last_user_blocks(body)
    results = [b for b in last if b.get("type") == "tool_result"]
    if results:
        said = "; ".join(str(r.get("content", "")) for r in results)
        return [{"type": "text", "text": f"tool said: {said}"}]
    if body.get("tools"):
        name = body["tools"][0]["name"]
        return [
            {"type": "text", "text": "Let me look that up."},
            {"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": orjson.loads("".join(TOOL_INPUT_FRAGMENTS))},
        ]
    text = " ".join(b["text"] for b in last if b.get("type") == "text")
    return [{"type": "text", "text": f"echo: {text}"}]


def _stop_reason(model: str, blocks: list[dict[str, Any]]) -> str:
    if model == "claude-refusal":
        return "refusal"
    if model == "claude-max-tokens":
        return "max_tokens"
    return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"


def _usage(model: str, output_tokens: int) -> dict[str, Any]:
    cached = model == "claude-cache"
    return {
        "input_tokens": 11,
        "cache_creation_input_tokens": 20 if cached else 0,
        "cache_read_input_tokens": 100 if cached else 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _message(body: dict[str, Any], blocks: list[dict[str, Any]], stop_reason: str | None, usage: dict) -> dict:
    return {
        "id": "msg_01MockAnthropicReply",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def sse(event: dict[str, Any]) -> bytes:
    """One event as Anthropic frames it: an `event:` line naming the type, then the data."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def stream_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of the streamed answer, in Anthropic's order."""
    model = body["model"]
    blocks = answer_blocks(body)
    start_usage = _usage(model, 1)
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": _message(body, [], None, start_usage)},
        {"type": "ping"},
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            words = block["text"].split(" ")
            for n, word in enumerate(words):
                text = word if n == len(words) - 1 else word + " "
                events.append(
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
                )
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            whole = orjson.dumps(block["input"]).decode()
            fragments = TOOL_INPUT_FRAGMENTS if block["id"] == TOOL_USE_ID else _pieces(whole)
            for fragment in ("", *fragments):  # Anthropic often opens with an empty fragment
                delta = {"type": "input_json_delta", "partial_json": fragment}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(model, blocks), "stop_sequence": None},
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }
    )
    events.append({"type": "message_stop"})
    return events


_ECHO_PIECE = 3  # characters of the key per stream event (`claude-echo-key`)


def _pieces(text: str) -> list[str]:
    return [text[i : i + _ECHO_PIECE] for i in range(0, len(text), _ECHO_PIECE)]


def echo_key_message(body: dict[str, Any], key: str) -> dict[str, Any]:
    """`claude-echo-key`'s answer: the key in a text block, a tool_use input, the id and the model."""
    blocks = [
        {"type": "text", "text": f"The key you sent me is {key}, keep it safe."},
        {"type": "tool_use", "id": f"toolu_{key}", "name": "remember", "input": {"key": key}},
    ]
    return _message(body, blocks, "tool_use", _usage(body["model"], 7)) | {"id": f"msg_{key}", "model": key}


def echo_key_events(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The same answer streamed, the text and the tool input a few characters an event."""
    whole = echo_key_message(body, key)
    text, tool = whole["content"]
    start = whole | {"content": [], "stop_reason": None, "usage": _usage(body["model"], 1)}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for piece in _pieces(text["text"]):
        events.append({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
    events.append({"type": "content_block_stop", "index": 0})
    events.append({"type": "content_block_start", "index": 1, "content_block": tool | {"input": {}}})
    for piece in _pieces(orjson.dumps(tool["input"]).decode()):
        delta = {"type": "input_json_delta", "partial_json": piece}
        events.append({"type": "content_block_delta", "index": 1, "delta": delta})
    events.append({"type": "content_block_stop", "index": 1})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 7},
        }
    )
    events.append({"type": "message_stop"})
    return events


def counted_tokens(body: dict[str, Any]) -> int:
    """What `POST /v1/messages/count_tokens` answers: a stand-in tokenizer, 8 tokens of framing
    plus one per 3 bytes of the system prompt, messages and tools (as JSON)."""
    return 8 + len(orjson.dumps([body.get("system"), body.get("messages"), body.get("tools")])) // 3


def build_app(state: MockState) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _invalid("There was an error parsing the body of your request.")
        if state.record:
            state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        # Anthropic documents `x-api-key`; the anthropic SDK (2.x) sends the key as a Bearer token.
        presented = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not presented:
            return _error(401, "x-api-key header is required")
        version = request.headers.get("anthropic-version")
        if version not in API_VERSIONS:
            return _invalid("anthropic-version: header is required and must be a supported version")
        if version == "2026-10-21" and (sampling := sorted({"temperature", "top_p", "top_k"} & set(body))):
            return _invalid(f"{sampling[0]}: is not supported in API version 2026-10-21")
        betas = tuple(b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip())
        if problem := check_request(body, betas):
            return _invalid(problem)
        model = body["model"]
        if model.startswith("claude-status-"):
            status = int(model.removeprefix("claude-status-"))
            message = {
                401: f"invalid x-api-key: {presented}",
                404: f"model: {model}",
                529: "Overloaded",
            }.get(status, f"mock anthropic error {status}")
            headers = {"retry-after": "7" if status == 429 else "3"} if status in (429, 529) else None
            return _error(status, message, headers)
        if not body.get("stream"):
            blocks = answer_blocks(body)
            reply = _message(body, blocks, _stop_reason(model, blocks), _usage(model, 7))
            if model == "claude-echo-key":
                reply = echo_key_message(body, presented)
            return web.Response(body=orjson.dumps(reply), content_type="application/json")

        events = echo_key_events(body, presented) if model == "claude-echo-key" else stream_events(body)
        if model == "claude-no-stop":
            events = events[:-1]
        if model == "claude-error-event":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            events = [*events[:4], error]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for event in events:
            await response.write(sse(event))
        await response.write_eof()
        state.completed_streams.append(model)
        return response

    async def count_tokens(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _invalid("There was an error parsing the body of your request.")
        if state.record:
            state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        presented = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not presented:
            return _error(401, "x-api-key header is required")
        if request.headers.get("anthropic-version") not in API_VERSIONS:
            return _invalid("anthropic-version: header is required and must be a supported version")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _invalid("model: Field required")
        if extra := sorted(set(body) & {"max_tokens", "stream", "temperature", "stop_sequences"}):
            return _invalid(f"{extra[0]}: Extra inputs are not permitted")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _invalid("messages: Field required")
        if body["model"].startswith("claude-status-"):
            status = int(body["model"].removeprefix("claude-status-"))
            return _error(status, f"mock anthropic error {status}")
        return web.json_response({"input_tokens": counted_tokens(body)})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    return app


class MockAnthropic(MockUpstream):
    """The OpenAI mock's harness (a thread with its own loop), serving the Messages API."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # a base_url like https://api.anthropic.com

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(build_app(self.state), handle_signals=False, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    args = parser.parse_args()
    web.run_app(build_app(MockState(record=False)), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
