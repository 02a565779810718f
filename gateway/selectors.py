"""Reads of the core domain, for the proxy's caches, the admin API and other apps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections
from django.db.models import Prefetch, QuerySet

from gateway import crypto, health_state, log_bodies
from gateway.models import AdminToken, BusinessUnit, Deployment, Membership, Model, Project, Provider, VirtualKey
from gateway.secrets_format import digest, digests_match

# --- snapshots the proxy caches (plain, immutable; no ORM objects cross into async code) ---


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    id: int
    prefix: str
    project_id: int
    business_unit_id: int
    created_by_id: int | None
    allowed_models: frozenset[str]  # effective: the project's list, narrowed by the key's own
    expires_at: datetime | None
    revoked: bool
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_streams: int | None = None
    project_rpm_limit: int | None = None
    project_tpm_limit: int | None = None
    log_bodies: str = "metadata"  # effective: the organisation's default, or the project's if stricter

    def is_active(self, at: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > at)


@dataclass(frozen=True, slots=True)
class DeploymentSnapshot:
    id: int
    provider_id: int
    provider_name: str
    provider_kind: str
    provider_approved: bool
    base_url: str
    api_key: str = field(default="", repr=False)  # decrypted; lives only in memory, never printed
    api_version: str = ""
    upstream_model: str = ""
    weight: int = 1
    priority: int = 0
    connect_timeout: float | None = None
    first_token_timeout: float | None = None
    idle_timeout: float | None = None
    total_timeout: float | None = None
    input_price: Decimal | None = None  # per million tokens
    output_price: Decimal | None = None
    cached_input_price: Decimal | None = None

    @property
    def priced(self) -> bool:
        return self.input_price is not None and self.output_price is not None


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    name: str
    enabled: bool
    context_window: int | None
    created: int
    deployments: tuple[DeploymentSnapshot, ...]
    fallbacks: tuple[str, ...] = ()
    default_max_tokens: int | None = None


def _closing_connections(func):  # type: ignore[no-untyped-def]
    """Loaders run in a worker thread under sync_to_async; give the connection back to the pool."""

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@_closing_connections
def key_snapshot(*, secret: str) -> KeySnapshot | None:
    """The key presented by a client, or None when no key has that secret."""
    hashed = digest(secret)
    key = (
        VirtualKey.objects.select_related("project")
        .prefetch_related("allowed_models", "project__allowed_models")
        .filter(key_hash=hashed)
        .first()
    )
    if key is None or not digests_match(key.key_hash, hashed):
        return None
    project_models = {m.name for m in key.project.allowed_models.all()}
    own = {m.name for m in key.allowed_models.all()}
    return KeySnapshot(
        id=key.id,
        prefix=key.prefix,
        project_id=key.project_id,
        business_unit_id=key.project.business_unit_id,
        created_by_id=key.created_by_id,
        allowed_models=frozenset(project_models & own if own else project_models),
        expires_at=key.expires_at,
        revoked=key.revoked_at is not None,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        max_streams=key.max_streams,
        project_rpm_limit=key.project.rpm_limit,
        project_tpm_limit=key.project.tpm_limit,
        log_bodies=log_bodies.effective(key.project.log_bodies),
    )


@_closing_connections
def model_catalog() -> dict[str, ModelSnapshot]:
    """Every model with its enabled deployments and their providers' decrypted keys."""
    deployments = Deployment.objects.filter(enabled=True).select_related("provider").order_by("id")
    catalog: dict[str, ModelSnapshot] = {}
    for model in Model.objects.prefetch_related(Prefetch("deployments", queryset=deployments)):
        catalog[model.name] = ModelSnapshot(
            name=model.name,
            enabled=model.enabled,
            context_window=model.context_window,
            created=int(model.created_at.timestamp()),
            deployments=tuple(_deployment_snapshot(d) for d in model.deployments.all()),
            fallbacks=tuple(model.fallbacks or ()),
            default_max_tokens=model.default_max_tokens,
        )
    return catalog


def _deployment_snapshot(deployment: Deployment) -> DeploymentSnapshot:
    provider = deployment.provider
    api_key = ""
    if provider.api_key_encrypted:
        api_key = crypto.decrypt_secret(provider.api_key_encrypted, what=f"the API key of provider {provider.name!r}")
    return DeploymentSnapshot(
        id=deployment.id,
        provider_id=provider.id,
        provider_name=provider.name,
        provider_kind=provider.kind,
        provider_approved=provider.approved,
        base_url=provider.base_url,
        api_key=api_key,
        api_version=provider.api_version,
        upstream_model=deployment.upstream_model,
        weight=deployment.weight,
        priority=deployment.priority,
        connect_timeout=deployment.connect_timeout,
        first_token_timeout=deployment.first_token_timeout,
        idle_timeout=deployment.idle_timeout,
        total_timeout=deployment.total_timeout,
        input_price=deployment.input_price,
        output_price=deployment.output_price,
        cached_input_price=deployment.cached_input_price,
    )


# --- admin tokens ---


def user_for_admin_token(*, secret: str) -> AbstractBaseUser | None:
    hashed = digest(secret)
    token = AdminToken.objects.select_related("user").filter(token_hash=hashed, revoked_at__isnull=True).first()
    if token is None or not digests_match(token.token_hash, hashed):
        return None
    user = token.user
    return user if user.is_active and user.is_superuser else None


# --- lists for the admin API and pages ---


def list_projects() -> QuerySet[Project]:
    return Project.objects.select_related("business_unit").prefetch_related("allowed_models")


def list_providers() -> QuerySet[Provider]:
    return Provider.objects.all()


def list_models() -> QuerySet[Model]:
    return Model.objects.prefetch_related(Prefetch("deployments", queryset=Deployment.objects.order_by("id")))


def list_keys(*, project: Project) -> QuerySet[VirtualKey]:
    return project.keys.prefetch_related("allowed_models")


def list_business_units() -> QuerySet[BusinessUnit]:
    return BusinessUnit.objects.all()


def list_members(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("id")


def list_all_keys() -> QuerySet[VirtualKey]:
    return VirtualKey.objects.prefetch_related("allowed_models")


def user_by_id_or_username(*, user: int | str) -> AbstractBaseUser | None:
    """The user with this id (an int) or this username (a str), or None."""
    User = get_user_model()
    lookup = {"pk": user} if isinstance(user, int) else {User.USERNAME_FIELD: user}
    return User.objects.filter(**lookup).first()


def model_health(*, model: Model) -> list[dict]:
    """Each deployment of the model with its last known health (see gateway/health_state.py)."""
    deployments = list(model.deployments.select_related("provider").order_by("priority", "id"))
    health = health_state.deployment_health(deployment_ids=[d.id for d in deployments])
    return [
        {
            "deployment": d.id,
            "provider": d.provider_id,
            "provider_name": d.provider.name,
            "upstream_model": d.upstream_model,
            "priority": d.priority,
            "weight": d.weight,
            "enabled": d.enabled,
            **health[d.id],
        }
        for d in deployments
    ]
