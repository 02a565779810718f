"""Reading the audit log: filtered lists, keyset pages (newest first) and CSV rows."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db.models import Q, QuerySet

from gateway.audit.events import changes
from gateway.errors import ValidationFailed
from gateway.models import AuditEvent

PAGE_MAX = 500
MAX_ID = 2**63 - 1  # a bigint: a larger cursor is no page's
MAX_FILTER = 200


@dataclass(frozen=True)
class Filters:
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    actor: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _text(value: str | None, *, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_FILTER or "\x00" in value:
        raise ValidationFailed(f"{field} must be at most {MAX_FILTER} characters, without NUL.", field=field)
    return value.strip()


def audit_events(filters: Filters = Filters()) -> QuerySet[AuditEvent]:
    """Events newest first. `action` is exact, or a prefix when it ends in "." (`key.`); `actor`
    is an actor's id, type (`admin_token`, `rule`, ...) or part of its label; `since` is included,
    `until` excluded. Invalid input raises ValidationFailed naming the field."""
    events = AuditEvent.objects.order_by("-id")
    if action := _text(filters.action, field="action"):
        events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
    if object_type := _text(filters.object_type, field="object_type"):
        events = events.filter(object_type=object_type)
    if object_id := _text(filters.object_id, field="object_id"):
        events = events.filter(object_id=object_id)
    if actor := _text(filters.actor, field="actor"):
        events = events.filter(Q(actor_id=actor) | Q(actor_type=actor) | Q(actor_label__icontains=actor))
    if source := _text(filters.source, field="source"):
        events = events.filter(source=source)
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise ValidationFailed("until must be after since.", field="until")
    if filters.since is not None:
        events = events.filter(created_at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(created_at__lt=filters.until)
    return events


@dataclass(frozen=True)
class Page:
    rows: list[AuditEvent]
    next_cursor: str | None


def audit_event_page(filters: Filters = Filters(), *, cursor: str | None = None, limit: int = 50) -> Page:
    """One keyset page, newest first: `cursor` is the previous page's `next_cursor` (the last id
    it showed), so a page costs the same however deep it is."""
    if not 1 <= limit <= PAGE_MAX:
        raise ValidationFailed(f"limit must be between 1 and {PAGE_MAX}.", field="limit")
    events = audit_events(filters)
    if cursor:
        if not (cursor.isascii() and cursor.isdigit()) or int(cursor[:20]) > MAX_ID:
            raise ValidationFailed("cursor must be a page's X-Next-Cursor, unchanged.", field="cursor")
        events = events.filter(id__lt=int(cursor))
    found = list(events[: limit + 1])
    page = found[:limit]
    return Page(rows=page, next_cursor=str(page[-1].id) if len(found) > limit else None)


CSV_COLUMNS = (
    "id",
    "created_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "object_label",
    "source",
    "request_id",
    "changes",
    "before",
    "after",
    "prev_hash",
    "hash",
)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    """A spreadsheet must not run a cell as a formula (=, +, -, @ first): such text gets a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _json(value: Any) -> str:
    return "" if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The events as CSV lines, header first, one at a time (for a streaming response)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events:
        row = [
            event.id,
            event.created_at.isoformat(timespec="microseconds"),
            event.actor_type,
            event.actor_id,
            event.actor_label,
            event.action,
            event.object_type,
            event.object_id,
            event.object_label,
            event.source,
            event.request_id,
            _json(changes(event)),
            _json(event.before),
            _json(event.after),
            event.prev_hash,
            event.hash,
        ]
        yield writer.writerow([_cell(value) for value in row])


def iterate(events: QuerySet[AuditEvent]) -> Iterator[AuditEvent]:
    """All of EVENTS without holding them in memory (a server-side cursor on Postgres)."""
    return events.iterator(chunk_size=1000)
