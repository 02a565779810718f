"""Where a /v1 request enters and leaves: a lean ASGI application (gateway/asgi.py sends /v1 here).

Django's ASGIHandler runs every request through the middleware stack, the request_started and
request_finished signals (synchronous receivers, each a thread hop), a spooled temporary file for
the body, two tasks per request, and its own response writer. The proxy needs none of that (it
authenticates with virtual keys, holds no session and never touches the ORM on the request
thread), so this application:

- reads the body into memory, refusing one over PROXY_MAX_BODY_BYTES while reading it (413);
- dispatches on the method and path itself (`ROUTES`, the endpoints of gateway/proxy/endpoints.py;
  the same views django-ninja serves to WSGI and `reverse()`), answering an unknown path (404) or
  a wrong method (405, with `Allow`) with the caller's error object;
- hands the view a `ProxyRequest`, the part of Django's HttpRequest the views read (`META`,
  `headers`, `GET`, `body`, `method`, `path`), built lazily;
- writes the view's response straight to ASGI: status and headers, then the body or the stream's
  pieces as they come;
- scrubs every non-streamed body of the secrets the gateway knows (gateway/scrub.py: provider keys
  an upstream echoed, the request's own key; streams scrub their own writes);
- watches for the client going away with one task: a disconnect cancels the request (a stream
  stops pulling from the upstream, whose connection is dropped) and the request still writes its
  record, as 499.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from django.http.request import HttpHeaders
from django.http.response import HttpResponseBase

from gateway import scrub
from gateway.proxy import auth_throttle, endpoints, logbuffer
from gateway.proxy.dialects.anthropic_messages import error_response as anthropic_error
from gateway.proxy.errors import InternalError, MethodNotAllowed, NotFound, PayloadTooLarge, ProxyError
from gateway.proxy.request import new_request_id, presented_key
from gateway.proxy.sse import LastPiece

logger = logging.getLogger("gateway.proxy")

View = Callable[..., Awaitable[HttpResponseBase]]
# (method, path) -> view; and views under a prefix that take the rest of the path as an argument.
ROUTES: dict[tuple[str, str], View] = {
    ("POST", "/v1/chat/completions"): endpoints.chat_completions,
    ("POST", "/v1/embeddings"): endpoints.embeddings,
    ("POST", "/v1/responses"): endpoints.create_response,
    ("POST", "/v1/messages"): endpoints.create_message,
    ("POST", "/v1/completions"): endpoints.completions,
    ("POST", "/v1/messages/count_tokens"): endpoints.count_message_tokens,
    ("POST", "/v1/moderations"): endpoints.moderations,
    ("GET", "/v1/models"): endpoints.list_models,
}
PREFIXED: dict[tuple[str, str], tuple[View, str]] = {
    ("GET", "/v1/models/"): (endpoints.retrieve_model, "model_id"),
}


class ProxyRequest:
    """What the /v1 views read of a request, made from the ASGI scope (a duck-typed subset of
    Django's HttpRequest, so the same views serve Django's test client and WSGI through ninja)."""

    __slots__ = ("__dict__", "body", "exchange", "extra_headers", "method", "path", "path_info", "scope")

    def __init__(self, scope: dict[str, Any], body: bytes) -> None:
        self.scope = scope
        self.body = body
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.path_info = self.path
        self.exchange: Any = None
        self.extra_headers: dict[str, str] = {}  # headers the pipeline adds as they are (rate limits)

    @functools.cached_property
    def META(self) -> dict[str, Any]:
        scope = self.scope
        meta: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "PATH_INFO": self.path,
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        }
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            key = name if name == "CONTENT_LENGTH" or name == "CONTENT_TYPE" else "HTTP_" + name
            value = raw_value.decode("latin-1")
            meta[key] = f"{meta[key]},{value}" if key in meta else value
        return meta

    @functools.cached_property
    def headers(self) -> HttpHeaders:
        return HttpHeaders(self.META)

    @functools.cached_property
    def GET(self) -> QueryDict:
        return QueryDict(self.META["QUERY_STRING"])


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _render(error: ProxyError, path: str) -> HttpResponseBase:
    """An error in the shape the caller's SDK expects: Anthropic's under /v1/messages, else OpenAI's."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return anthropic_error(error, new_request_id())
    return error.response(new_request_id())


def _route(method: str, path: str) -> tuple[View, dict[str, str]] | ProxyError:
    view = ROUTES.get((method, path))
    if view is not None:
        return view, {}
    for (wanted, prefix), (view, argument) in PREFIXED.items():
        if wanted == method and path.startswith(prefix) and len(path) > len(prefix):
            return view, {argument: unquote(path[len(prefix) :])}
    allowed = sorted({m for m, p in ROUTES if p == path} | {m for m, p in PREFIXED if path.startswith(p) and p != path})
    if allowed:
        allow = ", ".join(allowed)
        return MethodNotAllowed(f"{method} is not allowed on {path}; use {allow}.", headers={"Allow": allow})
    return NotFound(f"Unknown endpoint {method} {path}.", code="unknown_url")


def _scrubbed(response: HttpResponseBase, presented: str | None) -> HttpResponseBase:
    """The response with every known secret replaced in its body and in the one header an upstream
    chooses (`retry-after`). Streams scrub their own writes (gateway/proxy/pipeline.py), where
    secrets split across chunks are caught too."""
    secrets = scrub.current().plus(presented)
    if not secrets:
        return response
    if (value := response.get("retry-after")) is not None and (clean := secrets.text(value)) != value:
        response["retry-after"] = clean
    if isinstance(response, HttpResponse) and (body := response.content) != (clean_body := secrets.bytes(body)):
        response.content = clean_body
    return response


def _valid_key(request: ProxyRequest) -> str | None:
    """The virtual key the request presented, once it proved valid (a sprayed guess is not a secret)."""
    exchange = request.exchange
    return presented_key(request) if exchange is not None and exchange.key is not None else None  # type: ignore[arg-type]


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    limit = settings.PROXY_MAX_BODY_BYTES
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        if body := message.get("body"):
            size += len(body)
            if size > limit:
                raise _BodyTooLarge()
            parts.append(body)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _head(response: HttpResponseBase, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The response's status and headers, and `extra` headers it does not set itself."""
    headers = []
    names = set()
    for name, value in response.items():
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
        names.add(name.lower())
    if extra:
        headers += [(name.encode(), value.encode()) for name, value in extra.items() if name.lower() not in names]
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


async def _send_response(
    response: HttpResponseBase,
    send: Callable[[dict[str, Any]], Awaitable[None]],
    watch: _Watch | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """The response, straight to ASGI: its head, then its body (a stream's pieces as they come).
    Django's response.close() is not called: it would fire request_finished, whose receivers are
    synchronous (the proxy holds no database connection on this thread to close)."""
    await send(_head(response, extra))
    if not isinstance(response, StreamingHttpResponse):
        if watch is not None:
            watch.ending = True
        await send({"type": "http.response.body", "body": response.content, "more_body": False})
        return
    pieces = response._iterator  # our relay (an async generator of bytes): closed here, whatever happens
    try:
        async for piece in pieces:
            if type(piece) is LastPiece:
                if watch is not None:
                    watch.ending = True
                await send({"type": "http.response.body", "body": bytes(piece), "more_body": False})
                return
            if piece:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        if watch is not None:
            watch.ending = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await pieces.aclose()


class ProxyHandler:
    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        with logbuffer.serving():  # a shutdown's last flush waits for this request's row
            await self._handle(scope, receive, send)

    async def _handle(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        path = scope["path"]
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        except _BodyTooLarge:
            error = PayloadTooLarge(
                f"The request body is larger than this gateway accepts ({settings.PROXY_MAX_BODY_BYTES} bytes)."
            )
            await _send_response(_render(error, path), send)
            return
        routed = _route(scope["method"], path)
        if isinstance(routed, ProxyError):
            await _send_response(_render(routed, path), send)
            return
        view, arguments = routed
        auth_throttle.current_scope.set(scope)  # whom failed authentications count against
        request = ProxyRequest(scope, body)
        current = asyncio.current_task()
        assert current is not None
        watch = _Watch(receive, current)
        try:
            response = await view(request, **arguments)
            if not isinstance(response, StreamingHttpResponse):
                response = _scrubbed(response, _valid_key(request))
            await _send_response(response, send, watch, request.extra_headers)
        except asyncio.CancelledError:
            if not watch.left:
                raise  # the server is stopping: not ours to swallow
            current.uncancel()  # the client went away; the request has recorded itself (499)
        except Exception as exc:
            logger.error("unexpected %s while serving %s", type(exc).__name__, path)
            if not watch.left:
                with contextlib.suppress(Exception):
                    await _send_response(_render(InternalError("The gateway failed unexpectedly."), path), send)
        finally:
            watch.stop()


class _Watch:
    """One task per request that waits for its client to disconnect and then cancels the request's
    task (the body is read already, so the only message left to receive is the disconnect). Once
    the response's last piece is being sent (`ending`), a disconnect is the end of the exchange,
    not a client that left."""

    __slots__ = ("ending", "left", "request", "task")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]], request: asyncio.Task[Any]) -> None:
        self.request: asyncio.Task[Any] | None = request
        self.left = False
        self.ending = False
        self.task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._run(receive))

    async def _run(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.ending and self.request is not None:
            self.left = True
            self.request.cancel()

    def stop(self) -> None:
        """Cancel the watching task and let go of both tasks. The cancelled task keeps its
        CancelledError, whose traceback holds `_run`'s frame and so this object: were the tasks
        still referenced from here, every request would leave a reference cycle (the two tasks,
        uvicorn's request cycle and its transport, ~30 objects) for the oldest GC generation, and
        a thousand streams would grow the worker by megabytes until a full collection."""
        if self.task is not None:
            self.task.cancel()
        self.task = self.request = None
