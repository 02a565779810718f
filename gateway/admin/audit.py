"""The audit log in the admin: a read-only list with filters, each event's page, and a CSV export
of the selected events (or of everything the filters show, from the export link)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.html import format_html

from gateway.audit import changes
from gateway.audit import selectors as audit_selectors
from gateway.models import AuditEvent


class _ActionFilter(admin.SimpleListFilter):
    """The actions recorded so far, grouped by object (`key.`, `budget.`, ...) and one by one."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        actions = sorted(AuditEvent.objects.order_by().values_list("action", flat=True).distinct()[:500])
        return [(action, action) for action in actions]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(action=self.value()) if self.value() else queryset


class _ObjectTypeFilter(admin.SimpleListFilter):
    title = "object type"
    parameter_name = "object_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        types = sorted(AuditEvent.objects.order_by().values_list("object_type", flat=True).distinct()[:200])
        return [(name, name) for name in types]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(object_type=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_label", "actor_type", "action", "object_type", "object_label", "source")
    list_filter = ("actor_type", _ActionFilter, _ObjectTypeFilter, "source", "created_at")
    search_fields = ("actor_label", "actor_id", "object_label", "object_id", "request_id", "action")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    actions = ("export_csv",)
    fields = (
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
        "change_table",
        "before_json",
        "after_json",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    @admin.display(description="changes")
    def change_table(self, event: AuditEvent) -> str:
        rows = changes(event)
        if not rows:
            return "—"
        return format_html(
            "<table><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead><tbody>{}</tbody></table>",
            format_html(
                "".join(["<tr><td>{}</td><td>{}</td><td>{}</td></tr>"] * len(rows)),
                *[
                    part
                    for name, change in rows.items()
                    for part in (name, _short(change["before"]), _short(change["after"]))
                ],
            ),
        )

    @admin.display(description="before")
    def before_json(self, event: AuditEvent) -> str:
        return _pre(event.before)

    @admin.display(description="after")
    def after_json(self, event: AuditEvent) -> str:
        return _pre(event.after)

    @admin.action(description="Export selected events as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> StreamingHttpResponse:
        events = audit_selectors.iterate(queryset.order_by("-id"))
        response = StreamingHttpResponse(audit_selectors.csv_lines(events), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        response["Cache-Control"] = "no-store"
        return response


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"


def _pre(value: Any) -> str:
    if value is None:
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
