"""Read-only lists of requests and their events. Decisions go through the services (portal,
email link, management API), never through an edit form, so every change has its event."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals import rules
from approvals.models import AccessRequest, ApprovalRule, CreditRequest, RequestEvent
from gateway import audit
from gateway.admin import display


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
        "amount_label",
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

    @admin.display(description="amount", ordering="amount")
    def amount_label(self, credit: CreditRequest) -> str:
        return display.money(credit.amount, currency_code=credit.currency)


@admin.register(RequestEvent)
class RequestEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "access_request", "credit_request", "from_state", "to_state", "actor", "via")
    list_filter = ("to_state", "via")
    list_select_related = ("access_request", "credit_request", "actor")
    date_hierarchy = "at"


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(admin.ModelAdmin):
    """Rules are edited here or through /api/v1/approval-rules; approvals/rules.py says what they
    mean. The model's checks (amounts only for credit, ...) refuse contradictory rules."""

    list_display = ("name", "enabled", "priority", "action", "applies_to", "business_unit", "summary")
    list_display_links = ("name",)
    list_editable = ("enabled", "priority")
    list_filter = ("enabled", "action", "applies_to", "business_unit")
    list_select_related = ("business_unit",)
    search_fields = ("name", "description", "idp_groups")
    ordering = ("priority", "id")
    fieldsets = (
        (None, {"fields": ("name", "description", "enabled", "priority", "action", "applies_to", "business_unit")}),
        (
            "Conditions (all must hold; an empty one always does)",
            {
                "fields": ("max_amount", "monthly_cap", "unit_budget", "idp_groups"),
            },
        ),
    )

    @admin.display(description="What it does")
    def summary(self, rule: ApprovalRule) -> str:
        return rules.describe(rule)

    # The admin saves rules itself (its form and the list's editable columns run the model's
    # checks), inside the transaction Django opens for each change; these hooks put the audit
    # event in that same transaction.
    def save_model(self, request: HttpRequest, obj: ApprovalRule, form: forms.ModelForm, change: bool) -> None:
        before = audit.stored_snapshot(obj) if change else None
        super().save_model(request, obj, form, change)
        action = "approval_rule.update" if change else "approval_rule.create"
        audit.record(action=action, target=obj, before=before, after=audit.snapshot(obj))

    def delete_model(self, request: HttpRequest, obj: ApprovalRule) -> None:
        delete = super().delete_model
        with transaction.atomic():  # the delete_selected action opens no transaction of its own
            audit.record_deletion(action="approval_rule.delete", target=obj, delete=lambda: delete(request, obj))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApprovalRule]) -> None:
        for rule in queryset:  # one event per rule, as deleting them one by one would write
            self.delete_model(request, rule)
