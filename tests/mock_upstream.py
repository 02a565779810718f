"""A real HTTP server that speaks OpenAI's wire format (JSON and SSE) and records what it got.

Tests and `make bench` point providers at it. What it does is chosen by the *upstream* model
name of the request, so one server plays every scenario:

- any name: a chat completion echoing the last user message; SSE when `stream` is true, with
  a usage chunk when `stream_options.include_usage` is true; tool calls when `tools` are given
- `mock-status-<code>`: answers <code> with an OpenAI error object (429 adds `retry-after`)
- `mock-die-mid-stream`: sends two chunks, then cuts the connection
- `mock-slow-stream`: one chunk every 50 ms for 10 s, noting whether the client went away
- `mock-hang`: answers nothing for 30 s (for timeouts)
- `mock-bad-json`: answers 200 with a body that is not JSON
- `mock-no-done`: streams and closes cleanly without `[DONE]`
- `mock-redirect`: answers 307 to another address
- `mock-guard`: a Llama Guard-style classifier: `unsafe` and `S1` when the last user message
  says "forbidden", else `safe`
- `POST /moderations`: OpenAI's moderation answer, flagged (violence) when the input says
  "forbidden"; the model `mock-moderation-down` answers 500
- `mock-script-<name>` (or `mock-script-<name>@<label>`): the k-th request takes the k-th step of
  `state.scripts["<name>"]`, the last step repeating once the script runs out (no script: `ok`).
  Labels let several deployments share one script while the recorded requests tell them apart.
  Steps (`<n>` counts the stream chunks sent first, the role chunk included):
  - `ok`: the echo; its usage counts one completion token per word produced
  - `429`, `500`, `503`, any `<code>`: OpenAI's error object for that status, no `retry-after`
  - `<code>-retry-after=<value>`: the same with a `retry-after` header
  - `reset`: the connection is cut before any header
  - `hang`: no answer until the client goes away (at most 30 s)
  - `slow-first-token=<seconds>`: waits before answering (a stream: after its headers)
  - `cut=<n>`: the connection is cut after n chunks (not streaming: after half the body)
  - `stall=<n>`: silence after n chunks (not streaming: after half the body) until the client leaves
  - `malformed=<n>`: a `data:` line that is not JSON after n chunks (not streaming: a body that is not JSON)
  - `no-done`: a whole stream, usage included, that ends without `[DONE]`
  - `error-event=<n>`: an error event after n chunks (not streaming: a 500)
  - `context-length`: 400 with OpenAI's `context_length_exceeded`
  - `content-filter`: a 200 answer stopped early with finish_reason `content_filter`
  - `content-filter-400`: Azure's 400 with code `content_filter`
  - `echo-key=<code>`, `echo-key-event=<n>`: an error (a stream's error event after n chunks; a 500
    when not streaming) that quotes the presented key, as a careless upstream might
- `mock-tokenizer` (and `mock-tokenizer-slow=<seconds>`, which waits that long before answering):
  a greedy server that bills like a real tokenizer and generates all that the request allows.
  Prompt tokens: every string in `messages`, `tools` and `system` (embeddings: `input`) costs one
  token per non-ASCII character plus one per 4 ASCII characters (rounded up per string), each
  message 3 more, each `image_url` part a flat 765; embedding token arrays count their length.
  Output: the *larger* of `max_tokens` and `max_completion_tokens` (a float rounded up; neither:
  4096; at most 65,536) for each of `n` choices, one "語" per token, finish_reason `length`
  (SSE when `stream` is true, usage in a last chunk when `stream_options.include_usage` is true).
  A negative or non-numeric limit, or an `n` that is not a whole number from 1 to 128, gets a 400.
  Every answer delivered in full is billed (`state.billed`), whether or not it reports usage.
- `mock-deep`: a 200 completion, usage billed as usual, whose message carries a value nested
  `DEEP` (300) levels; streaming, the chunk after the role chunk carries it
- `mock-slow-tail=<seconds>`: the echo (plain or streamed), billed at once, whose last bytes (the
  second half of the body, or a stream's `[DONE]` after its usage) leave that much later
- `mock-drip=<every>,<seconds>` (`mock-drip=0.5,15`): a long, slow stream for holding many at
  once: the role chunk, then one content chunk every <every> seconds for <seconds> seconds, the
  finish chunk, the usage chunk when asked for, and `[DONE]`; billed once all has left. Not
  streaming: the echo after <seconds>. A name that does not parse gets a 400
- `mock-echo-auth`: an answer that quotes the bearer value it was sent: in the content, in a tool
  call's arguments, and in `id`, `model` and `system_fingerprint`; streaming, the content and
  the arguments arrive a few characters a chunk, so the key is split across many chunks
- a name containing `agent` (`mock-agent`, `gpt-5-mock-agent`): a coding agent's model
  (tests/mock_agent.py). Like OpenAI, it refuses a parameter it does not know ("Unrecognized
  request argument supplied: thinking"), and `reasoning_effort` unless the name starts with a
  reasoning model's (o1..o9, gpt-5, gpt-oss)
`POST /responses` (OpenAI's Responses API, tests/mock_responses.py) only when started with
`MockUpstream(responses=True)`: an OpenAI-compatible server has none, so the default answers 404.
`POST /completions`: OpenAI's legacy text completions (tests/mock_completions.py), JSON and SSE.
Embeddings return a 3-dimensional vector per input. `GET /models` lists one model (401 when the
key is `sk-rejected`), for health checks.

Run standalone with `python -m tests.mock_upstream --port 9100` (the benchmark does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.mock_agent import agent_turn, is_agent, text_of
from tests.mock_completions import text_completion


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic())


@dataclass
class MockState:
    requests: list[Recorded] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)  # upstream models whose client went away
    completed_streams: list[str] = field(default_factory=list)
    record: bool = True
    scripts: dict[str, list[str]] = field(default_factory=dict)  # see `mock-script-<name>`
    script_calls: dict[str, int] = field(default_factory=dict)  # requests each script has served
    billed: list[dict[str, int]] = field(default_factory=list)  # usage of each answer delivered in full
    billed_models: list[str] = field(default_factory=list)  # the upstream model of each of those

    def bill(self, body: dict[str, Any], usage: dict[str, int]) -> None:
        self.billed.append(usage)
        self.billed_models.append(str(body.get("model", "")))

    def billed_for(self, models: Collection[str]) -> list[dict[str, int]]:
        """The usage billed for these upstream models (a test's own, not what a straggler from an
        earlier test that used other models cost)."""
        return [usage for usage, model in zip(self.billed, self.billed_models, strict=True) if model in models]

    def last(self) -> Recorded:
        return self.requests[-1]

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()
        self.completed_streams.clear()
        self.scripts.clear()
        self.script_calls.clear()
        self.billed.clear()
        self.billed_models.clear()


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    headers = {"retry-after": "7"} if status == 429 else None
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": f"echo: {_last_user_text(body)}"}
    finish = "stop"
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"city": "Utrecht"}'}}
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    chunk = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if (body.get("stream_options") or {}).get("include_usage"):
        chunk["usage"] = None
    chunk.update(extra)
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


# --- scripted faults (`mock-script-<name>`) ---

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str | None]] = {
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}
CONTEXT_LENGTH_ERROR = {
    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 "
    "tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
AZURE_CONTENT_FILTER_ERROR = {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry.",
    "type": None,
    "param": "prompt",
    "code": "content_filter",
    "status": 400,
    "innererror": {
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {"violence": {"filtered": True, "severity": "high"}},
    },
}
_FILTERED_AFTER = 2  # words a `content-filter` answer gets out before it is stopped


def _next_step(state: MockState, model: str) -> str:
    name = model.removeprefix("mock-script-").split("@", 1)[0]
    script = state.scripts.get(name) or ["ok"]
    served = state.script_calls.get(name, 0)
    state.script_calls[name] = served + 1
    return script[min(served, len(script) - 1)]


def _json_response(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json", headers=headers)


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _wait_or_gone(request: web.Request, seconds: float) -> bool:
    """Wait, noticing a client that goes away (aiohttp does not cancel the handler). True: it went."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(request):
            return True
        await asyncio.sleep(0.01)
    return _gone(request)


def _presented_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def _words(body: dict[str, Any]) -> list[str]:
    return [word + " " for word in f"echo: {_last_user_text(body)}".split(" ")]


def _usage(completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 11, "completion_tokens": completion_tokens, "total_tokens": 11 + completion_tokens}


async def _play(request: web.Request, body: dict[str, Any], state: MockState, model: str) -> web.StreamResponse:
    step, _, arg = _next_step(state, model).partition("=")
    stream = bool(body.get("stream"))
    if not stream and step in ("error-event", "echo-key-event"):
        step, arg = ("500", "") if step == "error-event" else ("echo-key", "500")
    if step[:3].isdigit():
        status = int(step[:3])
        message, type_, code = _OPENAI_ERRORS.get(status, (f"mock upstream error {status}", "api_error", None))
        headers = {"retry-after": arg} if step[3:] == "-retry-after" else None
        error = {"message": message, "type": type_, "param": None, "code": code}
        return _json_response(status, {"error": error}, headers)
    if step == "context-length":
        return _json_response(400, {"error": CONTEXT_LENGTH_ERROR})
    if step == "content-filter-400":
        return _json_response(400, {"error": AZURE_CONTENT_FILTER_ERROR})
    if step == "echo-key":
        message = f"mock: the request with key '{_presented_key(request)}' failed"
        error = {"message": message, "type": "api_error", "param": None, "code": None}
        return _json_response(int(arg or 400), {"error": error})
    if step == "reset":
        assert request.transport is not None
        request.transport.abort()
        return web.Response()
    if step == "hang":
        if await _wait_or_gone(request, 30):
            state.disconnects.append(model)
        return web.Response()
    if stream:
        return await _play_stream(request, body, state, model, step, arg)
    if step == "slow-first-token" and await _wait_or_gone(request, float(arg)):
        state.disconnects.append(model)
        return web.Response()

    words = _words(body)
    if step == "content-filter":
        words = words[:_FILTERED_AFTER]
    if step == "malformed":
        return web.Response(status=200, body=b'{"id": "chatcmpl-mock", "choices": [', content_type="application/json")
    reply = _completion(body)
    reply["choices"][0]["message"] = {"role": "assistant", "content": "".join(words)}
    reply["choices"][0]["finish_reason"] = "content_filter" if step == "content-filter" else "stop"
    reply["usage"] = _usage(len(words))
    data = orjson.dumps(reply)
    if step not in ("cut", "stall"):
        state.bill(body, reply["usage"])
        return web.Response(body=data, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    if step == "cut":
        assert request.transport is not None
        request.transport.abort()
    elif await _wait_or_gone(request, 30):
        state.disconnects.append(model)
    return response


async def _play_stream(
    request: web.Request, body: dict[str, Any], state: MockState, model: str, step: str, arg: str
) -> web.StreamResponse:
    words = _words(body)
    finish = "stop"
    if step == "content-filter":
        words, finish = words[:_FILTERED_AFTER], "content_filter"
    chunks = [_chunk(body, {"role": "assistant", "content": ""})]
    chunks += [_chunk(body, {"content": word}) for word in words]
    chunks.append(_chunk(body, {}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage_chunk = orjson.loads(_chunk(body, {})[6:])
        usage_chunk["choices"], usage_chunk["usage"] = [], _usage(len(words))
        chunks.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    faulty_at = int(arg) if step in ("cut", "stall", "malformed", "error-event", "echo-key-event") else len(chunks)

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)  # a stream's headers leave at once
        if step == "slow-first-token" and await _wait_or_gone(request, float(arg)):
            state.disconnects.append(model)
            return response
        for chunk in chunks[:faulty_at]:
            await response.write(chunk)
        if step == "cut":
            await asyncio.sleep(0.02)  # let the chunks leave before the connection breaks
            assert request.transport is not None
            request.transport.abort()
            return response
        if step == "stall":
            if await _wait_or_gone(request, 30):
                state.disconnects.append(model)
            return response
        if step == "malformed":
            await response.write(b'data: {"id": "chatcmpl-mock", "choices": [\n\n')
        elif step in ("error-event", "echo-key-event"):
            message = "mock: the model crashed"
            if step == "echo-key-event":
                message += f" (key '{_presented_key(request)}')"
            error = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
        for chunk in chunks[faulty_at:]:
            await response.write(chunk)
        if faulty_at == len(chunks) and (body.get("stream_options") or {}).get("include_usage"):
            # Billed once its usage has left: a client that closes at [DONE] may break the last write.
            state.bill(body, _usage(len(words)))
        if step != "no-done":
            await response.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        state.disconnects.append(model)
        return response
    state.completed_streams.append(model)
    return response


# --- hostile upstreams (`mock-tokenizer`, `mock-deep`, `mock-echo-auth`) ---

TOKENIZER_CHAR = "語"  # one output token each
TOKENIZER_DEFAULT_OUTPUT = 4096
TOKENIZER_MAX_OUTPUT = 65_536
TOKENIZER_MAX_N = 128
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 765
_TOKENIZER_CHUNK = 64  # output tokens a stream chunk carries
DEEP = 300  # levels of nesting of `mock-deep`'s answers
_DEEP_MARK = "__mock_deep__"
_ECHO_PIECE = 3  # characters of the key per stream chunk


def string_tokens(text: str) -> int:
    """What the greedy tokenizer bills for one string: a token per non-ASCII character, and one per
    four ASCII characters (rounded up)."""
    wide = sum(1 for char in text if not char.isascii())
    return wide + math.ceil((len(text) - wide) / 4)


def _tokens_in(value: Any) -> int:
    if isinstance(value, str):
        return string_tokens(value)
    if isinstance(value, list):
        return sum(_tokens_in(v) for v in value)
    if isinstance(value, dict):
        if value.get("type") == "image_url":
            return TOKENS_PER_IMAGE
        return sum(_tokens_in(v) for v in value.values())
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    """The greedy tokenizer's prompt tokens for a chat request."""
    messages = body.get("messages")
    per_message = TOKENS_PER_MESSAGE * len(messages) if isinstance(messages, list) else 0
    return per_message + sum(_tokens_in(body.get(field)) for field in ("messages", "tools", "system"))


def embedding_tokens(value: Any) -> int:
    """The greedy tokenizer's tokens for an embeddings `input`: token arrays count their length."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return len(value)
    if isinstance(value, list):
        return sum(embedding_tokens(v) for v in value)
    return _tokens_in(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tokenizer_limits(body: dict[str, Any]) -> tuple[int, int] | web.Response:
    """(output tokens per choice, choices), or the 400 a real server gives for nonsense."""
    asked = [body[f] for f in ("max_tokens", "max_completion_tokens") if body.get(f) is not None]
    for value in asked:
        if not _whole(value) or value < 0:
            return _error(400, f"mock: invalid output limit {value!r}", code="invalid_value")
    output = min(math.ceil(max(asked)), TOKENIZER_MAX_OUTPUT) if asked else TOKENIZER_DEFAULT_OUTPUT
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not _whole(n) or n != int(n) or not 1 <= n <= TOKENIZER_MAX_N:
        return _error(400, f"mock: invalid n {n!r}", code="invalid_value")
    return output, int(n)


async def _tokenizer(request: web.Request, body: dict[str, Any], state: MockState, model: str) -> web.StreamResponse:
    if delay := model.partition("-slow=")[2]:
        await asyncio.sleep(float(delay))
    limits = _tokenizer_limits(body)
    if isinstance(limits, web.Response):
        return limits
    output, n = limits
    usage = {"prompt_tokens": prompt_tokens(body), "completion_tokens": n * output}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if not body.get("stream"):
        reply = _completion(body)
        reply["choices"] = [
            {
                "index": i,
                "message": {"role": "assistant", "content": TOKENIZER_CHAR * output},
                "logprobs": None,
                "finish_reason": "length",
            }
            for i in range(n)
        ]
        reply["usage"] = usage
        state.bill(body, usage)
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = orjson.loads(_chunk(body, delta, finish)[6:])
        data["choices"][0]["index"] = index
        return b"data: " + orjson.dumps(data) + b"\n\n"

    chunks = [chunk(i, {"role": "assistant", "content": ""}) for i in range(n)]
    for i in range(n):
        for start in range(0, output, _TOKENIZER_CHUNK):
            chunks.append(chunk(i, {"content": TOKENIZER_CHAR * min(_TOKENIZER_CHUNK, output - start)}))
        chunks.append(chunk(i, {}, "length"))
    return await _send_stream(request, body, state, model, chunks, usage)


async def _send_stream(
    request: web.Request,
    body: dict[str, Any],
    state: MockState,
    model: str,
    chunks: list[bytes],
    usage: dict[str, int],
) -> web.StreamResponse:
    """Send the chunks, the usage chunk when asked for, and [DONE]; bill the usage once all is out."""
    if (body.get("stream_options") or {}).get("include_usage"):
        last = orjson.loads(_chunk(body, {})[6:])
        last["choices"], last["usage"] = [], usage
        chunks = [*chunks, b"data: " + orjson.dumps(last) + b"\n\n"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        for data in chunks:
            await response.write(data)
        await response.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        state.disconnects.append(model)
        return response
    state.bill(body, usage)
    state.completed_streams.append(model)
    return response


def _deepen(data: bytes) -> bytes:
    """The JSON with its `_DEEP_MARK` string replaced by a value nested DEEP levels (orjson writes
    no deeper than 254 levels, so the nesting is spliced in as text)."""
    deep = b'{"level":' * (DEEP - 1) + b'["deep"]' + b"}" * (DEEP - 1)
    return data.replace(orjson.dumps(_DEEP_MARK), deep)


async def _deep(request: web.Request, body: dict[str, Any], state: MockState, model: str) -> web.StreamResponse:
    usage = _usage(7)
    if not body.get("stream"):
        reply = _completion(body)
        reply["choices"][0]["message"]["context"] = _DEEP_MARK
        reply["usage"] = usage
        state.bill(body, usage)
        return web.Response(body=_deepen(orjson.dumps(reply)), content_type="application/json")
    chunks = [
        _chunk(body, {"role": "assistant", "content": ""}),
        _deepen(_chunk(body, {"content": "deep ", "context": _DEEP_MARK})),
        *(_chunk(body, {"content": word}) for word in _words(body)),
        _chunk(body, {}, "stop"),
    ]
    return await _send_stream(request, body, state, model, chunks, usage)


def _pieces(text: str) -> list[str]:
    return [text[i : i + _ECHO_PIECE] for i in range(0, len(text), _ECHO_PIECE)]


async def _echo_auth(request: web.Request, body: dict[str, Any], state: MockState, model: str) -> web.StreamResponse:
    key = _presented_key(request)
    content = f"The key you sent me is {key}, keep it safe."
    arguments = orjson.dumps({"key": key}).decode()
    call = {"id": f"call_{key}", "type": "function", "function": {"name": "remember", "arguments": arguments}}
    extra = {"id": f"chatcmpl-{key}", "model": key, "system_fingerprint": key}
    usage = _usage(len(_pieces(content)) + len(_pieces(arguments)))
    if not body.get("stream"):
        reply = _completion(body) | extra
        message = {"role": "assistant", "content": content, "tool_calls": [call]}
        reply["choices"][0] |= {"message": message, "finish_reason": "tool_calls"}
        reply["usage"] = usage
        state.bill(body, usage)
        return web.Response(body=orjson.dumps(reply), content_type="application/json")
    chunks = [_chunk(body, {"role": "assistant", "content": ""}, **extra)]
    chunks += [_chunk(body, {"content": piece}, **extra) for piece in _pieces(content)]
    opening = call | {"index": 0, "function": {"name": "remember", "arguments": ""}}
    chunks.append(_chunk(body, {"tool_calls": [opening]}, **extra))
    for piece in _pieces(arguments):
        chunks.append(_chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, **extra))
    chunks.append(_chunk(body, {}, "tool_calls", **extra))
    return await _send_stream(request, body, state, model, chunks, usage)


_AGENT_PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "stop",
        "user",
        "response_format",
        "reasoning_effort",
    }
)
_REASONING_MODEL = re.compile(r"(o[1-9]|gpt-5|gpt-oss)")


async def _agent(request: web.Request, body: dict[str, Any], state: MockState, model: str) -> web.StreamResponse:
    """A coding agent's model (tests/mock_agent.py) in OpenAI's wire format."""
    for name in body:
        if name not in _AGENT_PARAMS:
            return _error(400, f"Unrecognized request argument supplied: {name}")
    if "reasoning_effort" in body and not _REASONING_MODEL.match(model):
        return _error(400, f"Unsupported parameter: 'reasoning_effort' is not supported with the model {model}.")
    messages = body.get("messages") or []
    tail: list[dict[str, Any]] = []  # the tool results after the last assistant turn
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        tail.insert(0, message)
    prompt = text_of(next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), ""))
    tools = {t["function"]["name"] for t in body.get("tools") or () if isinstance(t, dict) and "function" in t}
    turn = agent_turn(prompt, [text_of(m.get("content")) for m in tail] if tail else None, tools)
    call = None
    if turn.tool:
        arguments = orjson.dumps(turn.arguments).decode()
        call = {"id": "call_mock_agent", "type": "function", "function": {"name": turn.tool, "arguments": arguments}}
    finish = "tool_calls" if call else "stop"
    usage = _usage(len(turn.text.split()) + (5 if call else 0))
    if not body.get("stream"):
        reply = _completion(body)
        message = {"role": "assistant", "content": turn.text} | ({"tool_calls": [call]} if call else {})
        reply["choices"][0] |= {"message": message, "finish_reason": finish}
        reply["usage"] = usage
        state.bill(body, usage)
        return web.Response(body=orjson.dumps(reply), content_type="application/json")
    chunks = [_chunk(body, {"role": "assistant", "content": ""})]
    words = turn.text.split(" ")
    chunks += [_chunk(body, {"content": word + (" " if i < len(words) - 1 else "")}) for i, word in enumerate(words)]
    if call:
        chunks.append(_chunk(body, {"tool_calls": [call | {"index": 0}]}))
    chunks.append(_chunk(body, {}, finish))
    return await _send_stream(request, body, state, model, chunks, usage)


async def _slow_tail(request: web.Request, body: dict[str, Any], state: MockState, pause: float) -> web.StreamResponse:
    """The echo, billed as soon as it is decided, whose last bytes leave `pause` seconds later: a
    client can hang up while the gateway is still reading an answer the upstream has billed."""
    reply = _completion(body)
    state.bill(body, reply["usage"])
    if not body.get("stream"):
        data = orjson.dumps(reply)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await response.write(data[: len(data) // 2])
            await asyncio.sleep(pause)
            await response.write(data[len(data) // 2 :])
        return response
    usage_chunk = orjson.loads(_chunk(body, {})[6:]) | {"choices": [], "usage": reply["usage"]}
    chunks = [_chunk(body, {"role": "assistant", "content": ""}), _chunk(body, {"content": "echo"}, "stop")]
    chunks.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        for chunk in chunks:
            await response.write(chunk)
        await asyncio.sleep(pause)
        await response.write(b"data: [DONE]\n\n")
    return response


def _drip_timing(model: str) -> tuple[float, int] | None:
    """(seconds between chunks, content chunks) of `mock-drip=<every>,<seconds>`, or None."""
    every, _, seconds = model.removeprefix("mock-drip=").partition(",")
    try:
        interval, total = float(every), float(seconds)
    except ValueError:
        return None
    if not (math.isfinite(interval) and math.isfinite(total)) or interval <= 0 or total < 0:
        return None
    return interval, max(1, round(total / interval))


async def _drip(request: web.Request, body: dict[str, Any], state: MockState, model: str) -> web.StreamResponse:
    """A stream that trickles for a while (`mock-drip=<every>,<seconds>`): what a server holding a
    thousand of them at once must keep per stream, and nothing more as the chunks go by."""
    timing = _drip_timing(model)
    if timing is None:
        return _error(400, f"mock: {model!r} is not mock-drip=<every>,<seconds>")
    interval, count = timing
    usage = _usage(count)
    if not body.get("stream"):
        if await _wait_or_gone(request, interval * count):
            state.disconnects.append(model)
            return web.Response()
        reply = _completion(body) | {"usage": usage}
        state.bill(body, usage)
        return web.Response(body=orjson.dumps(reply), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        await response.write(_chunk(body, {"role": "assistant", "content": ""}))
        for i in range(count):
            await asyncio.sleep(interval)
            await response.write(_chunk(body, {"content": f"tick{i} "}))
        await response.write(_chunk(body, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            last = orjson.loads(_chunk(body, {})[6:])
            last["choices"], last["usage"] = [], usage
            await response.write(b"data: " + orjson.dumps(last) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        state.disconnects.append(model)
        return response
    state.bill(body, usage)
    state.completed_streams.append(model)
    return response


def build_app(state: MockState, *, responses: bool = False) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "mock: body is not JSON")
        if state.record:
            state.requests.append(Recorded(request.path, dict(request.headers), body))
        model = str(body.get("model", ""))
        if model.startswith("mock-script-"):
            return await _play(request, body, state, model)
        if model.startswith("mock-tokenizer"):
            return await _tokenizer(request, body, state, model)
        if model == "mock-deep":
            return await _deep(request, body, state, model)
        if model == "mock-echo-auth":
            return await _echo_auth(request, body, state, model)
        if is_agent(model):
            return await _agent(request, body, state, model)
        if model.startswith("mock-drip="):
            return await _drip(request, body, state, model)
        if model.startswith("mock-slow-tail="):
            return await _slow_tail(request, body, state, float(model.removeprefix("mock-slow-tail=")))
        if model.startswith("mock-status-"):
            status = int(model.removeprefix("mock-status-"))
            return _error(status, f"mock upstream error {status}", code=f"mock_{status}")
        if model == "mock-hang":
            await asyncio.sleep(30)
        if model == "mock-guard":  # a Llama Guard-style classifier
            verdict = "unsafe\nS1" if "forbidden" in _last_user_text(body).lower() else "safe"
            reply = _completion(body)
            reply["choices"][0]["message"]["content"] = verdict
            return web.Response(body=orjson.dumps(reply), content_type="application/json")
        if model == "mock-bad-json":
            return web.Response(status=200, body=b"{not json", content_type="application/json")
        if model == "mock-redirect":
            raise web.HTTPTemporaryRedirect("http://169.254.169.254/latest/meta-data")
        if not body.get("stream"):
            reply = _completion(body)
            state.bill(body, reply["usage"])
            return web.Response(body=orjson.dumps(reply), content_type="application/json")

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(_chunk(body, {"role": "assistant", "content": ""}))
        if model == "mock-die-mid-stream":
            await response.write(_chunk(body, {"content": "partial "}))
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            return response
        if model == "mock-slow-stream":
            try:
                for i in range(200):
                    await response.write(_chunk(body, {"content": f"tick{i} "}))
                    await asyncio.sleep(0.05)
            except (ConnectionResetError, asyncio.CancelledError):
                state.disconnects.append(model)
                raise
            state.completed_streams.append(model)
            return response
        if body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
            await response.write(_chunk(body, {"tool_calls": [call]}))
            for part in ('{"city": ', '"Utrecht"}'):
                await response.write(_chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
            await response.write(_chunk(body, {}, "tool_calls"))
        else:
            for word in f"echo: {_last_user_text(body)}".split(" "):
                await response.write(_chunk(body, {"content": word + " "}))
            await response.write(_chunk(body, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            chunk = orjson.loads(_chunk(body, {})[6:])
            chunk["choices"] = []
            chunk["usage"] = usage
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            state.bill(body, usage)  # once its usage has left (a client may close at [DONE])
        if model != "mock-no-done":
            await response.write(b"data: [DONE]\n\n")
        state.completed_streams.append(model)
        return response

    async def completions(request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "mock: body is not JSON")
        if state.record:
            state.requests.append(Recorded(request.path, dict(request.headers), body))
        return await text_completion(request, body, state, _presented_key(request))

    async def moderations(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if state.record:
            state.requests.append(Recorded(request.path, dict(request.headers), body))
        if body.get("model") == "mock-moderation-down":
            return _error(500, "mock: the moderation model is down")
        texts = body.get("input") if isinstance(body.get("input"), list) else [body.get("input")]
        results = []
        for text in texts:
            flagged = "forbidden" in str(text).lower()
            results.append(
                {
                    "flagged": flagged,
                    "categories": {"violence": flagged, "harassment": False},
                    "category_scores": {"violence": 0.97 if flagged else 0.01, "harassment": 0.0},
                }
            )
        return web.json_response({"id": "modr-mock", "model": body.get("model"), "results": results})

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json(loads=orjson.loads)
        if state.record:
            state.requests.append(Recorded(request.path, dict(request.headers), body))
        model = str(body.get("model", ""))
        if model.startswith("mock-status-"):
            status = int(model.removeprefix("mock-status-"))
            return _error(status, f"mock upstream error {status}")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        usage = {"prompt_tokens": 4, "total_tokens": 4}
        if model.startswith("mock-tokenizer"):
            if delay := model.partition("-slow=")[2]:
                await asyncio.sleep(float(delay))
            if inputs and all(isinstance(v, int) for v in inputs):
                inputs = [inputs]  # one token array
            tokens = embedding_tokens(body["input"])
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            state.bill(body, {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens})
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(inputs)]
        reply = {"object": "list", "data": data, "model": model, "usage": usage}
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        if state.record:
            state.requests.append(Recorded(request.path, dict(request.headers), {}))
        if request.headers.get("Authorization") == "Bearer sk-rejected":
            return _error(401, "Incorrect API key provided: sk-rej***", code="invalid_api_key")
        data = [{"id": "upstream-gpt", "object": "model", "created": 0, "owned_by": "mock"}]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")

    async def responses_api(request: web.Request) -> web.StreamResponse:
        from tests.mock_responses import responses as serve_responses

        return await serve_responses(request, state)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    for prefix in ("", "/v1"):
        app.router.add_get(prefix + "/models", models)
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_post(prefix + "/embeddings", embeddings)
        app.router.add_post(prefix + "/moderations", moderations)
        app.router.add_post(prefix + "/completions", completions)
        if responses:
            app.router.add_post(prefix + "/responses", responses_api)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MockUpstream:
    """The server in a background thread with its own event loop."""

    def __init__(self, port: int | None = None, *, responses: bool = False) -> None:
        self.port = port or free_port()
        self.responses = responses  # serve OpenAI's Responses API (POST /responses) too
        self.state = MockState()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="mock-upstream", daemon=True)
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = build_app(self.state, responses=self.responses)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    def start(self) -> MockUpstream:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("mock upstream did not start")
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    state = MockState(record=False)
    web.run_app(build_app(state), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
