"""A lean Django ASGI handler for /v1.

Django's ASGIHandler runs every request through the full middleware stack and sends the
request_started/request_finished signals, whose receivers are synchronous: each costs a thread
hop. The proxy needs none of that (it authenticates with virtual keys, holds no session and
never touches the ORM on the request thread), so this handler:

- resolves against gateway.proxy.urls only, with no middleware;
- skips the signals (the cache loaders close their own connections);
- refuses a body over PROXY_MAX_BODY_BYTES while reading it, with an OpenAI error (413);
- answers a wrong method with the caller's error object (405), not Django's plain text;
- scrubs every response body of the secrets the gateway knows (gateway/scrub.py: provider keys
  an upstream echoed, the request's own key; streams scrub their own writes);
- keeps Django's disconnect handling: a client that goes away cancels the view or stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import Resolver404, ResolverMatch, get_resolver

from gateway import scrub
from gateway.proxy import logbuffer
from gateway.proxy.dialects.anthropic_messages import error_response as anthropic_error
from gateway.proxy.errors import InternalError, MethodNotAllowed, NotFound, PayloadTooLarge, ProxyError
from gateway.proxy.request import new_request_id, presented_key

logger = logging.getLogger("gateway.proxy")


class _BodyTooLarge(Exception):
    pass


def _render(error: ProxyError, path: str) -> HttpResponseBase:
    """An error in the shape the caller's SDK expects: Anthropic's under /v1/messages, else OpenAI's."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return anthropic_error(error, new_request_id())
    return error.response(new_request_id())


def _valid_key(request: HttpRequest) -> str | None:
    """The virtual key the request presented, once it proved valid (a sprayed guess is not a secret)."""
    exchange = getattr(request, "exchange", None)
    return presented_key(request) if exchange is not None and exchange.key is not None else None


def _scrubbed(response: HttpResponseBase, presented: str | None) -> HttpResponseBase:
    """The response with every known secret replaced in its body and in the one header an upstream
    chooses (`retry-after`). Streams scrub their own writes (gateway/proxy/pipeline.py),
    where secrets split across chunks are caught too."""
    secrets = scrub.current().plus(presented)
    if not secrets:
        return response
    if (value := response.get("retry-after")) is not None and (clean := secrets.text(value)) != value:
        response["retry-after"] = clean
    if isinstance(response, HttpResponse) and (body := response.content) != (clean_body := secrets.bytes(body)):
        response.content = clean_body
    return response


@functools.lru_cache(maxsize=1024)
def _resolve(path: str) -> ResolverMatch | None:
    try:
        return get_resolver(settings.PROXY_URLCONF).resolve(path)
    except Resolver404:
        return None


class ProxyHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._respond)

    async def _respond(self, request):  # type: ignore[no-untyped-def]
        """Resolve (cached per path) and call the view. The /v1 views are async and return
        responses themselves, so Django's view-middleware and template-response steps are skipped."""
        request.urlconf = settings.PROXY_URLCONF
        match = _resolve(request.path_info)
        if match is None:
            error = NotFound(f"Unknown endpoint {request.method} {request.path}.", code="unknown_url")
            return _render(error, request.path)
        request.resolver_match = match
        response = await match.func(request, *match.args, **match.kwargs)
        if response.status_code == 405 and not response.has_header("x-request-id"):  # ninja's wrong-method answer
            allowed = response.get("Allow", "")
            error = MethodNotAllowed(
                f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}.",
                headers={"Allow": allowed} if allowed else None,
            )
            return _render(error, request.path)
        return response

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        await self.handle(scope, receive, send)

    async def read_body(self, receive):  # type: ignore[no-untyped-def]
        limit = settings.PROXY_MAX_BODY_BYTES
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")  # noqa: SIM115 - handed to the request
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            if "body" in message:
                size += len(message["body"])
                if size > limit:
                    body_file.close()
                    raise _BodyTooLarge()
                body_file.write(message["body"])
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    async def handle(self, scope, receive, send):  # type: ignore[no-untyped-def]
        with logbuffer.serving():  # a shutdown's last flush waits for this request's row
            await self._handle(scope, receive, send)

    async def _handle(self, scope, receive, send):  # type: ignore[no-untyped-def]
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        except _BodyTooLarge:
            error = PayloadTooLarge(
                f"The request body is larger than this gateway accepts ({settings.PROXY_MAX_BODY_BYTES} bytes)."
            )
            await self.send_response(_render(error, scope["path"]), send)
            return
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request() -> None:
            response = _scrubbed(await self._middleware_chain(request), _valid_key(request))
            with contextlib.suppress(asyncio.CancelledError):  # client went away while we were sending
                await self.send_response(response, send)

        watcher = asyncio.create_task(self.listen_for_disconnect(receive))
        worker = asyncio.create_task(process_request())
        try:
            await asyncio.wait([watcher, worker], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, worker):
                if not task.done():
                    task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, RequestAborted):
                    pass
                except Exception as exc:
                    logger.error("unexpected %s while serving %s", type(exc).__name__, scope.get("path"))
                    if task is worker and not watcher.done():
                        error = InternalError("The gateway failed unexpectedly.")
                        await self.send_response(_render(error, scope["path"]), send)
            body_file.close()
