"""Health probes (and the metrics scrape) answered before the host check.

Kubernetes (and most load balancers) probe a pod by its IP, so the Host header is `10.1.2.3:8000`,
which ALLOWED_HOSTS rightly does not list: CommonMiddleware would answer 400 and the pod would
never become ready. Prometheus scrapes each pod by its IP too. This middleware sits first in the
stack and answers `/healthz`, `/readyz` and `/metrics` (token-protected) itself. None of these views
reads the host or builds a URL, so no host-header attack reaches anything through them; every
other path still goes through the host check.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from gateway import health
from gateway.telemetry import views as telemetry_views

PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": health.healthz,
    "/readyz": health.readyz,
    "/metrics": telemetry_views.metrics,
}


class HealthProbes:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (probe := PROBES.get(request.path_info)) is not None:
            return probe(request)
        return self.get_response(request)
