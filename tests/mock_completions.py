"""OpenAI's legacy text completions (`POST /completions`) for the OpenAI and Azure mocks
(tests/mock_upstream.py, tests/mock_azure.py), in the real wire format: `text_completion`
objects, JSON or SSE, usage in a last chunk when `stream_options.include_usage` is true (and
`"usage": null` on the chunks before it, as OpenAI sends them).

Each prompt is answered `n` times with `echo: <prompt>` (the prompt first when `echo` is true),
the choices numbered prompt by prompt. Usage: 5 prompt tokens a prompt, 7 completion tokens a
choice. By the upstream model name: `mock-status-<code>` answers <code> with an OpenAI error
object; `mock-echo-auth` answers `your key is <the bearer value>`, streamed a few characters a
chunk (a key split across chunks).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

PROMPT_TOKENS = 5  # a prompt
COMPLETION_TOKENS = 7  # a choice
_PIECE = 3  # characters a chunk of `mock-echo-auth`


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def texts(body: dict[str, Any], key: str = "") -> list[str]:
    prompts = body["prompt"] if isinstance(body.get("prompt"), list) else [body.get("prompt")]
    n = body.get("n") or 1
    if body.get("model") == "mock-echo-auth":
        return [f"your key is {key}" for _ in prompts for _ in range(n)]
    return [(str(p) if body.get("echo") else "") + f"echo: {p}" for p in prompts for _ in range(n)]


def usage(body: dict[str, Any], choices: int) -> dict[str, int]:
    prompts = len(body["prompt"]) if isinstance(body.get("prompt"), list) else 1
    prompt, completion = PROMPT_TOKENS * prompts, COMPLETION_TOKENS * choices
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunk(body: dict[str, Any], choices: list[dict[str, Any]], **extra: Any) -> bytes:
    chunk = {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()), "choices": choices}
    chunk["model"] = body.get("model")
    if (body.get("stream_options") or {}).get("include_usage"):
        chunk["usage"] = None
    chunk.update(extra)
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def text_completion(request: web.Request, body: dict[str, Any], state: Any, key: str) -> web.StreamResponse:
    """The answer to one completions request (`state`: the mock's MockState, billed on delivery)."""
    model = str(body.get("model", ""))
    if model.startswith("mock-status-"):
        status = int(model.removeprefix("mock-status-"))
        return _error(status, f"mock upstream error {status}", code=f"mock_{status}")
    if not isinstance(body.get("prompt"), str | list):
        return _error(400, "mock: 'prompt' is required", code="missing_required_parameter")
    answers = texts(body, key)
    billed = usage(body, len(answers))
    if not body.get("stream"):
        choices = [{"text": t, "index": i, "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(answers)]
        reply = {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()), "model": model}
        reply |= {"system_fingerprint": "fp_mock", "choices": choices, "usage": billed}
        state.bill(body, billed)
        return web.Response(body=orjson.dumps(reply), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for index, text in enumerate(answers):
        if model == "mock-echo-auth":
            pieces = [text[i : i + _PIECE] for i in range(0, len(text), _PIECE)]
        else:
            pieces = [word + " " for word in text.split(" ")]
        for piece in pieces:
            await response.write(
                _chunk(body, [{"text": piece, "index": index, "logprobs": None, "finish_reason": None}])
            )
        await response.write(_chunk(body, [{"text": "", "index": index, "logprobs": None, "finish_reason": "stop"}]))
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(_chunk(body, [], usage=billed))
        state.bill(body, billed)
    await response.write(b"data: [DONE]\n\n")
    state.completed_streams.append(model)
    return response
