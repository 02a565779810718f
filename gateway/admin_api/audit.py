"""/api/v1/audit-events: the audit log, newest first, in keyset pages; and the same as CSV.

Read-only (there is no way to write, change or delete an event through the API). The next page's
cursor comes in the `X-Next-Cursor` header and a `Link: <...>; rel="next"` header, as for the
request logs; the last page has neither. `/api/v1/audit-events.csv` (or `?format=csv`) streams
every event the filters select, newest first as the list, with no pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from gateway.admin_api.schemas import ErrorOut
from gateway.audit import changes
from gateway.audit import selectors as audit_selectors
from gateway.errors import ValidationFailed
from gateway.models import AuditEvent

router = Router(tags=["audit log"])


class AuditQuery(Schema):
    action: str | None = Field(None, description='An action (`key.revoke`), or a prefix ending in "." (`key.`).')
    object_type: str | None = Field(None, description="Only events about this kind of object (`virtual_key`, ...).")
    object_id: str | None = Field(None, description="Only events about the object with this id (with object_type).")
    actor: str | None = Field(
        None, description="An actor's id, its type (`admin_token`, `rule`, ...) or part of its label."
    )
    source: str | None = Field(None, description="admin, portal, api, email_link, rule, cli or system.")
    since: str | None = Field(None, description="ISO 8601 date-time, included (UTC when no offset is given).")
    until: str | None = Field(None, description="ISO 8601 date-time, excluded (UTC when no offset is given).")
    limit: int = Field(50, description=f"Events per page, 1 to {audit_selectors.PAGE_MAX}.")
    cursor: str | None = Field(None, description="The previous page's X-Next-Cursor; absent for the first page.")
    format: str | None = Field(None, description='"csv" streams every selected event as CSV (no pages).')


class ActorOut(Schema):
    type: str = Field(description="user, admin_token, oidc (an identity-provider bearer), rule or system.")
    id: str = Field(description="The user's (or the rule's) id; empty for the system.")
    label: str = Field(description="A name to show: username, token prefix and user, rule name, command.")


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    actor: ActorOut
    action: str = Field(description="What was done, `<object>.<verb>`: key.create, budget.update, ...")
    object_type: str
    object_id: str
    object_label: str
    source: str
    request_id: str = Field(description="The X-Request-ID of the request that made the change; empty outside one.")
    changes: dict[str, Any] = Field(description='{field: {"before": ..., "after": ...}} for each field that changed.')
    before: dict[str, Any] | None = Field(description="The object before (null: created). Secrets show as [set].")
    after: dict[str, Any] | None = Field(description="The object after (null: deleted). Secrets show as [set].")
    prev_hash: str
    hash: str = Field(description="SHA-256 over prev_hash and this event's content (manage.py verify_audit).")

    @staticmethod
    def resolve_actor(event: AuditEvent) -> dict[str, str]:
        return {"type": event.actor_type, "id": event.actor_id, "label": event.actor_label}

    @staticmethod
    def resolve_changes(event: AuditEvent) -> dict[str, Any]:
        return changes(event)


def _filters(query: AuditQuery) -> audit_selectors.Filters:
    return audit_selectors.Filters(
        action=query.action,
        object_type=query.object_type,
        object_id=query.object_id,
        actor=query.actor,
        source=query.source,
        since=_datetime(query.since, field="since"),
        until=_datetime(query.until, field="until"),
    )


@router.get(
    "/audit-events",
    response={200: list[AuditEventOut], 400: ErrorOut},
    openapi_extra={"responses": {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}},  # format=csv
)
def list_audit_events(request: HttpRequest, response: HttpResponse, filters: Query[AuditQuery]) -> Any:
    """Newest first. Follow `X-Next-Cursor` (or the `Link` header) for the next page; `format=csv`
    answers CSV instead, as /audit-events.csv does."""
    if filters.format is not None and filters.format != "json":
        if filters.format != "csv":
            raise ValidationFailed('format must be "csv" or "json".', field="format")
        return _csv(filters)
    page = audit_selectors.audit_event_page(_filters(filters), cursor=filters.cursor, limit=filters.limit)
    if page.next_cursor:
        following = request.GET.copy()
        following["cursor"] = page.next_cursor
        response["X-Next-Cursor"] = page.next_cursor
        response["Link"] = f'<{request.build_absolute_uri(f"{request.path}?{following.urlencode()}")}>; rel="next"'
    return page.rows


@router.get(
    "/audit-events.csv",
    response={200: None, 400: ErrorOut},
    openapi_extra={
        "responses": {
            200: {"description": "CSV, header first", "content": {"text/csv": {"schema": {"type": "string"}}}}
        }
    },
)
def export_audit_events(request: HttpRequest, filters: Query[AuditQuery]) -> StreamingHttpResponse:
    """Every event the filters select, newest first, as CSV (streamed; `limit` and `cursor` are ignored)."""
    return _csv(filters)


def _csv(query: AuditQuery) -> StreamingHttpResponse:
    events = audit_selectors.audit_events(_filters(query))  # validated before the first byte is sent
    response = StreamingHttpResponse(
        audit_selectors.csv_lines(audit_selectors.iterate(events)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
    response["Cache-Control"] = "no-store"
    return response


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
    try:  # year 1 at +14:00 is before the first representable instant
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(f"{field} is out of range.", field=field) from None
