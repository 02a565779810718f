"""Security headers on every page the full middleware stack serves (the portal, the admin, the
management API): a Content-Security-Policy without inline script, and the headers browsers use to
refuse framing, sniffing and leaking the address. /v1 never passes through here (gateway/asgi.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse


@functools.lru_cache(maxsize=8)
def content_security_policy(issuer: str = "", report_uri: str = "") -> str:
    """`form-action` lists the identity provider (ISSUER's origin): browsers apply it to the
    redirect that follows a form post (signing in goes to its authorization endpoint, signing out
    to its end_session_endpoint; both are on the issuer's origin at the providers we know)."""
    form_targets = ["'self'"]
    if issuer:
        parts = urlsplit(issuer)
        form_targets.append(f"{parts.scheme}://{parts.netloc}")
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action " + " ".join(form_targets),
    ]
    if report_uri:
        directives.append(f"report-uri {report_uri}")
    return "; ".join(directives)


class SecurityHeaders:
    """Adds the headers to each response that has not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        header = "Content-Security-Policy-Report-Only" if settings.CSP_REPORT_ONLY else "Content-Security-Policy"
        response.headers.setdefault(header, content_security_policy(settings.OIDC_ISSUER, settings.CSP_REPORT_URI))
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response
