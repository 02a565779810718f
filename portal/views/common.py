"""What every portal view shares: 404 for what the user may not see, and partial rendering."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from gateway.selectors import NotVisible


def portal_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed-in users only (others go to the sign-in page, which returns here); an object the
    user may not see is a 404, the same answer as one that does not exist."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotVisible as error:
            raise Http404(str(error)) from None

    return login_required(wrapper)


def render_page(
    request: HttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None, status: int = 200
) -> HttpResponse:
    """The whole page, or only `partial` (an inline partial named after the element it replaces)
    when htmx asks for it."""
    name = f"{template}#{partial}" if partial and getattr(request, "htmx", False) else template
    return render(request, name, context, status=status)
