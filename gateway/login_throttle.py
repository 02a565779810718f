"""Failed sign-ins on the portal's and the Django admin's login pages, limited per client address.

After AUTH_FAILURE_LIMIT failed POSTs from one address within AUTH_FAILURE_WINDOW seconds, the
login page answers 429 with Retry-After to that address's POSTs until the window ends (looking at
the page still works). The count lives in Django's cache: Redis in production (shared by every
instance; keys namespaced by the installation, gateway/installation.py), in process in the
embedded profile. The address is the peer's, or the X-Forwarded-For entry TRUSTED_PROXY_COUNT
proxies vouch for (gateway/netpolicy.py). A sign-in that succeeds writes nothing.

Behind this, allauth keeps its own limits on the portal's sign-in: ACCOUNT_RATE_LIMITS
["login_failed"] in settings (the same count per address, and 5 failures in 5 minutes per
username, from any address), with the same address (gateway.sso.AccountAdapter.get_client_ip).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from gateway import netpolicy

View = Callable[[HttpRequest], HttpResponse]


def request_address(request: HttpRequest) -> str:
    """The client address failed sign-ins count against."""
    return netpolicy.client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def _key(address: str) -> str:
    return f"login-failures:{address}"


def _blocked_for(address: str) -> float:
    """Seconds until `address` may try again (0 when it may now)."""
    found = cache.get_many([_key(address), _key(address) + ":ends"])
    failures, ends = found.get(_key(address), 0), found.get(_key(address) + ":ends", 0.0)
    left = ends - time.time()
    return left if failures >= settings.AUTH_FAILURE_LIMIT and left > 0 else 0.0


def _count_failure(address: str) -> None:
    """One more failure in the address's window (atomic: INCR on Redis, a lock in process)."""
    key, window = _key(address), settings.AUTH_FAILURE_WINDOW
    if cache.add(key + ":ends", time.time() + window, timeout=window):
        cache.add(key, 0, timeout=window)  # a new window
    try:
        cache.incr(key)
    except ValueError:  # the window closed between the two calls
        cache.add(key, 1, timeout=window)


def throttle_failed_logins(view: View) -> View:
    """Wrap a login view: refuse a POST from an address over the limit; count a POST that did not sign in."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return view(request)
        address = request_address(request)
        if (left := _blocked_for(address)) > 0:
            retry = max(1, math.ceil(left))
            response = HttpResponse(
                f"Too many failed sign-ins from your address: at most {settings.AUTH_FAILURE_LIMIT} "
                f"in {settings.AUTH_FAILURE_WINDOW} s. Try again in {retry} s.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(retry)
            return response
        response = view(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            _count_failure(address)
        return response

    return wrapped
