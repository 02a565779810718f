"""Opens an audit context for every request of the full Django stack (portal, admin, management
API, decision links; `/v1` has its own lean handler and makes no administrative change).

The source follows from the path; the actor is the signed-in user, read only when an event is
written (the management API's authentication names its bearer instead). The request id is the
client's `X-Request-ID` when it is a plain token of at most 64 characters, else a new one, and is
sent back in the `X-Request-ID` response header, so an event can be matched with its request."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from gateway.audit.context import AuditContext, Source, opened

REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SOURCES = (("/api/", Source.API), ("/admin/", Source.ADMIN), ("/approvals/", Source.EMAIL_LINK))


def source_of(path: str) -> str:
    return next((source for prefix, source in _SOURCES if path.startswith(prefix)), Source.PORTAL)


def request_id_of(request: HttpRequest) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _ACCEPTED_ID.match(offered) else uuid.uuid4().hex


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = AuditContext(
            source=source_of(request.path),
            user=lambda: getattr(request, "user", None),
            request_id=request_id_of(request),
        )
        with opened(context):
            response = self.get_response(request)
        response.headers.setdefault(REQUEST_ID_HEADER, context.request_id)
        return response
