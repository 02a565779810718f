"""GET /metrics: the gateway's metrics in Prometheus' text format, for teams without a collector.

Only when METRICS_TOKEN is set (404 otherwise), and only with `Authorization: Bearer <token>`
(401 otherwise). Each process serves its own metrics: scrape every process (or use OTLP).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gateway import telemetry


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("No metrics endpoint: METRICS_TOKEN is not set.")
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(presented.encode(), token.encode()):
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = telemetry.prometheus_registry()
    body = generate_latest(registry) if registry is not None else b""
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
