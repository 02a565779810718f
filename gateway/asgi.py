"""ASGI entry point: `gateway.asgi:application`.

A small dispatcher sends /v1 (the hot path) to a lean handler with no middleware and everything
else (portal, admin, management API, probes) to Django's full stack. It also runs the lifespan
protocol so the upstream connection pool is closed cleanly on shutdown.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
django.setup(set_prefix=False)

from asgiref.sync import sync_to_async  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from gateway import dbstate, telemetry  # noqa: E402
from gateway.proxy import catalog, http, logbuffer, ratelimit  # noqa: E402
from gateway.proxy.handler import ProxyHandler  # noqa: E402

# Before Django's handler loads its middleware: the Django instrumentation adds one (not to /v1).
telemetry.configure_from_settings()
django_application = ASGIHandler()
proxy_application = ProxyHandler()


async def _lifespan(receive, send) -> None:  # type: ignore[no-untyped-def]
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await logbuffer.shutdown()  # before anything else: no request's row is lost
            await catalog.shutdown()
            await dbstate.shutdown()
            await ratelimit.close()
            await http.close()
            await sync_to_async(telemetry.shutdown, thread_sensitive=False)()  # export what is left
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "http":
        path = scope["path"]
        if path.startswith("/v1/") or path == "/v1":
            await proxy_application(scope, receive, send)
        else:
            await django_application(scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        raise ValueError(f"Unsupported ASGI scope type {scope['type']!r}")
