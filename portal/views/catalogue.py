"""The model catalogue: the approved models, their providers, context windows, prices and health,
and which of my projects may use each."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from gateway import selectors
from portal.views.common import portal_view, render_page


@portal_view
@require_GET
def models(request: HttpRequest) -> HttpResponse:
    entries = selectors.approved_catalogue(user=request.user)
    return render_page(request, "portal/models.html", {"entries": entries, "currency": settings.BILLING_CURRENCY})
