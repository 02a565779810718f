"""A real HTTP server that plays Azure OpenAI: deployment-style and v1 paths, `api-key`, api-version.

Bodies are OpenAI's (built with the OpenAI mock's helpers), with Azure's additions: a
`prompt_filter_results` chunk first in a stream and `content_filter_results` in choices. It
answers 401 without the expected `api-key` and 404 for an unknown api-version, as Azure does.
What it answers is chosen by the deployment name (or, on the v1 surface, the model):

- any name: OpenAI's echo (or a tool call when `tools` are given), JSON or SSE
- `azure-content-filter`: the 400 with `code: content_filter` Azure sends for a filtered prompt
- `azure-finish-filter`: a completion cut by the output filter (`finish_reason: content_filter`)
- `azure-status-<code>`: answers <code> with Azure's error object (429 adds `retry-after`)
- `.../completions`: legacy text completions in OpenAI's format (tests/mock_completions.py)

The Responses API (tests/mock_responses.py) at `/openai/responses?api-version=<2025-03-01-preview
or later>` and `/openai/v1/responses`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from tests.mock_completions import text_completion
from tests.mock_responses import responses as serve_responses
from tests.mock_upstream import MockState, MockUpstream, Recorded, _chunk, _completion, _last_user_text

API_KEY = "sk-upstream-test-secret"  # what tests.factories.ProviderFactory stores
API_VERSIONS = frozenset({"2024-10-21", "2025-04-01-preview"})
_SAFE = {"filtered": False, "severity": "safe"}
_FILTER_RESULTS = {name: _SAFE for name in ("hate", "self_harm", "sexual", "violence")}


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = {"error": {"message": message, "type": None, "param": None, "code": code, "status": status, **extra}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _content_filter_error() -> web.Response:
    results = _FILTER_RESULTS | {"violence": {"filtered": True, "severity": "medium"}}
    return _error(
        400,
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
        "Please modify your prompt and retry.",
        "content_filter",
        param="prompt",
        innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": results},
    )


def build_app(state: MockState) -> web.Application:
    async def handle(request: web.Request, body: dict[str, Any], name: str, operation: str) -> web.StreamResponse:
        if state.record:
            state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        if request.headers.get("api-key") != API_KEY:
            return _error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                f"valid key for an active subscription (got {request.headers.get('api-key')!r}).",
                "401",
            )
        if name.startswith("azure-status-"):
            status = int(name.removeprefix("azure-status-"))
            headers = {"retry-after": "11", "retry-after-ms": "10500"} if status == 429 else None
            return _error(status, f"mock azure error {status}", str(status), headers)
        if name == "azure-content-filter":
            return _content_filter_error()
        if operation == "completions":  # legacy text completions (gpt-35-turbo-instruct)
            return await text_completion(request, body, state, request.headers.get("api-key", ""))
        if operation == "embeddings":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(inputs)]
            reply = {"object": "list", "data": data, "model": "text-embedding-3-small", "usage": {"prompt_tokens": 4}}
            return web.Response(body=orjson.dumps(reply), content_type="application/json")
        if not body.get("stream"):
            reply = _completion(body)
            reply["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTER_RESULTS}]
            reply["choices"][0]["content_filter_results"] = _FILTER_RESULTS
            if name == "azure-finish-filter":
                reply["choices"][0]["message"]["content"] = "It began"
                reply["choices"][0]["finish_reason"] = "content_filter"
            return web.Response(body=orjson.dumps(reply), content_type="application/json")
        return await _stream(request, body, name)

    async def _stream(request: web.Request, body: dict[str, Any], name: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        filters = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
        filters["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTER_RESULTS}]
        await response.write(b"data: " + orjson.dumps(filters) + b"\n\n")
        await response.write(_chunk(body, {"role": "assistant", "content": ""}))
        for word in f"echo: {_last_user_text(body)}".split(" "):
            await response.write(_chunk(body, {"content": word + " "}))
        await response.write(_chunk(body, {}, "content_filter" if name == "azure-finish-filter" else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            chunk = orjson.loads(_chunk(body, {})[6:]) | {"choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def deployment_style(request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        if request.query.get("api-version") not in API_VERSIONS:
            return _error(404, "Resource not found", "404")
        return await handle(request, body, request.match_info["deployment"], request.match_info["operation"])

    async def v1(request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        if "api-version" in request.query:
            return _error(400, "api-version is not allowed on the v1 API", "BadRequest")
        return await handle(request, body, str(body.get("model", "")), request.match_info["operation"])

    async def responses(request: web.Request) -> web.StreamResponse:
        """The Responses API: `/openai/responses?api-version=...` (a preview version) or
        `/openai/v1/responses`, the deployment named in the body's `model`."""
        if request.headers.get("api-key") != API_KEY:
            return _error(401, "Access denied due to invalid subscription key or wrong API endpoint.", "401")
        v1 = request.path.startswith("/openai/v1/")
        if v1 == ("api-version" in request.query) or (not v1 and request.query["api-version"] < "2025-03-01"):
            return _error(400, "The Responses API needs api-version 2025-03-01-preview or later, or /openai/v1.", "400")
        return await serve_responses(request, state)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    operations = "{operation:chat/completions|embeddings|completions}"
    app.router.add_post("/openai/deployments/{deployment}/" + operations, deployment_style)
    app.router.add_post("/openai/v1/" + operations, v1)
    app.router.add_post("/openai/responses", responses)
    app.router.add_post("/openai/v1/responses", responses)
    return app


class MockAzure(MockUpstream):
    """The OpenAI mock's harness (a thread with its own loop), serving Azure's paths."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # like https://<resource>.openai.azure.com

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(build_app(self.state), handle_signals=False, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()
