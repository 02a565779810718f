"""Placeholder: this area of the portal is being built (replaced by its real views)."""

from django.http import Http404, HttpRequest, HttpResponse


def overview(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def usage(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def members(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def ledger(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")
