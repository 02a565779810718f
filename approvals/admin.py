"""Read-only lists of requests and their events. Decisions go through the services (portal,
email link, management API), never through an edit form, so every change has its event."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from approvals.models import AccessRequest, CreditRequest, RequestEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(admin.TabularInline):
    model = RequestEvent
    extra = 0
    can_delete = False
    fields = ("at", "from_state", "to_state", "actor", "via", "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AccessEventInline(EventInline):
    fk_name = "access_request"


class CreditEventInline(EventInline):
    fk_name = "credit_request"


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "requester",
        "project",
        "business_unit",
        "new_project_name",
        "model",
        "state",
        "created_at",
        "decided_by",
        "decided_via",
    )
    list_filter = ("state", "kind", "decided_via")
    search_fields = ("requester__username", "project__name", "new_project_name", "reason")
    list_select_related = ("requester", "project", "business_unit", "model", "decided_by")
    date_hierarchy = "created_at"
    inlines = [AccessEventInline]


@admin.register(CreditRequest)
class CreditRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "requester",
        "project",
        "amount",
        "currency",
        "state",
        "created_at",
        "decided_by",
        "decided_via",
    )
    list_filter = ("state", "decided_via")
    search_fields = ("requester__username", "project__name", "reason")
    list_select_related = ("requester", "project", "decided_by")
    date_hierarchy = "created_at"
    inlines = [CreditEventInline]


@admin.register(RequestEvent)
class RequestEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "access_request", "credit_request", "from_state", "to_state", "actor", "via")
    list_filter = ("to_state", "via")
    list_select_related = ("access_request", "credit_request", "actor")
    date_hierarchy = "at"
