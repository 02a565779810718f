"""/api/v1/request-logs: one row per proxied call, newest first, in keyset pages.

The next page's cursor comes in the `X-Next-Cursor` header and a `Link: <...>; rel="next"` header;
the last page has neither. A row's stored bodies are only in the single-row answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from gateway import selectors
from gateway.admin_api.schemas import ErrorOut, RequestLogDetailOut, RequestLogOut
from gateway.errors import ValidationFailed
from gateway.models import RequestLog

router = Router(tags=["request logs"])


class RequestLogQuery(Schema):
    project: int | None = Field(None, description="Only this project's requests (its id).")
    key: int | None = Field(None, description="Only this virtual key's requests (its id).")
    model: str | None = Field(None, description="Only requests for this public model name.")
    status: str | None = Field(None, description='A status code, "ok" (below 400) or "error" (400 and above).')
    start: str | None = Field(None, description="ISO 8601 date-time, included (UTC when no offset is given).")
    end: str | None = Field(None, description="ISO 8601 date-time, excluded (UTC when no offset is given).")
    q: str | None = Field(None, description="Words to find in the stored request and response bodies.")
    limit: int = Field(50, description=f"Rows per page, 1 to {selectors.REQUEST_LOG_PAGE_MAX}.")
    cursor: str | None = Field(None, description="The previous page's X-Next-Cursor; absent for the first page.")


@router.get("", response={200: list[RequestLogOut], 400: ErrorOut})
def list_request_logs(
    request: HttpRequest, response: HttpResponse, filters: Query[RequestLogQuery]
) -> list[RequestLog]:
    """Newest first, without bodies. Follow `X-Next-Cursor` (or the `Link` header) for the next page."""
    page = selectors.request_log_page(
        project_id=filters.project,
        key_id=filters.key,
        model=filters.model,
        status=filters.status,
        start=_datetime(filters.start, field="start"),
        end=_datetime(filters.end, field="end"),
        text=filters.q,
        cursor=filters.cursor,
        limit=filters.limit,
    )
    if page.next_cursor:
        following = request.GET.copy()
        following["cursor"] = page.next_cursor
        response["X-Next-Cursor"] = page.next_cursor
        response["Link"] = f'<{request.build_absolute_uri(f"{request.path}?{following.urlencode()}")}>; rel="next"'
    return page.rows


@router.get("/{request_id}", response={200: RequestLogDetailOut, 404: ErrorOut})
def get_request_log(request: HttpRequest, request_id: str) -> RequestLog:
    """One row with the bodies its project's policy kept (full, redacted, or none for metadata)."""
    if (row := selectors.request_log(request_id=request_id)) is None:
        raise HttpError(404, f"Request log {request_id} not found.")
    return row


def _datetime(value: str | None, *, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{field} must be an ISO 8601 date-time such as 2026-11-30T12:00:00Z "
            "(in a URL, write + in an offset as %2B).",
            field=field,
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
