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
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db import transaction
from django.db.models import OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing import admin_forms, prices, selectors, services
from billing.models import AlertEvent, Budget, LedgerEntry, PriceListEntry, default_thresholds
from gateway import admin as gateway_admin
from gateway import audit
from gateway import selectors as gateway_selectors
from gateway.admin import ServiceAdmin, ServiceForm, action_forms, display, pages, widgets
from gateway.errors import ValidationFailed

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import BusinessUnit, Project, VirtualKey


def _target(budget: Budget) -> Project | VirtualKey | BusinessUnit:
    target = budget.project or budget.key or budget.business_unit
    assert target is not None, "the form and the table's constraint require a target"
    return target


def _no_bulk_delete(actions: dict[str, Any]) -> dict[str, Any]:
    actions.pop("delete_selected", None)
    return actions


class BudgetForm(ServiceForm):
    """The alert thresholds as numbers (percent of the month's limit), the limit in the currency.
    billing.services.set_budget checks both, as it does for the management API."""

    thresholds = widgets.NumbersField(
        required=False,
        initial=default_thresholds,  # as the column's default: a new budget starts with them
        help_text="Percentages of the monthly limit that raise an alert (1 to 1000).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "monthly_limit" in self.fields:
            self.fields["monthly_limit"].label = f"Monthly limit ({settings.BILLING_CURRENCY})"


@admin.register(Budget)
class BudgetAdmin(ServiceAdmin):
    form = BudgetForm
    list_display = ("scope", "target", "monthly_limit_label", "hard", "thresholds", "updated_at")
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

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # A project's budget is the common case; cockpit.js shows the one picker the scope needs.
        return {"scope": Budget.Scope.PROJECT, **super().get_changeform_initial_data(request)}

    def get_readonly_fields(self, request: HttpRequest, obj: Budget | None = None) -> Sequence[str]:
        readonly = ("created_at", "updated_at")
        return readonly if obj is None else ("scope", "project", "key", "business_unit", *readonly)

    @admin.display(description="target")
    def target(self, budget: Budget) -> str:
        return str(_target(budget))

    @admin.display(description="monthly limit", ordering="monthly_limit")
    def monthly_limit_label(self, budget: Budget) -> str:
        return display.money(budget.monthly_limit)

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
    # Eight columns fit a 1,024 px screen; the entry's page has the rest (ids, cached tokens, ...).
    list_display = (
        "when",
        "kind",
        "amount_label",
        "project_label",
        "key_prefix",
        "model",
        "tokens_label",
        "reason_label",
    )
    list_filter = ("kind", "period", "estimated", "priced")
    search_fields = ("request_id", "reason")
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over the whole ledger
    fields = (
        "created_at",
        "period",
        "kind",
        "amount_label",
        "exact_amount",
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

    @admin.display(description="when", ordering="created_at")
    def when(self, entry: LedgerEntry) -> str:
        return timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="amount", ordering="amount")
    def amount_label(self, entry: LedgerEntry) -> str:
        return display.money(entry.amount)

    @admin.display(description="exact amount")
    def exact_amount(self, entry: LedgerEntry) -> str:
        """Usage is kept to ten places (a request can cost a fraction of a cent)."""
        return f"{entry.amount.normalize():f} {display.currency()}"

    @admin.display(description="tokens in → out")
    def tokens_label(self, entry: LedgerEntry) -> str:
        if entry.kind != LedgerEntry.Kind.USAGE:
            return ""
        return display.tokens(entry.input_tokens, entry.output_tokens, estimated=entry.estimated)

    @admin.display(description="reason / request", ordering="reason")
    def reason_label(self, entry: LedgerEntry) -> str:
        return entry.reason or entry.request_id or ""

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
    list_display = ("created_at", "budget", "period", "threshold", "spent_label", "limit_label", "webhook_status")
    list_filter = ("threshold", "period", "budget__scope")
    list_select_related = ("budget",)
    date_hierarchy = "created_at"
    fields = (
        "budget",
        "period",
        "threshold",
        "spent_label",
        "limit_label",
        "created_at",
        "emailed_to",
        "webhook_status",
    )
    readonly_fields = fields

    @admin.display(description="spent", ordering="spent")
    def spent_label(self, alert: AlertEvent) -> str:
        return display.money(alert.spent)

    @admin.display(description="limit", ordering="limit")
    def limit_label(self, alert: AlertEvent) -> str:
        return display.money(alert.limit)

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
        "input_price_label",
        "output_price_label",
        "cached_input_price_label",
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

    @admin.display(description="input / 1M tokens", ordering="input_price")
    def input_price_label(self, entry: PriceListEntry) -> str:
        return display.unit_price(entry.input_price, currency_code=entry.currency)

    @admin.display(description="output / 1M tokens", ordering="output_price")
    def output_price_label(self, entry: PriceListEntry) -> str:
        return display.unit_price(entry.output_price, currency_code=entry.currency)

    @admin.display(description="cached input / 1M tokens", ordering="cached_input_price")
    def cached_input_price_label(self, entry: PriceListEntry) -> str:
        return display.unit_price(entry.cached_input_price, currency_code=entry.currency)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"currency": settings.BILLING_CURRENCY, **super().get_changeform_initial_data(request)}

    # The admin saves price-list entries itself, in the transaction Django opens for each change;
    # these hooks put the audit event in that transaction.
    def save_model(self, request: HttpRequest, obj: PriceListEntry, form: forms.ModelForm, change: bool) -> None:
        before = audit.stored_snapshot(obj) if change else None
        super().save_model(request, obj, form, change)
        action = "price_list_entry.update" if change else "price_list_entry.create"
        audit.record(action=action, target=obj, before=before, after=audit.snapshot(obj))

    def delete_model(self, request: HttpRequest, obj: PriceListEntry) -> None:
        delete = super().delete_model
        with transaction.atomic():  # the delete_selected action opens no transaction of its own
            audit.record_deletion(action="price_list_entry.delete", target=obj, delete=lambda: delete(request, obj))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PriceListEntry]) -> None:
        for entry in queryset:  # one event per entry
            self.delete_model(request, entry)

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


# --- a project's money, on the project's own page (gateway's ProjectAdmin, extended here) ---

# The core's Project class, as Budget's foreign key names it (billing imports no core model).
_Project = Budget._meta.get_field("project").related_model


SPARKLINE_DAYS = 30


def _sparkline(values: list[Decimal], *, width: int = 300, height: int = 40) -> str:
    """Spend per day as an inline SVG line (no script: the CSP allows none inline), with the
    total and the busiest day in its title for screen readers and hovering."""
    if not values:
        return ""
    top = max(values) or Decimal(1)
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{n * step:.1f},{height - 2 - float(value / top) * (height - 4):.1f}" for n, value in enumerate(values)
    )
    total, busiest = display.money(sum(values)), display.money(top)
    title = f"Spend per day over {len(values)} days: {total} in all, at most {busiest} a day"
    return format_html(
        '<svg class="cockpit-sparkline" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" aria-label="{}">'
        '<title>{}</title><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>',
        width,
        height,
        title,
        title,
        points,
    )


def _ledger_idempotency(form_key: str) -> str:
    return f"admin:{form_key}"


class ProjectAdmin(gateway_admin.ProjectAdmin):
    """gateway's project admin with the project's money: its balance, this month's spend and
    budget on the page, and two actions that write the ledger through billing.services, never an
    edit: "grant credit" (grant_credits, idempotent) and "adjustment" (adjust_balance). Both need
    the permission to add ledger entries (billing.add_ledgerentry)."""

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/grant-credit/", wrap(self.grant_credit_view), name="gateway_project_grant_credit"),
            path("<path:object_id>/adjustment/", wrap(self.adjustment_view), name="gateway_project_adjustment"),
            *super().get_urls(),
        ]

    def has_ledger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"billing.{get_permission_codename('add', LedgerEntry._meta)}")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        project = self.get_object(request, object_id)
        if project is not None and request.method == "GET":
            extra_context = {**(extra_context or {}), **self.money_context(request, project)}
        return super().change_view(request, object_id, form_url, extra_context)

    def money_context(self, request: HttpRequest, project: Any) -> dict[str, Any]:
        money = selectors.project_money(project_ids=[project.pk])[project.pk]
        budget = selectors.project_budget(project.pk)
        budget_url = (
            reverse("admin:billing_budget_change", args=[budget.pk])
            if budget is not None
            else f"{reverse('admin:billing_budget_add')}?scope=project&project={project.pk}"
        )
        return {
            "money": {
                "balance": display.money(money.balance),
                "spent": display.money(money.spent),
                "allowance": display.money(money.allowance) if money.allowance is not None else "no budget",
                "available": display.money(money.available),
                "hard": money.hard,
                "percent": money.percent,
                "level": money.level,
            },
            "budget_url": budget_url,
            "sparkline": _sparkline(selectors.daily_usage(project_ids=[project.pk], days=SPARKLINE_DAYS).spend),
            "ledger_url": f"{reverse('admin:billing_ledgerentry_changelist')}?project_id={project.pk}",
            "may_move_money": self.has_ledger_permission(request),
        }

    def _money_details(self, project: Any) -> list[tuple[str, Any]]:
        money = selectors.project_money(project_ids=[project.pk])[project.pk]
        return [("Balance", display.money(money.balance)), ("Spent this month", display.money(money.spent))]

    def grant_credit_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        pages.require(self.has_ledger_permission(request))
        project = pages.object_or_404(self, request, object_id)
        form = admin_forms.GrantCreditForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                granted = services.grant_credits(
                    project=project,
                    amount=data["amount"],
                    reason=data["reason"],
                    idempotency_key=_ledger_idempotency(data["idempotency_key"]),
                    actor=request.user.get_username(),
                )
            except ValidationFailed as exc:
                action_forms.add_service_error(form, exc, fields={"idempotency_key": ""})
            else:
                amount = display.money(granted.entry.amount)
                if granted.created:
                    self.log_change(request, project, f"Credit granted: {amount} ({data['reason']}).")
                    self.message_user(request, f"Granted {amount} to {project}.", messages.SUCCESS)
                else:
                    self.message_user(request, f"This grant of {amount} was made already; nothing was added.")
                return HttpResponseRedirect(pages.change_url(project))
        return pages.action_page(
            request,
            self,
            project,
            title="Grant credit",
            form=form,
            submit="Grant credit",
            details=self._money_details(project),
        )

    def adjustment_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        pages.require(self.has_ledger_permission(request))
        project = pages.object_or_404(self, request, object_id)
        form = admin_forms.AdjustmentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                entry = services.adjust_balance(
                    project=project,
                    amount=data["amount"],
                    reason=data["reason"],
                    actor=request.user.get_username(),
                    idempotency_key=_ledger_idempotency(data["idempotency_key"]),
                )
            except ValidationFailed as exc:
                if exc.field != "idempotency_key":
                    action_forms.add_service_error(form, exc)
                else:  # the same form sent twice: the first one wrote the entry
                    self.message_user(request, "This adjustment was recorded already; nothing was added.")
                    return HttpResponseRedirect(pages.change_url(project))
            else:
                amount = display.money(entry.amount)
                self.log_change(request, project, f"Balance adjusted: {amount} ({data['reason']}).")
                self.message_user(request, f"Adjusted the balance of {project} by {amount}.", messages.SUCCESS)
                return HttpResponseRedirect(pages.change_url(project))
        return pages.action_page(
            request,
            self,
            project,
            title="Adjust the balance",
            form=form,
            submit="Add the adjustment",
            intro="An adjustment is a new ledger entry; entries are never edited or deleted.",
            details=self._money_details(project),
        )


admin.site.unregister(_Project)
admin.site.register(_Project, ProjectAdmin)
