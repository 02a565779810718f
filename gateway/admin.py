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
from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.contrib.auth import get_permission_codename
from django.db import models as db
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from gateway import guardrail_policy, health_state, identity, log_bodies, services
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


class ServiceAdmin(admin.ModelAdmin):
    """A ModelAdmin whose subclasses save and delete through gateway.services."""

    form = ServiceForm

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
        # The managers are saved by save_related (no service owns them).
        if change:
            services.update_business_unit(unit=obj, name=obj.name)
        else:
            _adopt(obj, services.create_business_unit(name=obj.name))

    def delete_model(self, request: HttpRequest, obj: BusinessUnit) -> None:
        services.delete_business_unit(unit=obj)


# --- projects and their members ---


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


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


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0
    min_num = 1
    fields = (
        "provider",
        "upstream_model",
        "weight",
        "priority",
        "enabled",
        "connect_timeout",
        "first_token_timeout",
        "idle_timeout",
        "total_timeout",
        "input_price",
        "output_price",
        "cached_input_price",
        "health",
    )
    readonly_fields = ("health",)
    autocomplete_fields = ("provider",)

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


@admin.register(Model)
class PublicModelAdmin(ServiceAdmin):
    list_display = ("name", "enabled", "context_window", "deployment_count", "created_at")
    list_filter = ("enabled", ("deployments__provider", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "description", "deployments__upstream_model")
    readonly_fields = ("created_at",)
    inlines = (DeploymentInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Sequence[str]:
        # Clients call a model by its name: update_model does not rename.
        return ("created_at",) if obj is None else ("name", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        return super().get_queryset(request).annotate(deployment_count=_count(Deployment.objects.all(), fk="model"))

    @admin.display(description="deployments", ordering="deployment_count")
    def deployment_count(self, model: Model) -> int:
        return model.deployment_count  # type: ignore[attr-defined]

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


@admin.register(VirtualKey)
class VirtualKeyAdmin(ServiceAdmin):
    """Keys are issued here and then only viewed, revoked or deleted (no service edits a key)."""

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
        return (
            "name",
            "project",
            "prefix",
            "created_by",
            "allowed_models",
            "expires_at",
            *limits,
            "created_at",
            "revoked_at",
        )

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
        """Show the secret on the response itself, never through the messages framework (whose
        cookie or session would keep a copy), and never cache that page."""
        secret = _issued_secrets.pop(request, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": obj,
            "secret": secret,
            "change_url": reverse("admin:gateway_virtualkey_change", args=[obj.pk]),
            "list_url": reverse("admin:gateway_virtualkey_changelist"),
        }
        response = TemplateResponse(request, "admin/gateway/virtualkey/issued.html", context)
        add_never_cache_headers(response)
        return response

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
    list_display = (
        "created_at",
        "request_id",
        "project",
        "key_prefix",
        "model",
        "answered_model",
        "provider",
        "status_code",
        "input_tokens",
        "output_tokens",
        "usage_estimated",
        "latency_ms",
        "stream",
    )
    list_filter = ("status_code", "stream", "usage_estimated", "endpoint", "bodies")
    search_fields = ("request_id", "model", "key_prefix", "error_code")
    date_hierarchy = "created_at"
    list_select_related = ("project",)
    show_full_result_count = False  # no COUNT(*) over millions of rows
    fieldsets = (
        (None, {"fields": ("request_id", "created_at", "endpoint", "status_code", "error_code", "stream")}),
        ("Who", {"fields": ("project", "key", "key_prefix", "member", "user_agent")}),
        ("Route", {"fields": ("model", "answered_model", "deployment", "provider", "attempts")}),
        (
            "Usage and timing",
            {
                "fields": (
                    ("input_tokens", "output_tokens", "cached_tokens", "usage_estimated"),
                    "cost",
                    ("latency_ms", "ttft_ms"),
                )
            },
        ),
        ("Guardrails", {"fields": ("guardrails",)}),
        (
            "Bodies (as the project's policy kept them)",
            {"fields": ("bodies", "bodies_truncated", "request_body", "response_body")},
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


# --- guardrail policies ---


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(ServiceAdmin):
    """The organisation's floor (one row, no project) and projects' own policies. Saved through
    gateway.services, which validates them (actions, deny-list patterns) and tells the proxies."""

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
