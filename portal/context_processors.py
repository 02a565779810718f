"""What every portal page's shell needs: the public URL, the section for the navigation, and the
counts beside its links (two small queries, only for signed-in users)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from approvals import selectors as approvals_selectors
from gateway import selectors

SECTIONS = {
    "dashboard": "dashboard",
    "project": "dashboard",
    "logs": "logs",
    "log": "logs",
    "models": "models",
    "requests": "requests",
    "request": "requests",
    "units": "units",
    "unit": "units",
}


def portal(request: HttpRequest) -> dict[str, Any]:
    match = request.resolver_match
    name = (match.url_name or "") if match else ""
    context: dict[str, Any] = {
        "public_url": settings.PUBLIC_URL,
        "nav_section": SECTIONS.get(name.split("-")[0], ""),
    }
    user = getattr(request, "user", None)
    if match and match.namespace == "portal" and user is not None and user.is_authenticated:
        context["nav"] = {
            "manages_units": selectors.managed_business_units(user=user).exists(),
            "pending_decisions": approvals_selectors.pending_decision_count(user=user),
        }
    return context
