"""Placeholder: this area of the portal is being built (replaced by its real views)."""

from django.http import Http404, HttpRequest, HttpResponse


def key_list(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def create(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def revoke(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def rotate(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")
