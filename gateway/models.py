"""Core domain tables: business units, projects, providers, models, keys, admin tokens."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from gateway import netpolicy


def validate_http_url(value: str) -> None:
    """An http(s) URL with a host. Unlike URLValidator, hosts without a dot are fine
    (`http://vllm:8000/v1`, `http://ollama:11434` are how self-hosted servers are reached)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http:// or https:// URL with a host name.", code="invalid")
    if parts.username or parts.password:
        raise ValidationError("Put credentials in the API key, not in the URL.", code="invalid")
    # An IP-literal host, by the rules connections are checked by (gateway/netpolicy.py).
    if (address := netpolicy.parse_address(parts.hostname)) is not None and (
        reason := netpolicy.refusal(address)
    ) is not None:
        raise ValidationError(
            f"{address} is {reason}; the gateway does not connect to it"
            + ("." if "metadata" in reason else " unless UPSTREAM_ALLOW_PRIVATE_NETWORKS is on."),
            code="forbidden_address",
        )


public_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$",
    "Use letters, digits and . _ : / @ - (at most 128 characters, starting with a letter or digit).",
)


class BusinessUnit(models.Model):
    name = models.CharField(max_length=120, unique=True)
    managers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="managed_units")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LogBodies(models.TextChoices):
    """What the request log keeps of bodies, from the least strict to the strictest."""

    FULL = "full", "Full bodies"
    REDACTED = "redacted", "Bodies with PII and secrets redacted"
    METADATA = "metadata", "Metadata only (no bodies)"


LOG_BODIES_STRICTNESS = [LogBodies.FULL, LogBodies.REDACTED, LogBodies.METADATA]


class Project(models.Model):
    name = models.CharField(max_length=120)
    business_unit = models.ForeignKey(BusinessUnit, on_delete=models.PROTECT, related_name="projects")
    allowed_models = models.ManyToManyField("gateway.Model", blank=True, related_name="projects")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="gateway.Membership", related_name="projects")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty: none.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute; empty: none.")
    log_bodies = models.CharField(
        max_length=10,
        choices=LogBodies.choices,
        blank=True,
        help_text="Empty: the organisation's default (LOG_BODIES). A project may only be stricter than it.",
    )
    log_retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days request logs are kept; empty: LOG_RETENTION_DAYS."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["business_unit", "name"], name="project_name_unique_per_unit")]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        AZURE_OPENAI = "azure_openai", "Azure OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama, llama.cpp, TGI)"
        DEMO = "demo", "Demo (built in, answers offline)"

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.CharField(max_length=500, blank=True, validators=[validate_http_url])
    api_version = models.CharField(
        max_length=40, blank=True, help_text="Azure OpenAI: the api-version query parameter (e.g. 2024-10-21)."
    )
    # Fernet token (see gateway/crypto.py); never the plain key.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    approved = models.BooleanField(default=False, help_text="Set by governance: only approved providers serve traffic.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)


class Model(models.Model):
    """A public model name that clients ask for, served by one or more deployments."""

    name = models.CharField(max_length=128, unique=True, validators=[public_name_validator])
    description = models.CharField(max_length=300, blank=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    default_max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sent when a request sets none and the provider requires it (Anthropic)."
    )
    fallbacks = models.JSONField(
        default=list, blank=True, help_text="Public names of models to try, in order, when every deployment fails."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    """One place a model is served: a provider plus the name the provider knows it by."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    upstream_model = models.CharField(max_length=200)
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(0)])
    priority = models.PositiveSmallIntegerField(
        default=0, help_text="Lower is tried first; higher priorities serve only when the lower ones cannot."
    )
    enabled = models.BooleanField(default=True)
    connect_timeout = models.FloatField(null=True, blank=True, help_text="Seconds; empty: UPSTREAM_CONNECT_TIMEOUT.")
    first_token_timeout = models.FloatField(
        null=True, blank=True, help_text="Seconds until the answer (or a stream's first chunk) starts."
    )
    idle_timeout = models.FloatField(null=True, blank=True, help_text="Seconds a stream may stay silent.")
    total_timeout = models.FloatField(null=True, blank=True, help_text="Seconds; empty: UPSTREAM_TIMEOUT.")
    # Prices per million tokens, in BILLING_CURRENCY. Empty: no price (never silently free: see billing).
    input_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cached_input_price = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="Empty: the input price."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "id"]

    def __str__(self) -> str:
        return f"{self.model} -> {self.provider}/{self.upstream_model}"


class VirtualKey(models.Model):
    """A project's API key. Only its SHA-256 digest and a short display prefix are stored."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="virtual_keys"
    )
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=20, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    allowed_models = models.ManyToManyField(
        Model, blank=True, related_name="keys", help_text="Empty: every model the project may use."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty: none.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute; empty: none.")
    max_streams = models.PositiveIntegerField(null=True, blank=True, help_text="Concurrent streams; empty: no cap.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "virtual key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at

    def is_active(self, at: datetime) -> bool:
        return self.revoked_at is None and not self.is_expired(at)


class AdminToken(models.Model):
    """A management API token. Stored as a SHA-256 digest; shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="admin_tokens")
    prefix = models.CharField(max_length=20, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class RequestLog(models.Model):
    """One row per call through /v1: who, what, which deployment answered, tokens, timing.

    Written in batches off the response path (gateway/proxy/logbuffer.py). References to keys,
    projects and deployments carry no database constraint: the log outlives what it refers to.
    """

    request_id = models.CharField("request ID", max_length=40, unique=True)
    created_at = models.DateTimeField(db_index=True)
    endpoint = models.CharField(max_length=40)
    key = models.ForeignKey(
        VirtualKey, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    key_prefix = models.CharField(max_length=20, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    model = models.CharField(max_length=128, blank=True, help_text="The public model the client asked for.")
    answered_model = models.CharField(max_length=128, blank=True, help_text="The model that answered (fallbacks).")
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    provider = models.CharField(max_length=120, blank=True)
    attempts = models.JSONField(default=list, blank=True, help_text="Failed upstream attempts before the answer.")
    status_code = models.PositiveSmallIntegerField("HTTP status")
    error_code = models.CharField(max_length=60, blank=True)
    stream = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(
        max_digits=16, decimal_places=8, null=True, blank=True, help_text="Empty: the deployment has no price."
    )
    latency_ms = models.FloatField("latency (ms)", default=0.0)
    ttft_ms = models.FloatField("time to first token (ms)", null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    guardrails = models.JSONField(default=list, blank=True, help_text="Guardrail verdicts: check, action, where.")
    bodies = models.CharField(max_length=10, choices=LogBodies.choices, default=LogBodies.METADATA)
    request_body = models.TextField(blank=True, help_text="As the project's policy keeps it (JSON).")
    response_body = models.TextField(blank=True, help_text="As the project's policy keeps it; streams reassembled.")
    bodies_truncated = models.BooleanField(default=False)
    write_error = models.CharField(
        max_length=200,
        blank=True,
        help_text="Set when the database refused the full row: it was stored in this minimal form, and why.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="requestlog_recent"),
            models.Index(fields=["project", "-created_at", "-id"], name="requestlog_project_recent"),
            models.Index(fields=["key", "-created_at", "-id"], name="requestlog_key_recent"),
            models.Index(fields=["project", "model", "-created_at", "-id"], name="requestlog_project_model"),
            models.Index(fields=["project", "status_code", "-created_at", "-id"], name="requestlog_project_status"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status_code}"


class Notification(models.Model):
    """A message for one person, listed in the portal (budget alerts, decisions, ...)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at", "-created_at"], name="notification_user_unread")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user}: {self.title}"


class GuardrailPolicy(models.Model):
    """Which guardrail checks run on a project's requests and answers, and what each one does.

    The organisation's row is the floor and the default: a project's own row may only make a
    check stricter (off < flag < redact < block), never looser. See gateway/guardrail_policy.py.
    """

    class Scope(models.TextChoices):
        ORGANISATION = "organisation", "Organisation (floor and default)"
        PROJECT = "project", "Project"

    scope = models.CharField(max_length=12, choices=Scope.choices, default=Scope.PROJECT)
    project = models.OneToOneField(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="guardrail_policy"
    )
    input = models.JSONField(default=dict, blank=True, help_text='Check -> action, e.g. {"pii": "redact"}.')
    output = models.JSONField(default=dict, blank=True, help_text='Check -> action, e.g. {"secrets": "block"}.')
    denylist = models.JSONField(default=list, blank=True, help_text='Terms, or "re:<regex>".')
    restore_redactions = models.BooleanField(
        default=False, help_text="Put the redacted values back into the answer for the caller."
    )
    max_input_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no cap.")
    classifier_model = models.CharField(
        max_length=128, blank=True, help_text="A model of this gateway that classifies inputs (the classifier check)."
    )
    classifier_kind = models.CharField(
        max_length=12,
        choices=[("moderation", "Moderation endpoint"), ("chat", "Chat model (Llama Guard style)")],
        default="moderation",
    )
    denied_betas = models.JSONField(
        default=list,
        blank=True,
        help_text='Anthropic betas (anthropic-beta header) requests may not turn on, e.g. ["files-api-*"].',
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "guardrail policy"
        verbose_name_plural = "guardrail policies"
        constraints = [
            models.UniqueConstraint(
                fields=["scope"], condition=models.Q(scope="organisation"), name="one_organisation_guardrail_policy"
            ),
            models.CheckConstraint(
                condition=models.Q(scope="organisation", project__isnull=True)
                | models.Q(scope="project", project__isnull=False),
                name="guardrail_policy_targets_its_scope",
            ),
        ]

    def __str__(self) -> str:
        return "Organisation guardrail floor" if self.project_id is None else f"Guardrails of {self.project}"


class Role(models.TextChoices):
    """What an identity-provider group grants (gateway/identity.py)."""

    ADMIN = "admin", "Administrator"
    MANAGER = "manager", "Business-unit manager"
    DEVELOPER = "developer", "Developer"


class RoleMapping(models.Model):
    """An identity-provider group and the role it grants at every SSO sign-in (README: roles)."""

    group = models.CharField(max_length=255, help_text="The group's name exactly as the IdP sends it in the claim.")
    role = models.CharField(max_length=10, choices=Role.choices)
    business_unit = models.ForeignKey(
        BusinessUnit,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_mappings",
        help_text="Managers only: the unit the group's members manage.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group", "role", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role="manager", business_unit__isnull=False)
                | (~models.Q(role="manager") & models.Q(business_unit__isnull=True)),
                name="role_mapping_unit_only_for_managers",
            ),
            models.UniqueConstraint(
                fields=["group", "role", "business_unit"], name="one_role_mapping_per_group_role_unit"
            ),
            models.UniqueConstraint(
                fields=["group", "role"],
                condition=models.Q(business_unit__isnull=True),
                name="one_unitless_role_mapping_per_group_role",
            ),
        ]

    def __str__(self) -> str:
        unit = f" of {self.business_unit}" if self.business_unit_id else ""
        return f"{self.group} -> {self.get_role_display()}{unit}"


class IdpRoleGrant(models.Model):
    """A role the identity provider granted (through a RoleMapping) and may therefore take away.
    Roles given by hand (the admin, the API) have no row here and survive every sign-in."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idp_role_grants")
    role = models.CharField(max_length=10, choices=[(Role.ADMIN, "Administrator"), (Role.MANAGER, "Manager")])
    business_unit = models.ForeignKey(BusinessUnit, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "IdP role grant"
        constraints = [
            models.UniqueConstraint(fields=["user", "role", "business_unit"], name="one_idp_grant_per_role_unit"),
            models.UniqueConstraint(
                fields=["user", "role"], condition=models.Q(business_unit__isnull=True), name="one_unitless_idp_grant"
            ),
        ]

    def __str__(self) -> str:
        unit = f" of {self.business_unit}" if self.business_unit_id else ""
        return f"{self.user}: {self.role}{unit} (from the identity provider)"


class IdpGroups(models.Model):
    """The identity provider's groups a user was in at their last SSO sign-in (the groups claim,
    as `sync_idp_roles` read it). Approval rules match requesters by them; a user who never
    signed in through SSO has no row (in no group)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="idp_groups"
    )
    groups = models.JSONField(default=list, help_text="Group names, sorted.")
    seen_at = models.DateTimeField(help_text="The sign-in that sent them.")

    class Meta:
        verbose_name = "IdP groups"
        verbose_name_plural = "IdP groups"

    def __str__(self) -> str:
        return f"{self.user}: {len(self.groups)} groups"


class Installation(models.Model):
    """This installation's identity: one row, made by a migration with a random id. Every key the
    gateway writes into Redis starts with it (gateway/installation.py), so two installations
    sharing a Redis server, or a database restored next to its original, never share counters."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    installation_id = models.UUIDField(unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="one_installation_row")]

    def __str__(self) -> str:
        return f"installation {self.installation_id}"


class AuditEvent(models.Model):
    """One administrative change: who, what, to which object, before and after (secrets masked).

    Append-only (database triggers refuse UPDATE and DELETE) and hash-chained: each row stores the
    previous row's hash and its own, a SHA-256 over a canonical JSON of its content (gateway/audit/
    chain.py), so `manage.py verify_audit` finds a row that was changed, inserted or removed."""

    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField("actor ID", max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField("object ID", max_length=64, blank=True)
    object_label = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=16)
    request_id = models.CharField("request ID", max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit event"
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="auditevent_object"),
            models.Index(fields=["actor_type", "actor_id"], name="auditevent_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id} by {self.actor_label or self.actor_type}"
