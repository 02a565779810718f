"""Placeholder: this area of the portal is being built (replaced by its real views)."""

from django.http import Http404, HttpRequest, HttpResponse


def unit_list(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def report(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def report_csv(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")
