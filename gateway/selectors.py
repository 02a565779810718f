"""Reads of the core domain, for the proxy's caches, the admin API and other apps."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections, connection
from django.db.models import BooleanField, F, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from gateway import crypto, guardrail_policy, health_state, log_bodies
from gateway.errors import ValidationFailed
from gateway.models import (
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
    guardrails: guardrail_policy.Rules = guardrail_policy.NO_RULES  # the project's effective policy

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
        guardrails=guardrail_policy.Rules.of(
            guardrail_policies(project=key.project)[2], name=f"project '{key.project.name}'"
        ),
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


def provider_api_keys() -> list[str]:
    """Every provider's decrypted API key, in use or not: the secrets answers and logs are scrubbed of."""
    keys = []
    for provider in Provider.objects.exclude(api_key_encrypted="").only("name", "api_key_encrypted"):
        with contextlib.suppress(crypto.SecretDecryptionError):  # unusable, so never sent anywhere either
            keys.append(crypto.decrypt_secret(provider.api_key_encrypted, what=f"provider {provider.name!r}"))
    return keys


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


# --- request logs (the portal's log browser and the management API) ---

REQUEST_LOG_PAGE_MAX = 500
_BODY_SEARCH = "to_tsvector('simple'::regconfig, request_body || ' ' || response_body) @@ plainto_tsquery('simple', %s)"


@dataclass(frozen=True)
class LogPage:
    rows: list[RequestLog]
    next_cursor: str | None  # None: this is the last page
    newer_cursor: str | None = None  # for `newer`: None when no newer rows were there (the newest page)


def request_log_page(
    *,
    project_id: int | None = None,
    project_ids: Iterable[int] | None = None,
    key_id: int | None = None,
    model: str | None = None,
    status: int | str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    text: str | None = None,
    cursor: str | None = None,
    newer: str | None = None,
    limit: int = 50,
) -> LogPage:
    """Request-log rows, newest first, without their bodies (see `request_log`).

    `project_ids` narrows to those projects (the portal passes the ones its user may see).

    `status` is a status code, "ok" (below 400) or "error" (400 and above); `start` is included,
    `end` excluded; `text` searches the stored bodies (PostgreSQL full-text search with the index
    of migration 0007, all the words in any order; elsewhere a substring); its cost grows with
    the rows that match within the other filters. Pages are keyset pages on (created_at, id):
    `cursor` is the previous page's `next_cursor`, and a page costs the same at row ten million
    as at row ten. `newer` (instead of `cursor`) is a page's `newer_cursor`: the page of rows just
    newer than it, still newest first. Invalid input raises ValidationFailed naming the field."""
    if not 1 <= limit <= REQUEST_LOG_PAGE_MAX:
        raise ValidationFailed(f"limit must be between 1 and {REQUEST_LOG_PAGE_MAX}.", field="limit")
    rows = RequestLog.objects.defer("request_body", "response_body").order_by("-created_at", "-id")
    if project_id is not None:
        rows = rows.filter(project_id=project_id)
    if project_ids is not None:
        rows = rows.filter(project_id__in=list(project_ids))
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if model:
        rows = rows.filter(model=model)
    rows = _status_filter(rows, status)
    if start is not None and end is not None and start >= end:
        raise ValidationFailed("end must be after start.", field="end")
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    if text and text.strip():
        rows = _body_search(rows, text.strip())
    if cursor:
        at, last_id = _decode_cursor(cursor)
        # (created_at, id) < (at, last_id), written so an index on created_at bounds the scan
        rows = rows.filter(Q(created_at__lt=at) | Q(id__lt=last_id), created_at__lte=at)
    elif newer:
        at, last_id = _decode_cursor(newer)
        rows = rows.filter(Q(created_at__gt=at) | Q(id__gt=last_id), created_at__gte=at).reverse()
        found = list(rows[: limit + 1])
        page = found[:limit][::-1]
        return LogPage(
            rows=page,
            next_cursor=_encode_cursor(page[-1]) if page else None,
            newer_cursor=_encode_cursor(page[0]) if len(found) > limit else None,
        )
    found = list(rows[: limit + 1])
    page = found[:limit]
    return LogPage(
        rows=page,
        next_cursor=_encode_cursor(page[-1]) if len(found) > limit else None,
        newer_cursor=_encode_cursor(page[0]) if cursor and page else None,
    )


def list_keys_of_projects(*, project_ids: Iterable[int]) -> QuerySet[VirtualKey]:
    """The keys of these projects (the log browser's key filter), by project then name."""
    return VirtualKey.objects.filter(project_id__in=list(project_ids)).order_by("project_id", "name", "id")


def request_log(*, request_id: str) -> RequestLog | None:
    """One request-log row with its stored bodies, or None."""
    return RequestLog.objects.filter(request_id=request_id).first()


def _status_filter(rows: QuerySet[RequestLog], status: int | str | None) -> QuerySet[RequestLog]:
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    match status:
        case None | "":
            return rows
        case int() if 100 <= status <= 599:
            return rows.filter(status_code=status)
        case "ok":
            return rows.filter(status_code__lt=400)
        case "error":
            return rows.filter(status_code__gte=400)
    raise ValidationFailed('status must be a status code (100-599), "ok" or "error".', field="status")


def _body_search(rows: QuerySet[RequestLog], text: str) -> QuerySet[RequestLog]:
    if connection.vendor != "postgresql":
        return rows.filter(Q(request_body__icontains=text) | Q(response_body__icontains=text))
    # The same expression as the GIN index of migration 0007, so the index serves it.
    matching = rows.filter(RawSQL(_BODY_SEARCH, [text], output_field=BooleanField()))  # noqa: S611 (a parameter)
    # Order by an expression no index has, so the plan starts from the GIN index's matches (cost:
    # the matches within the other filters), never from walking the newest rows and computing
    # every row's tsvector until a page is full: the planner guesses any word outside its
    # statistics at 0.5 % of the rows, which took seconds for a rare word in 2M rows.
    return matching.order_by((F("created_at") + Value(timedelta(0))).desc(), "-id")


def _encode_cursor(row: RequestLog) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_text, id_text = raw.split("|")
        at, last_id = datetime.fromisoformat(at_text), int(id_text)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        at = None
    if at is None or at.tzinfo is None:
        raise ValidationFailed("cursor is not valid: pass the next_cursor of a previous page.", field="cursor")
    return at, last_id


# --- guardrail policies ---


def _policy_of(row: GuardrailPolicy) -> guardrail_policy.Policy:
    return guardrail_policy.Policy(
        input=dict(row.input),
        output=dict(row.output),
        denylist=tuple(row.denylist),
        restore_redactions=row.restore_redactions,
        max_input_tokens=row.max_input_tokens,
        classifier_model=row.classifier_model,
        classifier_kind=row.classifier_kind,
        denied_betas=tuple(row.denied_betas),
    )


def guardrail_policies(
    *, project: Project | None
) -> tuple[guardrail_policy.Policy | None, guardrail_policy.Policy, guardrail_policy.Policy]:
    """(the project's own policy or None, the organisation's floor, the effective policy)."""
    rows = GuardrailPolicy.objects.filter(Q(scope=GuardrailPolicy.Scope.ORGANISATION) | Q(project=project))
    floor, own = guardrail_policy.DEFAULT_FLOOR, None
    for row in rows if project is not None else rows.filter(scope=GuardrailPolicy.Scope.ORGANISATION):
        if row.scope == GuardrailPolicy.Scope.ORGANISATION:
            floor = _policy_of(row)
        else:
            own = _policy_of(row)
    return own, floor, guardrail_policy.effective(floor, own)


# --- the portal's pages: keys, notifications, the model catalogue ---

KEY_EXPIRING_SOON = timedelta(days=7)


def key_status(key: VirtualKey, *, now: datetime) -> str:
    """ "revoked", "expired", "expiring" (within a week, e.g. the old key of a rotation) or "active"."""
    if key.revoked_at is not None:
        return "revoked"
    if key.is_expired(now):
        return "expired"
    if key.expires_at is not None and key.expires_at - now <= KEY_EXPIRING_SOON:
        return "expiring"
    return "active"


def project_keys(*, project: Project, now: datetime | None = None) -> list[VirtualKey]:
    """A project's keys, newest first, each with `status` (see key_status), `last_used_at` (its
    newest request-log row, read through the (key, created_at) index), its creator and its own
    models (empty: every model of the project). Three queries however many keys."""
    now = now or timezone.now()
    last_used = RequestLog.objects.filter(key_id=OuterRef("pk")).order_by("-created_at", "-id").values("created_at")
    keys = list(
        project.keys.select_related("created_by")
        .prefetch_related(Prefetch("allowed_models", queryset=Model.objects.order_by("name")))
        .annotate(last_used_at=Subquery(last_used[:1]))
        .order_by("-created_at", "-id")
    )
    for key in keys:
        key.status = key_status(key, now=now)
    return keys


def member_projects(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """The projects a person works with: those they are a member of and those of the units they
    manage (administrators see every project, but their dashboard shows only these)."""
    if not user.is_authenticated:
        return Project.objects.none()
    return (
        Project.objects.select_related("business_unit")
        .filter(
            Q(id__in=Membership.objects.filter(user=user).values("project_id"))
            | Q(business_unit__in=BusinessUnit.objects.filter(managers=user).values("id"))
        )
        .order_by("name", "id")
    )


def notifications_for(*, user: AbstractBaseUser, limit: int = 8) -> tuple[list[Notification], int]:
    """A person's latest notifications, unread first, and how many are unread."""
    rows = Notification.objects.filter(user=user)
    latest = list(rows.order_by(F("read_at").desc(nulls_first=True), "-created_at", "-id")[:limit])
    return latest, rows.filter(read_at__isnull=True).count()


@dataclass(frozen=True)
class CatalogueEntry:
    """One approved model as the portal's catalogue shows it. Prices (per million tokens) are those
    of the deployment tried first; `health` is the best state among its approved deployments
    ("healthy", "degraded", or "open" when every circuit is open)."""

    model: Model
    providers: list[str]  # the kinds of provider that serve it, as short labels ("OpenAI-compatible")
    input_price: Decimal | None
    output_price: Decimal | None
    cached_input_price: Decimal | None
    health: str
    last_error: str
    projects: list[Project]  # the user's projects that may use it


HEALTH_ORDER = {"healthy": 0, "degraded": 1, "open": 2}


def approved_catalogue(*, user: AbstractBaseUser) -> list[CatalogueEntry]:
    """Enabled models with at least one enabled deployment on an approved provider, with the
    user's visible projects allowed to use each. Three queries and one cache read."""
    serving = (
        Deployment.objects.filter(enabled=True, provider__approved=True)
        .select_related("provider")
        .order_by("priority", "id")
    )
    models = list(
        Model.objects.filter(enabled=True, deployments__in=serving)
        .distinct()
        .order_by("name")
        .prefetch_related(
            Prefetch("deployments", queryset=serving, to_attr="serving"),
            Prefetch("projects", queryset=visible_projects(user=user), to_attr="usable_by"),
        )
    )
    health = health_state.deployment_health(deployment_ids=[d.id for m in models for d in m.serving])
    entries = []
    for model in models:
        first = model.serving[0]
        states = [health[d.id] for d in model.serving]
        best = min(states, key=lambda h: HEALTH_ORDER.get(h.get("state", "healthy"), 1))
        worst_error = next((h.get("last_error") for h in states if h.get("last_error")), "")
        entries.append(
            CatalogueEntry(
                model=model,
                providers=sorted({d.provider.get_kind_display().split(" (")[0] for d in model.serving}),
                input_price=first.input_price,
                output_price=first.output_price,
                cached_input_price=first.cached_input_price,
                health=best.get("state", "healthy"),
                last_error=worst_error or "",
                projects=model.usable_by,
            )
        )
    return entries


# --- who may see what (the portal's permission rules live here, not in its templates) ---


class NotVisible(ValidationFailed):
    """The object does not exist or the user may not see it; pages answer 404 either way, so
    a developer cannot learn that another team's project exists."""


def is_administrator(user: AbstractBaseUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_superuser)


def visible_projects(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """The projects a user may see: administrators all; managers their units' projects; everyone
    the projects they are a member of."""
    projects = Project.objects.select_related("business_unit").order_by("name", "id")
    if is_administrator(user):
        return projects
    if not user.is_authenticated:
        return projects.none()
    return projects.filter(
        Q(id__in=Membership.objects.filter(user=user).values("project_id"))
        | Q(business_unit__in=BusinessUnit.objects.filter(managers=user).values("id"))
    )


def get_visible_project(*, user: AbstractBaseUser, project_id: int) -> Project:
    project = visible_projects(user=user).filter(id=project_id).first()
    if project is None:
        raise NotVisible("No such project.", field="project")
    return project


def project_role(*, user: AbstractBaseUser, project: Project) -> str | None:
    """How the user stands in the project: "owner" or "member" (a membership), else "manager" (of
    its unit) or "admin"; None if they may not see it."""
    role = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    if role:
        return role
    if project.business_unit.managers.filter(pk=user.pk).exists():
        return "manager"
    if is_administrator(user):
        return "admin"
    return None


def can_manage_keys(*, user: AbstractBaseUser, project: Project) -> bool:
    """Members create and revoke keys; managers and administrators too (they may need to stop a
    leaked key at once)."""
    return project_role(user=user, project=project) is not None


def managed_business_units(*, user: AbstractBaseUser) -> QuerySet[BusinessUnit]:
    """The units whose reports a user may read: administrators all, managers their own."""
    if is_administrator(user):
        return BusinessUnit.objects.order_by("name")
    if not user.is_authenticated:
        return BusinessUnit.objects.none()
    return BusinessUnit.objects.filter(managers=user).order_by("name")


def get_managed_business_unit(*, user: AbstractBaseUser, unit_id: int) -> BusinessUnit:
    unit = managed_business_units(user=user).filter(id=unit_id).first()
    if unit is None:
        raise NotVisible("No such business unit.", field="business_unit")
    return unit


def get_visible_key(*, user: AbstractBaseUser, project: Project, key_id: int) -> VirtualKey:
    """A key of a project the user may see (call get_visible_project first)."""
    key = VirtualKey.objects.filter(project=project, id=key_id).first()
    if key is None:
        raise NotVisible("No such key.", field="key")
    return key


# --- for the other apps (billing, approvals, portal), which never import the core's models ---
#
# They read the core through these functions. Most return plain values; a few return the core's
# instances or querysets where the caller hands them to a core service, a Django form or the admin,
# or composes them into its own query (a subquery of its rows), and say so.

OWNER_ROLE: str = Membership.Role.OWNER  # a project's owner (Membership.Role), for add_member and comparisons


def provider_kinds() -> list[tuple[str, str]]:
    """The kinds of provider, as (value, label) choices in their declared order (a price list names them)."""
    return list(Provider.Kind.choices)


def get_project(*, project_id: int) -> Project | None:
    """The project with its business unit (one query), or None. An instance: billing writes ledger
    entries and alerts for it and reads its unit's name."""
    return Project.objects.select_related("business_unit").filter(pk=project_id).first()


def get_model(*, model_id: int) -> Model | None:
    """The model with this id, or None. An instance: an access request refers to it."""
    return Model.objects.filter(pk=model_id).first()


def project_name_of(*, project_id: Any) -> Subquery:
    """The name of the project `project_id` (an OuterRef of the caller's query) as a subquery: the
    ledger's admin sorts entries by project name without joining (an entry outlives its project)."""
    return Subquery(Project.objects.filter(pk=project_id).values("name")[:1])


def project_name_taken(*, business_unit: BusinessUnit, name: str) -> bool:
    """Whether the unit has a project of this name, ignoring case (a new project must not repeat one)."""
    return Project.objects.filter(business_unit=business_unit, name__iexact=name).exists()


def projects_without_member(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Every project the user is not a member of, with its unit, by unit name then name (the
    directory a newcomer picks a project to join from)."""
    mine = Membership.objects.filter(user=user).values("project_id")
    return Project.objects.exclude(id__in=mine).select_related("business_unit").order_by("business_unit__name", "name")


def served_models() -> QuerySet[Model]:
    """Enabled models served by at least one enabled deployment of an approved provider, by name."""
    return (
        Model.objects.filter(enabled=True, deployments__enabled=True, deployments__provider__approved=True)
        .distinct()
        .order_by("name")
    )


def list_deployments() -> QuerySet[Deployment]:
    """Every deployment with its model and provider, by model name. Instances: billing's price list
    passes them to services.set_deployment_prices and prints them."""
    return Deployment.objects.select_related("model", "provider").order_by("model__name", "id")


def is_member(*, project_id: int, user_id: int) -> bool:
    """Whether the user is a member (any role) of the project."""
    return Membership.objects.filter(project_id=project_id, user_id=user_id).exists()


def is_project_owner(*, project_id: int, user_id: int) -> bool:
    return Membership.objects.filter(project_id=project_id, user_id=user_id, role=OWNER_ROLE).exists()


def manages_unit(*, user_id: int, unit_id: int | None) -> bool:
    """Whether the user is one of the business unit's managers."""
    return BusinessUnit.objects.filter(id=unit_id, managers=user_id).exists()


def project_owners(*, project_id: int | None) -> QuerySet[AbstractBaseUser]:
    """The active users who own the project (a queryset: approvals narrows and orders it)."""
    return get_user_model().objects.filter(
        memberships__project_id=project_id, memberships__role=OWNER_ROLE, is_active=True
    )


def owner_memberships(*, project: Any) -> QuerySet[Membership]:
    """The owner memberships of `project` (an id, or an OuterRef of the caller's query): approvals
    builds its "has an owner" and "waits for this owner" subqueries on them."""
    return Membership.objects.filter(project=project, role=OWNER_ROLE)


def unit_manager_links(*, unit_id: Any) -> QuerySet[Any]:
    """The (business unit, manager) rows of `unit_id` (an id, or an OuterRef of the caller's
    query): approvals builds its "manages the unit" subqueries on them (`user_id`, `user__...`)."""
    return BusinessUnit.managers.through.objects.filter(businessunit_id=unit_id)


def people_concerned(
    *, business_unit_id: int, owners_of_project_id: int | None = None, user_id: int | None = None
) -> list[AbstractBaseUser]:
    """The active managers of the business unit, the owners of a project and one more user (each
    optional but the unit), once each, by id: the people a budget alert goes to."""
    concerned = Q(managed_units__id=business_unit_id)
    if owners_of_project_id is not None:
        concerned |= Q(memberships__project_id=owners_of_project_id, memberships__role=OWNER_ROLE)
    if user_id is not None:
        concerned |= Q(pk=user_id)
    return list(get_user_model().objects.filter(concerned, is_active=True).distinct().order_by("pk"))
