"""The framework's ceiling: Django + django-ninja forwarding /v1/chat/completions with no features.

One async ninja operation posts the body to the mock upstream through one shared
aiohttp.ClientSession (pooled like gateway/proxy/http.py) and returns the upstream's bytes, or
relays its SSE chunk by chunk when the request asks for `stream: true`. No auth, no parsing
beyond reading `stream`, no middleware, no database.

Served like the gateway:
`DJANGO_SETTINGS_MODULE=tests.bench.forwarder_settings gunicorn tests.bench.forwarder:application
-k uvicorn.workers.UvicornWorker --workers 1`.

Django's stock ASGIHandler costs two thread hops per request: the request_started signal's
receivers and `response.close()` (which sends request_finished) run through sync_to_async. They
close DB connections and caches, and this app has neither. The default handler here ("lean")
therefore skips the signals and closes the response inline, as the gateway's lean /v1 handler
does (gateway/proxy/handler.py), so the two differ only by what the gateway does per request.
BENCH_FORWARDER_HANDLER=stock serves with Django's handler as is (target `forwarder-stock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import django
import orjson
from django.conf import settings
from django.core import signals
from django.core.asgi import get_asgi_application
from django.core.cache import close_caches
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, reset_queries
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from ninja import NinjaAPI

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.forwarder_settings")


class LeanASGIHandler(ASGIHandler):
    """Django's ASGIHandler without its per-request thread hops (signals, sync `response.close()`)."""

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            raise ValueError(f"Unsupported ASGI scope type {scope['type']!r}")  # lifespan: uvicorn carries on
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict, receive: Receive, send: Send) -> None:  # type: ignore[override]
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request() -> None:
            response = await self.get_response_async(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away while we sent
                await self.send_response(response, send)
            response.close()  # no DB, no cache: nothing for request_finished's receivers to do

        watcher = asyncio.create_task(self.listen_for_disconnect(receive))
        worker = asyncio.create_task(process_request())
        try:
            await asyncio.wait([watcher, worker], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, worker):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
            body_file.close()


if settings.BENCH_HANDLER == "stock":
    application = get_asgi_application()
else:
    django.setup(set_prefix=False)
    signals.request_started.disconnect(reset_queries)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_caches)
    signals.request_finished.disconnect(reset_urlconf)
    application = LeanASGIHandler()

_UPSTREAM = settings.BENCH_UPSTREAM.rstrip("/") + "/chat/completions"
_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
_session: aiohttp.ClientSession | None = None


def _client() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        connector = aiohttp.TCPConnector(
            limit=1000, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30, enable_cleanup_closed=True
        )
        _session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=600, sock_connect=5),
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )
    return _session


api = NinjaAPI(title="bench forwarder", urls_namespace="bench", docs_url=None, openapi_url=None)


@api.post("/chat/completions")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    body = request.body
    stream = orjson.loads(body).get("stream") is True
    upstream = await _client().post(_UPSTREAM, data=body, headers=_HEADERS, allow_redirects=False)
    if not stream:
        async with upstream:
            payload = await upstream.read()
        return HttpResponse(payload, status=upstream.status, content_type="application/json")
    return StreamingHttpResponse(_relay(upstream), status=upstream.status, content_type="text/event-stream")


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()


urlpatterns = [path("v1/", api.urls)]
