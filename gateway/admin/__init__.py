"""The Django admin for the core domain.

Writes go through gateway.services, which validate, commit and tell every proxy process that its
cached keys and models changed. Three rules hold throughout:

- Secrets are write-only. A provider's API key is entered in a password field and afterwards shown
  only as "set" / "not set"; a virtual key's secret is shown once, on the page that answers its
  creation; no ciphertext or hash (api_key_encrypted, key_hash, token_hash) is ever displayed.
- Django's admin runs each POST in one transaction, but the services are durable entry points
  (`atomic(durable=True)`) that must not be nested, so the views that call them run without it.
- An error a service raises while saving is shown on the form, like any validation error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.contrib.auth import get_permission_codename
from django.db import models as db
from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from gateway import guardrail_policy, health_state, identity, log_bodies, selectors, services
from gateway.admin import action_forms, display, index, pages, widgets
from gateway.errors import ValidationFailed
from gateway.models import (
    AdminToken,
    BusinessUnit,
    Deployment,
    GuardrailPolicy,
    Membership,
    Model,
    Project,
    Provider,
    RequestLog,
    RoleMapping,
    VirtualKey,
)

admin.site.site_header = "Symbiosis Gateway"
admin.site.site_title = "Symbiosis Gateway admin"
index.install(admin.site)  # the index and the sidebar grouped by task (gateway/admin/index.py)

# Per-request state between the steps of one admin view (never on the shared ModelAdmin instance).
_service_errors: WeakKeyDictionary[HttpRequest, ValidationFailed] = WeakKeyDictionary()
_issued_secrets: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()


def _adopt(obj: db.Model, saved: db.Model) -> None:
    """Make the admin's unsaved instance the row a service created: the admin goes on using it
    (inline formsets, the history entry, the redirect)."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def _count(queryset: QuerySet[Any], *, fk: str) -> Coalesce:
    """An annotation counting QUERYSET's rows that point at the outer row (one subquery, no joins)."""
    counts = queryset.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def _may_change(request: HttpRequest, opts: Any) -> bool:
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


class ServiceForm(forms.ModelForm):
    """Shows the error a service raised on the previous attempt to save this form."""

    service_error: ValidationFailed | None = None

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        if (error := self.service_error) is not None:
            self.add_error(error.field if error.field in self.fields else None, str(error))
        return cleaned_data


# Labels in plain words where a column's name is an abbreviation (the columns keep their names).
FIELD_LABELS = {
    "rpm_limit": "Requests per minute",
    "tpm_limit": "Tokens per minute",
    "max_streams": "Concurrent streams",
    "base_url": "Base URL",
    "api_version": "API version",
    "webhook_url": "Webhook URL",
}


class ServiceAdmin(admin.ModelAdmin):
    """A ModelAdmin whose subclasses save and delete through gateway.services."""

    form = ServiceForm

    def formfield_for_dbfield(self, db_field: db.Field, request: HttpRequest, **kwargs: Any) -> forms.Field | None:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and db_field.name in FIELD_LABELS:
            field.label = FIELD_LABELS[db_field.name]
        return field

    @csrf_protect_m
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # No surrounding transaction (see the module docstring): each service call commits on its own.
        try:
            return self._changeform_view(request, object_id, form_url, extra_context)
        except ValidationFailed as exc:
            # Render the same form again, bound to the same input, with the service's message on it.
            _service_errors[request] = exc
            return self._changeform_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return self._delete_view(request, object_id, extra_context)
        except ValidationFailed as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def get_form(
        self, request: HttpRequest, obj: db.Model | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form_class = super().get_form(request, obj, change, **kwargs)
        if (error := _service_errors.get(request)) is not None:
            form_class = type(form_class.__name__, (form_class,), {"service_error": error})
        return form_class

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            try:
                self.delete_model(request, obj)
            except ValidationFailed as exc:
                self.message_user(request, f"{obj}: {exc}", messages.ERROR)


# --- business units ---


@admin.register(BusinessUnit)
class BusinessUnitAdmin(ServiceAdmin):
    list_display = ("name", "project_count", "manager_names", "created_at")
    list_filter = (("managers", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name",)
    autocomplete_fields = ("managers",)
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BusinessUnit]:
        return (
            super()
            .get_queryset(request)
            .annotate(project_count=_count(Project.objects.all(), fk="business_unit"))
            .prefetch_related("managers")
        )

    @admin.display(description="projects", ordering="project_count")
    def project_count(self, unit: BusinessUnit) -> int:
        return unit.project_count  # type: ignore[attr-defined]

    @admin.display(description="managers")
    def manager_names(self, unit: BusinessUnit) -> str:
        return ", ".join(user.get_username() for user in unit.managers.all()) or "—"

    def save_model(self, request: HttpRequest, obj: BusinessUnit, form: forms.ModelForm, change: bool) -> None:
        # The managers are saved by save_related.
        if change:
            services.update_business_unit(unit=obj, name=obj.name)
        else:
            _adopt(obj, services.create_business_unit(name=obj.name))

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Sequence[BaseInlineFormSet], change: bool
    ) -> None:
        """Managers one by one through the identity services, as the management API adds and removes
        them (each change audited; a manager added here is kept whatever the identity provider says)."""
        unit = form.instance
        wanted = {user.pk: user for user in form.cleaned_data.get("managers") or []}
        current = {user.pk: user for user in unit.managers.all()}
        for pk in sorted(current.keys() - wanted.keys()):
            identity.remove_business_unit_manager(unit=unit, user=current[pk])
        for pk in sorted(wanted.keys() - current.keys()):
            identity.add_business_unit_manager(unit=unit, user=wanted[pk])

    def delete_model(self, request: HttpRequest, obj: BusinessUnit) -> None:
        services.delete_business_unit(unit=obj)


# --- projects and their members ---


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        # Each row's title names its user and project: fetched with the rows, not one by one.
        return super().get_queryset(request).select_related("user", "project")


LATEST_REQUESTS = 10  # on a project's page


@admin.register(Project)
class ProjectAdmin(ServiceAdmin):
    list_display = ("name", "business_unit", "member_count", "key_count", "created_at")
    list_filter = (("business_unit", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("business_unit",)
    search_fields = ("name", "business_unit__name")
    autocomplete_fields = ("business_unit", "allowed_models")
    readonly_fields = ("effective_log_bodies", "created_at")
    inlines = (MembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_count=_count(Membership.objects.all(), fk="project"),
                key_count=_count(VirtualKey.objects.all(), fk="project"),
            )
        )

    @admin.display(description="members", ordering="member_count")
    def member_count(self, project: Project) -> int:
        return project.member_count  # type: ignore[attr-defined]

    @admin.display(description="keys", ordering="key_count")
    def key_count(self, project: Project) -> int:
        return project.key_count  # type: ignore[attr-defined]

    @admin.display(description="log bodies in force")
    def effective_log_bodies(self, project: Project) -> str:
        return log_bodies.effective(project.log_bodies)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        project = self.get_object(request, object_id)
        if project is not None and request.method == "GET":
            extra_context = {**(extra_context or {}), **self.overview_context(request, project)}
        return super().change_view(request, object_id, form_url, extra_context)

    def overview_context(self, request: HttpRequest, project: Project) -> dict[str, Any]:
        """The project at a glance, above its form: its keys (each with its actions, by the
        viewer's permissions), its members and its latest requests. billing/admin.py adds its money."""
        key_opts = VirtualKey._meta
        may_change_keys = _may_change(request, key_opts)
        latest = list(
            RequestLog.objects.filter(project=project)
            .defer("request_body", "response_body")
            .order_by("-created_at", "-id")[:LATEST_REQUESTS]
        )
        return {
            "overview": {
                "keys": selectors.project_keys(project=project),
                "members": list(project.memberships.select_related("user").order_by("role", "user__username")),
                "latest": [
                    {
                        "row": row,
                        "when": timezone.localtime(row.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                        "tokens": display.tokens(row.input_tokens, row.output_tokens, estimated=row.usage_estimated),
                        "latency": display.duration_ms(row.latency_ms),
                        "cost": display.money(row.cost),
                    }
                    for row in latest
                ],
                "may_change_keys": may_change_keys,
                "may_rotate_keys": may_change_keys
                and request.user.has_perm(f"gateway.{get_permission_codename('add', key_opts)}"),
                "keys_url": f"{reverse('admin:gateway_virtualkey_changelist')}?project__id__exact={project.pk}",
                "add_key_url": f"{reverse('admin:gateway_virtualkey_add')}?project={project.pk}",
                "logs_url": f"{reverse('admin:gateway_requestlog_changelist')}?project_id={project.pk}",
            }
        }

    def save_model(self, request: HttpRequest, obj: Project, form: forms.ModelForm, change: bool) -> None:
        allowed = [model.name for model in form.cleaned_data["allowed_models"]]
        limits = {"rpm_limit": obj.rpm_limit, "tpm_limit": obj.tpm_limit, "log_retention_days": obj.log_retention_days}
        if change:
            # The body policy is checked against the organisation's default only when it is changed.
            policy = obj.log_bodies if "log_bodies" in form.changed_data else None
            services.update_project(
                project=obj,
                name=obj.name,
                business_unit=obj.business_unit,
                allowed_models=allowed,
                log_bodies=policy,
                **limits,
            )
        else:
            created = services.create_project(
                name=obj.name,
                business_unit=obj.business_unit,
                allowed_models=allowed,
                log_bodies=obj.log_bodies,
                **limits,
            )
            _adopt(obj, created)

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Sequence[BaseInlineFormSet], change: bool
    ) -> None:
        # The allowed models were saved by the service in save_model; the members go one by one.
        project = form.instance
        for formset in formsets:
            formset.save(commit=False)  # sorts the rows into new/changed/deleted (for history too); writes nothing
            for membership in formset.deleted_objects:
                services.remove_member(membership=membership)
            for membership, _fields in formset.changed_objects:
                services.change_member_role(membership=membership, role=membership.role)
            for membership in formset.new_objects:
                services.add_member(project=project, user=membership.user, role=membership.role)

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        services.delete_project(project=obj)


# --- providers ---


class ProviderForm(ServiceForm):
    api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is stored encrypted and never shown. Leave blank to keep the stored key.",
    )
    remove_api_key = forms.BooleanField(label="Remove the stored API key", required=False)

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        if cleaned_data.get("api_key") and cleaned_data.get("remove_api_key"):
            raise forms.ValidationError("Enter a new API key or remove the stored one, not both.")
        return cleaned_data


@admin.register(Provider)
class ProviderAdmin(ServiceAdmin):
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "approved", "api_key_status", "deployment_count", "updated_at")
    list_filter = ("kind", "approved")
    search_fields = ("name", "base_url")

    def get_fields(self, request: HttpRequest, obj: Provider | None = None) -> Sequence[str]:
        if obj is None:
            return ("name", "kind", "base_url", "api_version", "api_key", "approved")
        return (
            "name",
            "kind",
            "base_url",
            "api_version",
            "api_key_status",
            "api_key",
            "remove_api_key",
            "approved",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Provider | None = None) -> Sequence[str]:
        # update_provider cannot change the kind: a different kind of server is a different provider.
        readonly = ("api_key_status", "created_at", "updated_at")
        return readonly if obj is None else ("kind", *readonly)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return super().get_queryset(request).annotate(deployment_count=_count(Deployment.objects.all(), fk="provider"))

    @method_decorator(sensitive_post_parameters("api_key"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="stored API key")
    def api_key_status(self, provider: Provider) -> str:
        return "set" if provider.has_api_key else "not set"

    @admin.display(description="deployments", ordering="deployment_count")
    def deployment_count(self, provider: Provider) -> int:
        return provider.deployment_count  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        api_key: str = form.cleaned_data.get("api_key") or ""
        if change:
            # None keeps the stored key, "" removes it, anything else replaces it.
            new_key = "" if form.cleaned_data.get("remove_api_key") else (api_key or None)
            services.update_provider(
                provider=obj,
                name=obj.name,
                base_url=obj.base_url,
                api_key=new_key,
                approved=obj.approved,
                api_version=obj.api_version,
            )
        else:
            created = services.create_provider(
                name=obj.name,
                kind=obj.kind,
                base_url=obj.base_url,
                api_key=api_key,
                approved=obj.approved,
                api_version=obj.api_version,
            )
            _adopt(obj, created)

    def delete_model(self, request: HttpRequest, obj: Provider) -> None:
        services.delete_provider(provider=obj)


# --- models and their deployments ---


class DeploymentInline(admin.StackedInline):
    """Stacked, a deployment to a block of short rows: as a table its thirteen columns were
    2,714 px wide. Timeouts, rarely set, are folded away."""

    model = Deployment
    extra = 0
    min_num = 1
    readonly_fields = ("health",)
    autocomplete_fields = ("provider",)

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        return [
            (None, {"fields": (("provider", "upstream_model"), ("weight", "priority", "enabled"), "health")}),
            (
                f"Prices per million tokens ({display.currency()})",
                {"fields": (("input_price", "output_price", "cached_input_price"),)},
            ),
            (
                "Timeouts (seconds)",
                {
                    "classes": ("collapse",),
                    "fields": (("connect_timeout", "first_token_timeout", "idle_timeout", "total_timeout"),),
                },
            ),
        ]

    @admin.display(description="health")
    def health(self, deployment: Deployment) -> str:
        if deployment.pk is None:
            return "-"
        record = health_state.deployment_health(deployment_ids=[deployment.pk])[deployment.pk]
        latency = f", {record['latency_ms']} ms" if record.get("latency_ms") is not None else ""
        error = f" — last error: {record['last_error']}" if record.get("last_error") else ""
        return f"{record['state']}{latency}{error}"

    def get_formset(self, request: HttpRequest, obj: Model | None = None, **kwargs: Any) -> type[BaseInlineFormSet]:
        kwargs.setdefault("validate_min", True)  # a model needs at least one deployment
        return super().get_formset(request, obj, **kwargs)


_HEALTH_ORDER = {"healthy": 0, "degraded": 1, "half_open": 1, "open": 2}


class PublicModelForm(ServiceForm):
    fallbacks = widgets.OrderedNamesField(
        required=False,
        help_text="Models to try, in this order, when every deployment of this one fails.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        others = [(name, name) for name in Model.objects.exclude(pk=self.instance.pk).values_list("name", flat=True)]
        stored = len(self.instance.fallbacks or []) if self.instance.pk else 0
        self.fields["fallbacks"].widget.set_choices(others, slots=max(3, stored + 1))


@admin.register(Model)
class PublicModelAdmin(ServiceAdmin):
    form = PublicModelForm
    list_display = ("name", "enabled", "context_window", "deployment_count", "health_label", "created_at")
    list_filter = ("enabled", ("deployments__provider", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "description", "deployments__upstream_model")
    readonly_fields = ("created_at",)
    inlines = (DeploymentInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Sequence[str]:
        # Clients call a model by its name: update_model does not rename.
        return ("created_at",) if obj is None else ("name", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        rows = super().get_queryset(request).annotate(deployment_count=_count(Deployment.objects.all(), fk="model"))
        if request.resolver_match and request.resolver_match.url_name == "gateway_model_changelist":
            # The health column: each row's deployment ids in one query (their health is in the cache).
            rows = rows.prefetch_related(Prefetch("deployments", queryset=Deployment.objects.only("id", "model_id")))
        return rows

    @admin.display(description="deployments", ordering="deployment_count")
    def deployment_count(self, model: Model) -> int:
        return model.deployment_count  # type: ignore[attr-defined]

    @admin.display(description="health (circuit)")
    def health_label(self, model: Model) -> str:
        """The worst state among the model's deployments, as the proxies last published it
        (gateway/proxy/breaker.py): healthy, degraded (failed recently) or open (taken out)."""
        ids = [deployment.pk for deployment in model.deployments.all()]
        if not ids:
            return "—"
        states = [record["state"] for record in health_state.deployment_health(deployment_ids=ids).values()]
        worst = max(states, key=lambda state: _HEALTH_ORDER.get(state, 1))
        healthy = states.count("healthy")
        details = ", ".join(f"#{i}: {state}" for i, state in zip(ids, states, strict=True))
        return format_html(
            '<span class="cockpit-status {}" title="{}">{}</span> {}/{} healthy',
            worst,
            details,
            worst,
            healthy,
            len(ids),
        )

    def save_model(self, request: HttpRequest, obj: Model, form: forms.ModelForm, change: bool) -> None:
        """Saved in save_related: the service takes the model and its deployments together."""

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Sequence[BaseInlineFormSet], change: bool
    ) -> None:
        model = form.instance
        specs: list[services.DeploymentSpec] = []
        changed = False
        for formset in formsets:
            formset.save(commit=False)  # sorts the rows into new/changed/deleted for the history; writes nothing
            changed = changed or formset.has_changed()
            specs += [
                services.DeploymentSpec(
                    provider=row.cleaned_data["provider"],
                    upstream_model=row.cleaned_data["upstream_model"],
                    weight=row.cleaned_data["weight"],
                    priority=row.cleaned_data["priority"],
                    enabled=row.cleaned_data["enabled"],
                    connect_timeout=row.cleaned_data["connect_timeout"],
                    first_token_timeout=row.cleaned_data["first_token_timeout"],
                    idle_timeout=row.cleaned_data["idle_timeout"],
                    total_timeout=row.cleaned_data["total_timeout"],
                    input_price=row.cleaned_data["input_price"],
                    output_price=row.cleaned_data["output_price"],
                    cached_input_price=row.cleaned_data["cached_input_price"],
                )
                for row in formset.forms
                if row.cleaned_data and not row.cleaned_data.get("DELETE")
            ]
        if change:
            services.update_model(
                model=model,
                description=model.description,
                context_window=model.context_window,
                default_max_tokens=model.default_max_tokens,
                fallbacks=model.fallbacks or [],
                enabled=model.enabled,
                deployments=specs if changed else None,  # unchanged rows keep their ids
            )
        else:
            created = services.create_model(
                name=model.name,
                deployments=specs,
                description=model.description,
                context_window=model.context_window,
                default_max_tokens=model.default_max_tokens,
                fallbacks=model.fallbacks or [],
                enabled=model.enabled,
            )
            _adopt(model, created)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        services.delete_model(model=obj)


# --- virtual keys ---


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> QuerySet[VirtualKey]:
        now = timezone.now()
        match self.value():
            case "active":
                return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
            case "expired":
                return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
            case "revoked":
                return queryset.filter(revoked_at__isnull=False)
        return queryset


def _limits(key: VirtualKey) -> dict[str, int | None]:
    return {"rpm_limit": key.rpm_limit, "tpm_limit": key.tpm_limit, "max_streams": key.max_streams}


def _key_details(key: VirtualKey) -> list[tuple[str, Any]]:
    expires = timezone.localtime(key.expires_at).strftime("%Y-%m-%d %H:%M") if key.expires_at else "never"
    return [("Project", key.project), ("Prefix", f"{key.prefix}…"), ("Expires", expires)]


@admin.register(VirtualKey)
class VirtualKeyAdmin(ServiceAdmin):
    """Keys are issued here. Their change form stays read-only (a key's project, name and models are
    fixed); its page offers what services.set_key_limits, rotate_key and revoke_key do, each on
    its own page (pages.action_page) with its own permission."""

    list_display = ("name", "prefix", "project", "status", "expires_at", "created_at", "revoked_at")
    list_filter = (
        KeyStatusFilter,
        ("project__business_unit", admin.RelatedOnlyFieldListFilter),
        ("project", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("project",)
    search_fields = ("name", "prefix", "project__name")
    autocomplete_fields = ("project", "allowed_models")
    readonly_fields = ("prefix", "created_by", "created_at", "revoked_at")
    actions = ("revoke_keys",)

    def get_fields(self, request: HttpRequest, obj: VirtualKey | None = None) -> Sequence[str]:
        limits = ("rpm_limit", "tpm_limit", "max_streams")
        if obj is None:
            return ("project", "name", "allowed_models", "expires_at", *limits)
        # An issued key's limits are in the panel above its form (templates/admin/gateway/virtualkey/).
        return ("name", "project", "prefix", "created_by", "allowed_models", "expires_at", "created_at", "revoked_at")

    def has_change_permission(self, request: HttpRequest, obj: VirtualKey | None = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return _may_change(request, self.opts)

    @admin.display(description="status")
    def status(self, key: VirtualKey) -> str:
        if key.revoked_at is not None:
            return "revoked"
        return "expired" if key.is_expired(timezone.now()) else "active"

    def save_model(self, request: HttpRequest, obj: VirtualKey, form: forms.ModelForm, change: bool) -> None:
        issued = services.create_virtual_key(
            project=obj.project,
            name=obj.name,
            created_by=request.user,
            allowed_models=[model.name for model in form.cleaned_data["allowed_models"]],
            expires_at=obj.expires_at,
            rpm_limit=obj.rpm_limit,
            tpm_limit=obj.tpm_limit,
            max_streams=obj.max_streams,
        )
        _adopt(obj, issued.key)
        _issued_secrets[request] = issued.secret

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Sequence[BaseInlineFormSet], change: bool
    ) -> None:
        """The service saved the key's models in save_model."""

    def response_add(self, request: HttpRequest, obj: VirtualKey, post_url_continue: str | None = None) -> HttpResponse:
        """Show the secret on the response itself (pages.secret_page), never cached."""
        secret = _issued_secrets.pop(request, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return pages.secret_page(request, self, key=obj, secret=secret, title="Key issued")

    # --- the key's page: its limits, and revoking and rotating it (each a POST after a confirmation) ---

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/limits/", wrap(self.limits_view), name="gateway_virtualkey_limits"),
            path("<path:object_id>/revoke/", wrap(self.revoke_view), name="gateway_virtualkey_revoke"),
            path("<path:object_id>/rotate/", wrap(self.rotate_view), name="gateway_virtualkey_rotate"),
            *super().get_urls(),
        ]

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        """Rotating issues a new key and shortens the old one's life: both rights are needed."""
        return self.has_add_permission(request) and _may_change(request, self.opts)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        key = self.get_object(request, object_id)
        if key is not None and request.method == "GET":
            may_change = _may_change(request, self.opts)
            extra_context = {
                **(extra_context or {}),
                "key_status": self.status(key),
                "may_change": may_change,
                "may_rotate": self.has_rotate_permission(request),
                "limits_form": action_forms.KeyLimitsForm(initial=_limits(key)) if may_change else None,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def limits_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Edit a key's limits through services.set_key_limits (what PATCH /api/v1/keys/{id} calls)."""
        pages.require(_may_change(request, self.opts))
        key = pages.object_or_404(self, request, object_id)
        form = action_forms.KeyLimitsForm(request.POST or None, initial=_limits(key))
        if request.method == "POST" and form.is_valid():
            try:
                services.set_key_limits(key=key, **form.cleaned_data)
            except ValidationFailed as exc:
                action_forms.add_service_error(form, exc)
            else:
                self.log_change(request, key, f"Limits set: {_limits(key)}.")
                self.message_user(request, f"The limits of {key} were saved.", messages.SUCCESS)
                return HttpResponseRedirect(pages.change_url(key))
        return pages.action_page(
            request, self, key, title="Edit limits", form=form, submit="Save limits", details=_key_details(key)
        )

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        pages.require(self.has_revoke_permission(request))
        key = pages.object_or_404(self, request, object_id)
        form = action_forms.ConfirmForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            services.revoke_key(key=key)
            self.log_change(request, key, "Revoked.")
            self.message_user(request, f"{key} is revoked: it stops working within seconds.", messages.SUCCESS)
            return HttpResponseRedirect(pages.change_url(key))
        return pages.action_page(
            request,
            self,
            key,
            title="Revoke key",
            form=form,
            submit="Yes, revoke this key",
            intro="Every request with this key is refused within seconds. A revoked key cannot be restored.",
            danger=True,
            details=_key_details(key),
        )

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Issue a replacement (services.rotate_key) and show its secret once."""
        pages.require(self.has_rotate_permission(request))
        key = pages.object_or_404(self, request, object_id)
        form = action_forms.RotateKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                issued = services.rotate_key(
                    key=key, grace=timedelta(days=form.cleaned_data["grace_days"]), created_by=request.user
                )
            except ValidationFailed as exc:
                action_forms.add_service_error(form, exc, fields={"grace": "grace_days"})
            else:
                self.log_change(request, key, f"Rotated: replaced by {issued.key}.")
                self.log_addition(request, issued.key, f"Issued to replace {key}.")
                ends = timezone.localtime(key.expires_at).strftime("%Y-%m-%d %H:%M") if key.expires_at else "—"
                note = f"The old key ({key.prefix}…) keeps working until {ends}."
                return pages.secret_page(
                    request, self, key=issued.key, secret=issued.secret, title="Key rotated", note=note
                )
        return pages.action_page(
            request,
            self,
            key,
            title="Rotate key",
            form=form,
            submit="Rotate: issue a new key",
            intro="A new key with the same name, models, limits and expiry is issued and shown once; "
            "the old one keeps working for the grace period, then expires.",
            details=_key_details(key),
        )

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            services.revoke_key(key=key)
            self.log_change(request, key, "Revoked.")
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: VirtualKey) -> None:
        services.delete_key(key=obj)


# --- admin tokens ---


class TokenStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AdminToken]) -> QuerySet[AdminToken]:
        match self.value():
            case "active":
                return queryset.filter(revoked_at__isnull=True)
            case "revoked":
                return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(AdminToken)
class AdminTokenAdmin(admin.ModelAdmin):
    """Tokens are issued by `manage.py issue_admin_token`; here they are listed and revoked."""

    list_display = ("prefix", "user", "status", "created_at", "revoked_at")
    list_filter = (TokenStatusFilter,)
    list_select_related = ("user",)
    search_fields = ("prefix", "user__username")
    fields = ("user", "prefix", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke_tokens",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AdminToken | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return _may_change(request, self.opts)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Deleting stays possible (deleting a user deletes their tokens), but the list offers revoking.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="status")
    def status(self, token: AdminToken) -> str:
        return "active" if token.revoked_at is None else "revoked"

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[AdminToken]) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            services.revoke_admin_token(token=token)
            self.log_change(request, token, "Revoked.")
        self.message_user(request, f"Revoked {len(tokens)} token(s).", messages.SUCCESS)


# --- request logs (read-only: written by the proxy) ---


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """An audit record: no one adds, changes or deletes a row here (the retention purge does)."""

    # Eight short columns fit a 1,024 px screen beside the filters; the rest is on the row's page.
    list_display = (
        "when",
        "project",
        "key_prefix",
        "model_label",
        "status_label",
        "tokens_label",
        "latency_label",
        "cost_label",
    )
    list_display_links = ("when",)
    list_filter = ("status_code", "stream", "usage_estimated", "endpoint", "bodies")
    search_fields = ("request_id", "model", "key_prefix", "error_code")
    date_hierarchy = "created_at"
    list_select_related = ("project",)
    show_full_result_count = False  # no COUNT(*) over millions of rows
    fieldsets = (
        (None, {"fields": ("request_id", "created_at", "endpoint", "status_code", "error_code", "stream")}),
        ("Who", {"fields": ("project", "key", "key_prefix", "member", "user_agent")}),
        ("Route", {"fields": ("model", "answered_model", "deployment", "provider", "attempts_pretty")}),
        (
            "Usage and timing",
            {
                "fields": (
                    ("input_tokens", "output_tokens", "cached_tokens", "usage_estimated"),
                    "cost_label",
                    ("latency_label", "ttft_label"),
                )
            },
        ),
        ("Guardrails", {"fields": ("guardrails_pretty",)}),
        (
            "Bodies (as the project's policy kept them)",
            {"fields": ("bodies", "bodies_truncated", "request_body_pretty", "response_body_pretty")},
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[RequestLog]:
        rows = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "gateway_requestlog_changelist":
            rows = rows.defer("request_body", "response_body")  # a page lists 100 rows: no bodies
        return rows

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    @admin.display(description="when", ordering="created_at")
    def when(self, row: RequestLog) -> str:
        return timezone.localtime(row.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="model", ordering="model")
    def model_label(self, row: RequestLog) -> str:
        """The model asked for, and the one that answered when a fallback did."""
        if row.answered_model and row.answered_model != row.model:
            return f"{row.model} → {row.answered_model}"
        return row.model or "—"

    @admin.display(description="status", ordering="status_code")
    def status_label(self, row: RequestLog) -> str:
        kind = "ok" if row.status_code < 400 else "client" if row.status_code < 500 else "server"
        title = row.error_code or ("stream" if row.stream else "")
        return format_html('<span class="cockpit-status {}" title="{}">{}</span>', kind, title, row.status_code)

    @admin.display(description="tokens in → out")
    def tokens_label(self, row: RequestLog) -> str:
        return display.tokens(row.input_tokens, row.output_tokens, estimated=row.usage_estimated)

    @admin.display(description="latency", ordering="latency_ms")
    def latency_label(self, row: RequestLog) -> str:
        return display.duration_ms(row.latency_ms)

    @admin.display(description="time to first token")
    def ttft_label(self, row: RequestLog) -> str:
        return display.duration_ms(row.ttft_ms)

    @admin.display(description="cost", ordering="cost")
    def cost_label(self, row: RequestLog) -> str:
        return display.money(row.cost)

    @admin.display(description="failed attempts")
    def attempts_pretty(self, row: RequestLog) -> str:
        return display.pretty_json(row.attempts)

    @admin.display(description="verdicts")
    def guardrails_pretty(self, row: RequestLog) -> str:
        return display.pretty_json(row.guardrails)

    @admin.display(description="request body")
    def request_body_pretty(self, row: RequestLog) -> str:
        return display.pretty_json(row.request_body)

    @admin.display(description="response body")
    def response_body_pretty(self, row: RequestLog) -> str:
        return display.pretty_json(row.response_body)


# --- guardrail policies ---


class GuardrailPolicyForm(ServiceForm):
    """Checks as a table of check x action, deny lists one term a line (gateway/admin/widgets.py);
    services.set_guardrail_policy validates them as it does for the management API."""

    input = widgets.CheckActionsField(
        checks=guardrail_policy.INPUT_CHECKS,
        actions=guardrail_policy.ACTIONS,
        unavailable=frozenset((check, "redact") for check in ("prompt_injection", "classifier")),
        help_text="What each check does on the way in. —: not set (the organisation's floor applies).",
    )
    output = widgets.CheckActionsField(
        checks=guardrail_policy.OUTPUT_CHECKS,
        actions=guardrail_policy.ACTIONS,
        help_text="What each check does to answers (held back while streamed).",
    )
    denylist = widgets.LinesField(help_text='One term a line, or "re:" followed by a regular expression.')
    denied_betas = widgets.LinesField(
        help_text='Anthropic betas requests may not turn on, one a line; "web-search-*" denies each that begins so.'
    )


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(ServiceAdmin):
    """The organisation's floor (one row, no project) and projects' own policies. Saved through
    gateway.services, which validates them (actions, deny-list patterns) and tells the proxies."""

    form = GuardrailPolicyForm

    list_display = ("__str__", "scope", "restore_redactions", "max_input_tokens", "updated_at")
    list_filter = ("scope",)
    fields = ("scope", "project", *guardrail_policy.FIELDS)
    autocomplete_fields = ("project",)

    def get_readonly_fields(self, request: HttpRequest, obj: GuardrailPolicy | None = None) -> tuple[str, ...]:
        return ("scope", "project") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: GuardrailPolicy, form: forms.ModelForm, change: bool) -> None:
        if obj.scope == GuardrailPolicy.Scope.ORGANISATION:
            obj.project = None
        data = {name: getattr(obj, name) for name in guardrail_policy.FIELDS}
        saved = services.set_guardrail_policy(project=obj.project, data=data)
        if saved is not None:
            _adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: GuardrailPolicy) -> None:
        if obj.project is None:
            raise ValidationFailed("The organisation's policy cannot be removed; set its checks to off instead.")
        services.set_guardrail_policy(project=obj.project, data=None)


# --- identity-provider groups and roles (gateway/identity.py) ---


@admin.register(RoleMapping)
class RoleMappingAdmin(ServiceAdmin):
    """Which IdP group grants which role at every SSO sign-in. A mapping is added or deleted, not
    edited: its roles follow at each user's next sign-in."""

    list_display = ["group", "role", "business_unit", "created_at"]
    list_filter = ["role"]
    search_fields = ["group"]
    fields = ["group", "role", "business_unit"]

    def get_readonly_fields(self, request: HttpRequest, obj: RoleMapping | None = None) -> Sequence[str]:
        return self.fields if obj is not None else []

    def save_model(self, request: HttpRequest, obj: RoleMapping, form: forms.ModelForm, change: bool) -> None:
        if change:
            return
        _adopt(
            obj,
            identity.create_role_mapping(group=obj.group, role=obj.role, business_unit=obj.business_unit),
        )

    def delete_model(self, request: HttpRequest, obj: RoleMapping) -> None:
        identity.delete_role_mapping(mapping=obj)


from gateway.admin import audit as audit  # noqa: E402 - registers the audit log (read-only)
