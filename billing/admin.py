"""The Django admin for billing: budgets and the price list are edited here; the ledger and the
alerts are only read.

- Budgets are saved and deleted through billing.services (set_budget writes the month's allowance
  to the ledger and tells the proxies), like gateway.admin's ServiceAdmin. A budget's target is
  fixed once it exists: set_budget replaces the budget *of* a target.
- The ledger is append-only: no one adds, changes or deletes an entry in the admin (credits and
  corrections are ledger entries that billing's services write).
- Alerts are raised by billing, never added or edited here. They keep Django's delete permission:
  deleting a project or a key in the gateway admin cascades to its budget and alerts, and the
  admin refuses a deletion that would cascade into rows the user may not delete. Their list offers
  no bulk delete.
- A ledger entry outlives the project and key it names (no database constraint), so the lists show
  those by id and name without joining them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet
from django.http import HttpRequest

from billing import prices, services
from billing.models import AlertEvent, Budget, LedgerEntry, PriceListEntry
from gateway import selectors as gateway_selectors
from gateway.admin import ServiceAdmin

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import BusinessUnit, Project, VirtualKey


def _target(budget: Budget) -> Project | VirtualKey | BusinessUnit:
    target = budget.project or budget.key or budget.business_unit
    assert target is not None, "the form and the table's constraint require a target"
    return target


def _no_bulk_delete(actions: dict[str, Any]) -> dict[str, Any]:
    actions.pop("delete_selected", None)
    return actions


@admin.register(Budget)
class BudgetAdmin(ServiceAdmin):
    list_display = ("scope", "target", "monthly_limit", "hard", "thresholds", "updated_at")
    list_filter = ("scope", "hard")
    list_select_related = ("project", "key", "business_unit")
    search_fields = ("project__name", "key__name", "key__prefix", "business_unit__name")
    autocomplete_fields = ("project", "key", "business_unit")
    fields = (
        "scope",
        "project",
        "key",
        "business_unit",
        "monthly_limit",
        "hard",
        "thresholds",
        "webhook_url",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Budget | None = None) -> Sequence[str]:
        readonly = ("created_at", "updated_at")
        return readonly if obj is None else ("scope", "project", "key", "business_unit", *readonly)

    @admin.display(description="target")
    def target(self, budget: Budget) -> str:
        return str(_target(budget))

    def save_model(self, request: HttpRequest, obj: Budget, form: forms.ModelForm, change: bool) -> None:
        saved = services.set_budget(
            target=_target(obj),
            monthly_limit=obj.monthly_limit,
            hard=obj.hard,
            thresholds=obj.thresholds,
            webhook_url=obj.webhook_url,
            actor=request.user.get_username(),
        )
        for field in obj._meta.concrete_fields:  # the admin goes on with the row the service saved
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding, obj._state.db = False, saved._state.db

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        services.delete_budget(target=_target(obj))

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, ...]:
        # A budget's alerts go with it, even for a user who may not delete alerts on their own.
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(AlertEvent._meta.verbose_name)
        return deleted, model_count, perms_needed, protected


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "period",
        "kind",
        "amount",
        "project_label",
        "key_prefix",
        "model",
        "input_tokens",
        "output_tokens",
        "estimated",
        "priced",
        "request_id",
        "reason",
    )
    list_filter = ("kind", "period", "estimated", "priced")
    search_fields = ("request_id", "reason")
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over the whole ledger
    fields = (
        "created_at",
        "period",
        "kind",
        "amount",
        "project_label",
        "business_unit_id",
        "key_id",
        "key_prefix",
        "request_id",
        "model",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "estimated",
        "priced",
        "idempotency_key",
        "reason",
        "actor",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[LedgerEntry]:
        names = gateway_selectors.project_name_of(project_id=OuterRef("project_id"))
        return super().get_queryset(request).annotate(project_name=names)

    @admin.display(description="project", ordering="project_name")
    def project_label(self, entry: LedgerEntry) -> str:
        name = entry.project_name  # type: ignore[attr-defined]
        return f"{name} (#{entry.project_id})" if name is not None else f"#{entry.project_id} (deleted)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LedgerEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LedgerEntry | None = None) -> bool:
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "budget", "period", "threshold", "spent", "limit", "webhook_status")
    list_filter = ("threshold", "period", "budget__scope")
    list_select_related = ("budget",)
    date_hierarchy = "created_at"
    fields = ("budget", "period", "threshold", "spent", "limit", "created_at", "emailed_to", "webhook_status")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AlertEvent | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return _no_bulk_delete(super().get_actions(request))


class PriceListEntryForm(forms.ModelForm):
    provider_kind = forms.ChoiceField(choices=gateway_selectors.provider_kinds())

    class Meta:
        model = PriceListEntry
        fields = (
            "provider_kind",
            "upstream_model",
            "effective_date",
            "input_price",
            "output_price",
            "cached_input_price",
            "currency",
            "source",
        )


@admin.register(PriceListEntry)
class PriceListEntryAdmin(admin.ModelAdmin):
    form = PriceListEntryForm
    list_display = (
        "provider_kind",
        "upstream_model",
        "input_price",
        "output_price",
        "cached_input_price",
        "currency",
        "effective_date",
        "updated_at",
    )
    list_filter = ("provider_kind", "currency", "effective_date")
    search_fields = ("upstream_model",)
    fields = (
        "provider_kind",
        "upstream_model",
        "effective_date",
        "input_price",
        "output_price",
        "cached_input_price",
        "currency",
        "source",
        "updated_at",
    )
    readonly_fields = ("updated_at",)
    actions = ("apply_to_unpriced_deployments",)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"currency": settings.BILLING_CURRENCY, **super().get_changeform_initial_data(request)}

    @admin.action(description="Apply to unpriced deployments", permissions=["change"])
    def apply_to_unpriced_deployments(self, request: HttpRequest, queryset: QuerySet[PriceListEntry]) -> None:
        # The newest price in effect for each selected model, which need not be the selected entry.
        selected = set(queryset.values_list("provider_kind", "upstream_model"))
        result = prices.apply_prices(only=selected)
        names = ", ".join(str(deployment) for deployment in result.priced)
        self.message_user(
            request,
            f"Priced {len(result.priced)} deployment(s){': ' + names if names else ''}.",
            messages.SUCCESS if result.priced else messages.WARNING,
        )
        if result.unpriced:
            self.message_user(request, f"{len(result.unpriced)} deployment(s) still have no price.", messages.INFO)
