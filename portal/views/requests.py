"""Placeholder: this area of the portal is being built (replaced by its real views)."""

from django.http import Http404, HttpRequest, HttpResponse


def request_list(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def new_access_request(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def new_credit_request(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def detail(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def cancel(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


def decide(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")
