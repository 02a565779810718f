"""Writes to the core domain. Keyword-only, typed, atomic; callers are views, the admin API,
management commands and tasks. Every change the proxy caches is announced to all processes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from gateway import (
    audit,
    bulk_insert,
    crypto,
    guardrail_policy,
    health_state,
    log_bodies,
    money,
    probes,
    scrub,
    selectors,
    writable,
)
from gateway.errors import ValidationFailed
from gateway.invalidation import publish_catalog_change
from gateway.models import (
    LOG_BODIES_STRICTNESS,
    AdminToken,
    BusinessUnit,
    Deployment,
    GuardrailPolicy,
    Membership,
    Model,
    Notification,
    Project,
    Provider,
    RequestLog,
    VirtualKey,
)

# The core's rule for an http(s) URL, for the URL fields of other apps (billing's alert webhook),
# which never import the core's models. Migrations name it gateway.models.validate_http_url.
from gateway.models import validate_http_url as validate_http_url
from gateway.secrets_format import (
    ADMIN_TOKEN_PREFIX,
    VIRTUAL_KEY_PREFIX,
    digest,
    display_prefix,
    generate_secret,
)

User = get_user_model()
AZURE_DEFAULT_API_VERSION = "2024-10-21"
_UNSET: Any = object()  # "not given", where None means "clear it"


def _validated(instance: Any, *, exclude: Iterable[str] = ()) -> Any:
    """Run model validation and turn Django's errors into one readable ValidationFailed."""
    try:
        instance.full_clean(exclude=list(exclude))
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        label = "" if field == "__all__" else f"{field}: "
        raise ValidationFailed(f"{label}{' '.join(messages)}", field=None if field == "__all__" else field) from None
    return instance


def _save(instance: Any, *, exclude: Iterable[str] = ()) -> Any:
    _validated(instance, exclude=exclude)
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise ValidationFailed(f"Conflicts with an existing record: {exc.__cause__ or exc}") from None
    return instance


_PROJECT = {"many": ("allowed_models",)}
_KEY = {"many": ("allowed_models",)}


def _model_state(model: Model) -> dict[str, Any] | None:
    """A public model with its deployments (provider, upstream name, weights, prices, timeouts)."""
    deployments = [audit.snapshot(d, exclude=("model", "created_at")) for d in model.deployments.order_by("id")]
    return audit.snapshot(model, extra={"deployments": deployments})


def _models_by_name(names: Iterable[str], *, field: str = "allowed_models") -> list[Model]:
    wanted = list(dict.fromkeys(names))
    found = {m.name: m for m in Model.objects.filter(name__in=wanted)}
    if missing := [n for n in wanted if n not in found]:
        raise ValidationFailed(f"Unknown model(s): {', '.join(missing)}", field=field)
    return [found[n] for n in wanted]


# --- business units ---


@transaction.atomic(durable=True)
def create_business_unit(*, name: str) -> BusinessUnit:
    unit = _save(BusinessUnit(name=name.strip()))
    audit.record(action="business_unit.create", target=unit, after=audit.snapshot(unit))
    return unit


@transaction.atomic(durable=True)
def update_business_unit(*, unit: BusinessUnit, name: str | None = None) -> BusinessUnit:
    before = audit.stored_snapshot(unit)
    if name is not None:
        unit.name = name.strip()
    _save(unit)
    audit.record(action="business_unit.update", target=unit, before=before, after=audit.snapshot(unit))
    return unit


@transaction.atomic(durable=True)
def delete_business_unit(*, unit: BusinessUnit) -> None:
    if unit.projects.exists():
        raise ValidationFailed("This business unit still has projects; move or delete them first.")
    audit.record_deletion(action="business_unit.delete", target=unit, delete=unit.delete)


# --- projects and members ---


@transaction.atomic(durable=True)
def create_project(
    *,
    name: str,
    business_unit: BusinessUnit,
    allowed_models: Iterable[str] = (),
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    log_bodies: str = "",
    log_retention_days: int | None = None,
) -> Project:
    """`log_bodies` "" follows the organisation's default (LOG_BODIES); a project may only be stricter."""
    return create_project_in_transaction(
        name=name,
        business_unit=business_unit,
        allowed_models=allowed_models,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        log_bodies=log_bodies,
        log_retention_days=log_retention_days,
    )


# The `*_in_transaction` steps are for a service that applies the change inside its own
# transaction (approvals applies an approved request's effect with the decision): the same checks
# as the entry point, with plain `atomic` (a savepoint) where the entry point is durable.


@transaction.atomic
def create_project_in_transaction(
    *,
    name: str,
    business_unit: BusinessUnit,
    allowed_models: Iterable[str] = (),
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    log_bodies: str = "",
    log_retention_days: int | None = None,
) -> Project:
    project = Project(name=name.strip(), business_unit=business_unit, rpm_limit=rpm_limit, tpm_limit=tpm_limit)
    project.log_bodies = _checked_log_bodies(log_bodies)
    project.log_retention_days = _checked_retention(log_retention_days)
    _save(project)
    project.allowed_models.set(_models_by_name(allowed_models))
    audit.record(action="project.create", target=project, after=audit.snapshot(project, **_PROJECT))
    return project


@transaction.atomic(durable=True)
def update_project(
    *,
    project: Project,
    name: str | None = None,
    business_unit: BusinessUnit | None = None,
    allowed_models: Iterable[str] | None = None,
    rpm_limit: int | None = _UNSET,
    tpm_limit: int | None = _UNSET,
    log_bodies: str | None = None,
    log_retention_days: int | None = _UNSET,
) -> Project:
    """Change a project. The limits and `log_retention_days` may be set to None to remove them;
    `log_bodies` "" returns to the organisation's default (None leaves it as it is)."""
    before = audit.stored_snapshot(project, **_PROJECT)
    if name is not None:
        project.name = name.strip()
    if business_unit is not None:
        project.business_unit = business_unit
    if rpm_limit is not _UNSET:
        project.rpm_limit = rpm_limit
    if tpm_limit is not _UNSET:
        project.tpm_limit = tpm_limit
    if log_bodies is not None:
        project.log_bodies = _checked_log_bodies(log_bodies)
    if log_retention_days is not _UNSET:
        project.log_retention_days = _checked_retention(log_retention_days)
    _save(project)
    if allowed_models is not None:
        project.allowed_models.set(_models_by_name(allowed_models))
    audit.record(action="project.update", target=project, before=before, after=audit.snapshot(project, **_PROJECT))
    publish_catalog_change()
    return project


@transaction.atomic(durable=True)
def delete_project(*, project: Project) -> None:
    before = audit.stored_snapshot(project, **_PROJECT)
    audit.record_deletion(action="project.delete", target=project, delete=project.delete, before=before)
    publish_catalog_change()


@transaction.atomic(durable=True)
def add_member(*, project: Project, user: AbstractBaseUser, role: str = Membership.Role.MEMBER) -> Membership:
    return add_member_in_transaction(project=project, user=user, role=role)


@transaction.atomic
def add_member_in_transaction(
    *, project: Project, user: AbstractBaseUser, role: str = Membership.Role.MEMBER
) -> Membership:
    membership = _save(Membership(project=project, user=user, role=role))
    audit.record(action="membership.add", target=membership, after=audit.snapshot(membership))
    return membership


@transaction.atomic
def allow_model_in_transaction(*, project: Project, model: Model) -> None:
    """Add one model to a project's allow-list (no change if it is there already)."""
    before = audit.stored_snapshot(project, **_PROJECT)
    project.allowed_models.add(model)
    audit.record(action="project.update", target=project, before=before, after=audit.snapshot(project, **_PROJECT))
    publish_catalog_change()


def lock_project(*, project_id: int) -> None:
    """Lock the project's row until the caller's transaction ends (FOR NO KEY UPDATE): approvals
    decides one project's credit requests one after the other, so a monthly cap holds under
    concurrent requests, without blocking the rows that merely refer to the project (new requests,
    ledger entries, request logs). No lock on SQLite, whose writers queue anyway."""
    list(Project.objects.select_for_update(no_key=True).filter(pk=project_id).values_list("pk", flat=True))


@transaction.atomic(durable=True)
def change_member_role(*, membership: Membership, role: str) -> Membership:
    before = audit.stored_snapshot(membership)
    membership.role = role
    _save(membership)
    audit.record(action="membership.role.change", target=membership, before=before, after=audit.snapshot(membership))
    return membership


@transaction.atomic(durable=True)
def remove_member(*, membership: Membership) -> None:
    audit.record_deletion(action="membership.remove", target=membership, delete=membership.delete)


# --- providers ---


@transaction.atomic(durable=True)
def create_provider(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    api_key: str = "",
    approved: bool = False,
    api_version: str = "",
) -> Provider:
    provider = Provider(
        name=name.strip(), kind=kind, base_url=base_url.strip(), approved=approved, api_version=api_version.strip()
    )
    if api_key:
        provider.api_key_encrypted = crypto.encrypt_secret(api_key)
    _check_provider(provider)
    _save(provider)
    audit.record(action="provider.create", target=provider, after=audit.snapshot(provider))
    return provider


@transaction.atomic(durable=True)
def update_provider(
    *,
    provider: Provider,
    name: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    approved: bool | None = None,
    api_version: str | None = None,
) -> Provider:
    """Change a provider. A new `api_key` alone is recorded as `provider.secret.rotate`."""
    before = audit.stored_snapshot(provider)
    if name is not None:
        provider.name = name.strip()
    if base_url is not None:
        provider.base_url = base_url.strip()
    if api_key is not None:
        provider.api_key_encrypted = crypto.encrypt_secret(api_key) if api_key else ""
    if approved is not None:
        provider.approved = approved
    if api_version is not None:
        provider.api_version = api_version.strip()
    _check_provider(provider)
    _save(provider)
    after = audit.snapshot(provider)
    changed = audit.changed_fields(before, after)
    secret_only = api_key is not None and before is not None and changed <= {"api_key_encrypted"}
    action = "provider.secret.rotate" if secret_only else "provider.update"
    extra = {"api_key_changed": True} if api_key is not None else {}
    audit.record(action=action, target=provider, before=before, after={**(after or {}), **extra})
    publish_catalog_change()
    return provider


def _check_provider(provider: Provider) -> None:
    needs_url = provider.kind in {Provider.Kind.AZURE_OPENAI, Provider.Kind.OPENAI_COMPATIBLE}
    if needs_url and not provider.base_url:
        raise ValidationFailed(f"base_url is required for a provider of kind {provider.kind!r}.", field="base_url")
    if provider.kind == Provider.Kind.AZURE_OPENAI and not provider.api_version:
        provider.api_version = AZURE_DEFAULT_API_VERSION


@transaction.atomic(durable=True)
def delete_provider(*, provider: Provider) -> None:
    if provider.deployments.exists():
        raise ValidationFailed("This provider still serves deployments; remove them first.")
    audit.record_deletion(action="provider.delete", target=provider, delete=provider.delete)
    publish_catalog_change()


@transaction.atomic(durable=True)
def rotate_provider_secrets() -> int:
    """Re-encrypt every stored provider key under the current (first) encryption key."""
    providers = list(Provider.objects.select_for_update().exclude(api_key_encrypted=""))
    for provider in providers:
        provider.api_key_encrypted = crypto.rotate_secret(provider.api_key_encrypted, what=f"provider {provider.name}")
        provider.save(update_fields=["api_key_encrypted", "updated_at"])
        state = audit.snapshot(provider)
        audit.record(action="provider.secret.reencrypt", target=provider, before=state, after=state)
    return len(providers)


# --- models and deployments ---


MAX_TIMEOUT_SECONDS = 86_400  # a deployment's timeouts: a day at most (Infinity would never end a call)


@dataclass(frozen=True, kw_only=True)
class DeploymentSpec:
    provider: Provider
    upstream_model: str
    weight: int = 1
    priority: int = 0
    enabled: bool = True
    connect_timeout: float | None = None
    first_token_timeout: float | None = None
    idle_timeout: float | None = None
    total_timeout: float | None = None
    input_price: Decimal | None = None  # per million tokens, BILLING_CURRENCY
    output_price: Decimal | None = None
    cached_input_price: Decimal | None = None


_PRICES = ("input_price", "output_price", "cached_input_price")


@transaction.atomic(durable=True)
def create_model(
    *,
    name: str,
    deployments: Iterable[DeploymentSpec],
    description: str = "",
    context_window: int | None = None,
    default_max_tokens: int | None = None,
    fallbacks: Iterable[str] = (),
    enabled: bool = True,
) -> Model:
    model = _save(
        Model(
            name=name.strip(),
            description=description,
            context_window=context_window,
            default_max_tokens=default_max_tokens,
            enabled=enabled,
        )
    )
    model.fallbacks = _checked_fallbacks(model, fallbacks)
    model.save(update_fields=["fallbacks"])
    _replace_deployments(model=model, deployments=deployments)
    audit.record(action="model.create", target=model, after=_model_state(model))
    publish_catalog_change()
    return model


@transaction.atomic(durable=True)
def update_model(
    *,
    model: Model,
    description: str | None = None,
    context_window: int | None = _UNSET,
    default_max_tokens: int | None = _UNSET,
    fallbacks: Iterable[str] | None = None,
    enabled: bool | None = None,
    deployments: Iterable[DeploymentSpec] | None = None,
) -> Model:
    """Change a model. `context_window` and `default_max_tokens` may be set to None to clear them."""
    before = _model_state(Model.objects.get(pk=model.pk))
    if description is not None:
        model.description = description
    if context_window is not _UNSET:
        model.context_window = context_window
    if default_max_tokens is not _UNSET:
        model.default_max_tokens = default_max_tokens
    if fallbacks is not None:
        model.fallbacks = _checked_fallbacks(model, fallbacks)
    if enabled is not None:
        model.enabled = enabled
    _save(model)
    if deployments is not None:
        _replace_deployments(model=model, deployments=deployments)
    audit.record(action="model.update", target=model, before=before, after=_model_state(model))
    publish_catalog_change()
    return model


def _checked_fallbacks(model: Model, names: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(n.strip() for n in names))
    if model.name in wanted:
        raise ValidationFailed("A model cannot fall back to itself.", field="fallbacks")
    _models_by_name(wanted, field="fallbacks")  # raises naming unknown ones
    return wanted


def _replace_deployments(*, model: Model, deployments: Iterable[DeploymentSpec]) -> None:
    """Make the model's deployments exactly these. A deployment with the same provider and upstream
    name keeps its id (and so its health history); others are added or removed."""
    specs = list(deployments)
    if not specs:
        raise ValidationFailed("A model needs at least one deployment.", field="deployments")
    existing = {(d.provider_id, d.upstream_model): d for d in model.deployments.all()}
    kept: set[int] = set()
    for index, spec in enumerate(specs):
        upstream_model = spec.upstream_model.strip()
        if not upstream_model:
            raise ValidationFailed("upstream_model must not be empty.", field="deployments")
        if spec.weight < 0 or spec.priority < 0:
            raise ValidationFailed("weight and priority must be zero or more.", field="deployments")
        for name in ("connect_timeout", "first_token_timeout", "idle_timeout", "total_timeout"):
            value = getattr(spec, name)
            if value is not None and not (0 < value <= MAX_TIMEOUT_SECONDS):  # NaN fails too
                raise ValidationFailed(
                    f"{name} must be more than zero and at most {MAX_TIMEOUT_SECONDS:,} seconds.", field="deployments"
                )
        deployment = existing.get((spec.provider.pk, upstream_model)) or Deployment(
            model=model, provider=spec.provider, upstream_model=upstream_model
        )
        if deployment.pk in kept:
            raise ValidationFailed(
                f"Provider {spec.provider.name!r} serves {upstream_model!r} twice in this model.", field="deployments"
            )
        deployment.weight, deployment.priority, deployment.enabled = spec.weight, spec.priority, spec.enabled
        deployment.connect_timeout, deployment.first_token_timeout = spec.connect_timeout, spec.first_token_timeout
        deployment.idle_timeout, deployment.total_timeout = spec.idle_timeout, spec.total_timeout
        for name in _PRICES:
            setattr(deployment, name, _price(getattr(spec, name), field=f"deployments.{index}.{name}", column=name))
        _save(deployment)
        kept.add(deployment.pk)
    model.deployments.exclude(pk__in=kept).delete()


def _price(value: Any, *, field: str, column: str) -> Decimal | None:
    """A price per million tokens (None: no price) that fits its column, or ValidationFailed naming FIELD."""
    return None if value is None else money.parse_amount(value, field=field, column=Deployment._meta.get_field(column))


@transaction.atomic(durable=True)
def set_deployment_prices(
    *,
    deployment: Deployment,
    input_price: Decimal | None,
    output_price: Decimal | None,
    cached_input_price: Decimal | None = None,
) -> Deployment:
    """Set (or clear, with None) a deployment's prices per million tokens."""
    before = audit.stored_snapshot(deployment)
    for name, price in zip(_PRICES, (input_price, output_price, cached_input_price), strict=True):
        setattr(deployment, name, _price(price, field=name, column=name))
    _save(deployment)
    audit.record(action="deployment.prices.update", target=deployment, before=before, after=audit.snapshot(deployment))
    publish_catalog_change()
    return deployment


def check_model_health(*, model: Model) -> None:
    """Probe each of the model's deployments now and store the outcome (see gateway/probes.py)."""
    for deployment in model.deployments.select_related("provider"):
        result = probes.probe(deployment)
        health_state.record_check(
            deployment_id=deployment.id, ok=result.ok, latency_ms=result.latency_ms, error=result.error
        )


@transaction.atomic(durable=True)
def delete_model(*, model: Model) -> None:
    before = _model_state(Model.objects.get(pk=model.pk))
    audit.record_deletion(action="model.delete", target=model, delete=model.delete, before=before)
    publish_catalog_change()


# --- virtual keys ---


@dataclass(frozen=True)
class IssuedKey:
    key: VirtualKey
    secret: str  # shown to the caller once, never stored


@transaction.atomic(durable=True)
def create_virtual_key(
    *,
    project: Project,
    name: str,
    created_by: AbstractBaseUser | None = None,
    allowed_models: Iterable[str] = (),
    expires_at: datetime | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_streams: int | None = None,
) -> IssuedKey:
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.", field="expires_at")
    models = _models_by_name(allowed_models)
    project_models = set(project.allowed_models.values_list("name", flat=True))
    if outside := [m.name for m in models if m.name not in project_models]:
        raise ValidationFailed(
            f"A key's models must be a subset of the project's; not allowed for the project: {', '.join(outside)}",
            field="allowed_models",
        )
    secret = generate_secret(VIRTUAL_KEY_PREFIX)
    key = _save(
        VirtualKey(
            project=project,
            name=name.strip(),
            created_by=created_by,
            prefix=display_prefix(secret, VIRTUAL_KEY_PREFIX),
            key_hash=digest(secret),
            expires_at=expires_at,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            max_streams=max_streams,
        )
    )
    key.allowed_models.set(models)
    audit.record(action="key.create", target=key, after=audit.snapshot(key, **_KEY))
    return IssuedKey(key=key, secret=secret)


@transaction.atomic(durable=True)
def set_key_limits(
    *, key: VirtualKey, rpm_limit: int | None, tpm_limit: int | None, max_streams: int | None
) -> VirtualKey:
    """Set (None: remove) a key's requests and tokens per minute and its concurrent-stream cap."""
    before = audit.stored_snapshot(key, **_KEY)
    key.rpm_limit, key.tpm_limit, key.max_streams = rpm_limit, tpm_limit, max_streams
    _save(key)
    audit.record(action="key.update", target=key, before=before, after=audit.snapshot(key, **_KEY))
    publish_catalog_change()
    return key


@transaction.atomic(durable=True)
def revoke_key(*, key: VirtualKey) -> VirtualKey:
    """Revoke a key. Idempotent: a second revocation keeps the first time."""
    before = audit.stored_snapshot(key, **_KEY)
    if VirtualKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit.record(action="key.revoke", target=key, before=before, after=audit.stored_snapshot(key, **_KEY))
    key.refresh_from_db(fields=["revoked_at"])
    publish_catalog_change()
    return key


MAX_ROTATION_GRACE = timedelta(days=30)


@transaction.atomic(durable=True)
def rotate_key(
    *, key: VirtualKey, grace: timedelta, created_by: AbstractBaseUser | None = None, now: datetime | None = None
) -> IssuedKey:
    """Replace a key: a new key with the same name, models, limits and expiry, and the old one
    expiring after `grace` (0 to 30 days; never later than it would have expired anyway), so
    the clients that hold it can move over. A revoked or expired key cannot be rotated."""
    now = now or timezone.now()
    if not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise ValidationFailed("The grace period must be from 0 to 30 days.", field="grace")
    locked = VirtualKey.objects.select_for_update().get(pk=key.pk)
    if not locked.is_active(now):
        raise ValidationFailed("Only an active key can be rotated; this one is revoked or expired.", field="key")
    ends = now + grace
    if locked.expires_at is not None:
        ends = min(ends, locked.expires_at)
    secret = generate_secret(VIRTUAL_KEY_PREFIX)
    new_key = _save(
        VirtualKey(
            project_id=locked.project_id,
            name=locked.name,
            created_by=created_by,
            prefix=display_prefix(secret, VIRTUAL_KEY_PREFIX),
            key_hash=digest(secret),
            expires_at=locked.expires_at,
            rpm_limit=locked.rpm_limit,
            tpm_limit=locked.tpm_limit,
            max_streams=locked.max_streams,
        )
    )
    new_key.allowed_models.set(locked.allowed_models.all())
    before = audit.snapshot(locked, **_KEY)
    VirtualKey.objects.filter(pk=locked.pk).update(expires_at=ends)
    key.expires_at = ends
    audit.record(
        action="key.rotate",
        target=locked,
        before=before,
        after=(audit.stored_snapshot(locked, **_KEY) or {}) | {"replaced_by_id": new_key.pk},
    )
    publish_catalog_change()
    return IssuedKey(key=new_key, secret=secret)


@transaction.atomic(durable=True)
def delete_key(*, key: VirtualKey) -> None:
    before = audit.stored_snapshot(key, **_KEY)
    audit.record_deletion(action="key.delete", target=key, delete=key.delete, before=before)
    publish_catalog_change()


# --- admin tokens ---


@dataclass(frozen=True)
class IssuedToken:
    token: AdminToken
    secret: str


@transaction.atomic(durable=True)
def issue_admin_token(*, username: str) -> IssuedToken:
    """Create an admin token for USERNAME, creating that user as a superuser if missing."""
    if not username.strip():
        raise ValidationFailed("A username is required.", field="username")
    user, created = User.objects.get_or_create(
        username=username.strip(), defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif not (user.is_active and user.is_superuser):
        raise ValidationFailed(f"User {username!r} exists but is not an active superuser.", field="username")
    secret = generate_secret(ADMIN_TOKEN_PREFIX)
    token = AdminToken.objects.create(
        user=user, prefix=display_prefix(secret, ADMIN_TOKEN_PREFIX), token_hash=digest(secret)
    )
    audit.record(
        action="admin_token.create", target=token, after=audit.snapshot(token, extra={"user_created": created})
    )
    return IssuedToken(token=token, secret=secret)


@transaction.atomic(durable=True)
def revoke_admin_token(*, token: AdminToken) -> None:
    if token.revoked_at is None:
        before = audit.stored_snapshot(token)
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(action="admin_token.revoke", target=token, before=before, after=audit.snapshot(token))


# --- request logs (written in batches by the proxy's log buffer) ---


_FROM_OUTSIDE = ("model", "error_code", "user_agent")  # request-log text a client or an upstream chose


def record_request_logs(*, entries: list[dict[str, Any]]) -> int:
    """Insert a batch of request-log rows. Idempotent: a row whose request id exists is skipped.
    Not durable, and no savepoint: billing writes the debits in the caller's transaction.

    An entry's `bodies` is (policy, request, response[, secrets]) as the proxy saw them; they are
    rendered here, in the writer's thread, as the policy says (gateway/log_bodies.py). Every text
    and JSON value is scrubbed of known secrets and made storable (gateway/writable.py). The rows
    go in through gateway/bulk_insert.py, not model instances: this runs in a thread of the gateway
    process, where its CPU is taken from the event loop."""
    if not scrub.providers_loaded():  # a process whose proxy has not read them yet
        scrub.set_provider_keys(selectors.provider_api_keys())
    secrets = scrub.current()
    rows = []
    for entry in entries:
        fields = dict(entry)
        if isinstance(bodies := fields.pop("bodies", None), tuple):
            fields |= log_bodies.render(*bodies)
        for name, value in fields.items():
            if isinstance(value, str):
                fields[name] = writable.text(value)
            elif isinstance(value, list | dict) and value:
                fields[name] = writable.json_value(value)
        for name in _FROM_OUTSIDE:  # what a client or an upstream chose may quote a secret
            if isinstance(fields.get(name), str):
                fields[name] = secrets.text(fields[name])
        if fields.get("attempts"):
            fields["attempts"] = orjson.loads(secrets.bytes(orjson.dumps(fields["attempts"])))
        for name in ("input_tokens", "output_tokens", "cached_tokens"):
            fields[name] = writable.count(fields.get(name, 0))
        fields["cost"] = writable.money(fields.get("cost"), places=8, digits=16)
        rows.append(fields)
    bulk_insert.insert_ignoring_conflicts(model=RequestLog, rows=rows)
    return len(rows)


def notify(
    *,
    users: Iterable[AbstractBaseUser],
    kind: str,
    title: str,
    body: str = "",
    link: str = "",
    project_id: int | None = None,
) -> int:
    """Leave a notification for each user (the portal lists them). Returns how many were written."""
    rows = [
        Notification(user=user, kind=kind[:40], title=title[:200], body=body, link=link[:500], project_id=project_id)
        for user in {u.pk: u for u in users}.values()
    ]
    Notification.objects.bulk_create(rows)
    return len(rows)


def mark_notifications_read(*, user: AbstractBaseUser) -> int:
    """Mark every unread notification of `user` read (the portal's "mark all read"). Returns how many."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


# --- request-log policy and retention ---

MAX_LOG_RETENTION_DAYS = 36_500


def _checked_log_bodies(policy: str) -> str:
    """The project's own body policy ("" = the organisation's default), if it is no looser than that."""
    policy = (policy or "").strip()
    if not policy:
        return ""
    if policy not in LOG_BODIES_STRICTNESS:
        raise ValidationFailed(f"log_bodies must be one of: {', '.join(LOG_BODIES_STRICTNESS)}.", field="log_bodies")
    default = settings.LOG_BODIES
    if LOG_BODIES_STRICTNESS.index(policy) < LOG_BODIES_STRICTNESS.index(default):
        allowed = ", ".join(LOG_BODIES_STRICTNESS[LOG_BODIES_STRICTNESS.index(default) :])
        raise ValidationFailed(
            f"The organisation's default for request-log bodies is {default!r} (LOG_BODIES) and a project may only "
            f"be stricter: choose {allowed}, or leave it empty for the default.",
            field="log_bodies",
        )
    return policy


def _checked_retention(days: int | None) -> int | None:
    if days is not None and not 1 <= days <= MAX_LOG_RETENTION_DAYS:
        raise ValidationFailed(
            f"log_retention_days must be between 1 and {MAX_LOG_RETENTION_DAYS}, or empty for the default.",
            field="log_retention_days",
        )
    return days


def purge_request_logs(*, batch_size: int = 5000, now: datetime | None = None) -> int:
    """Delete request-log rows older than their project's retention (`log_retention_days`, else
    LOG_RETENTION_DAYS; rows of no project, or of a deleted one, keep the default). Deletes in
    batches of `batch_size`, each in its own short transaction, so no long lock is ever held and
    the log writer keeps writing. Idempotent. Returns how many rows were deleted."""
    if batch_size < 1:
        raise ValidationFailed("batch_size must be at least 1.", field="batch_size")
    now = now or timezone.now()
    own = dict(Project.objects.exclude(log_retention_days=None).values_list("id", "log_retention_days"))
    by_days: dict[int, list[int]] = defaultdict(list)
    for project_id, days in own.items():
        by_days[days].append(project_id)
    deleted = 0
    for days, project_ids in sorted(by_days.items()):
        deleted += _delete_older(Q(project_id__in=project_ids), before=_cutoff(now, days), batch_size=batch_size)
    default = Q(project__isnull=True) | ~Q(project_id__in=list(own)) if own else Q()
    deleted += _delete_older(default, before=_cutoff(now, settings.LOG_RETENTION_DAYS), batch_size=batch_size)
    return deleted


def _cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=min(days, MAX_LOG_RETENTION_DAYS))


def _delete_older(rows: Q, *, before: datetime, batch_size: int) -> int:
    older = RequestLog.objects.filter(rows, created_at__lt=before).order_by().values_list("pk", flat=True)
    deleted = 0
    while True:
        with transaction.atomic(durable=True):  # one batch, one transaction: never one huge delete
            ids = list(older[:batch_size])
            if not ids:
                return deleted
            deleted += RequestLog.objects.filter(pk__in=ids).delete()[0]


# --- guardrail policies ---


def set_guardrail_policy(*, project: Project | None, data: Mapping[str, Any] | None) -> GuardrailPolicy | None:
    """Set the organisation's policy (project None: the floor and the default) or a project's own.
    `data` None removes a project's own policy (the organisation's then applies)."""
    if data is None:
        if project is None:
            raise ValidationFailed("The organisation's policy cannot be removed; set its checks to off instead.")
        with transaction.atomic(durable=True):
            if (own := GuardrailPolicy.objects.select_for_update().filter(project=project).first()) is not None:
                audit.record_deletion(action="guardrail_policy.delete", target=own, delete=own.delete)
        publish_catalog_change()
        return None
    policy = guardrail_policy.validate(data)
    scope = GuardrailPolicy.Scope.ORGANISATION if project is None else GuardrailPolicy.Scope.PROJECT
    with transaction.atomic(durable=True):
        row = GuardrailPolicy.objects.select_for_update().filter(scope=scope, project=project).first()
        row = row or GuardrailPolicy(scope=scope, project=project)
        before = audit.snapshot(row) if row.pk else None
        row.input, row.output, row.denylist = policy.input, policy.output, list(policy.denylist)
        row.restore_redactions, row.max_input_tokens = policy.restore_redactions, policy.max_input_tokens
        row.classifier_model, row.classifier_kind = policy.classifier_model, policy.classifier_kind
        row.denied_betas = list(policy.denied_betas)
        row.save()
        action = "guardrail_policy.update" if before is not None else "guardrail_policy.create"
        audit.record(action=action, target=row, before=before, after=audit.snapshot(row))
    publish_catalog_change()
    return row
