"""Request and response bodies of the management API.

Inputs refuse unknown fields (a typo is a 422 naming it, not a silently ignored change).
In PATCH bodies an omitted field, or null, leaves the value unchanged.
Provider API keys are write-only: `SecretStr` on the way in, only `has_api_key` on the way out.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.utils import timezone
from ninja import Schema
from pydantic import AwareDatetime, BeforeValidator, ConfigDict, Field, SecretStr, WithJsonSchema, field_validator

from gateway import log_bodies, money
from gateway.models import Deployment, Membership, Model, Project, Provider, RequestLog, VirtualKey
from gateway.services import MAX_LOG_RETENTION_DAYS, MAX_TIMEOUT_SECONDS


def _decimal_string(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _seconds(description: str) -> Any:
    """A deployment timeout: more than zero, at most a day (finite: Infinity and NaN are refused)."""
    return Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS, description=description)


class In(Schema):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text; refuse it here, naming the field, not as a 500.
        strings = value if isinstance(value, list) else [value]
        if any(isinstance(s, str) and "\x00" in s for s in strings):
            raise ValueError("must not contain NUL (\\x00) characters")
        return value


class ErrorOut(Schema):
    """Every error the management API answers (400, 401, 404, 409, 503, ...)."""

    detail: str = Field(description="What went wrong, safe to show.")
    field: str | None = Field(default=None, description="The input to blame, when one is (e.g. `monthly_limit`).")


class FieldErrorOut(Schema):
    field: str | None = Field(description="Dotted path of the input (`deployments.0.weight`); null: the whole body.")
    msg: str
    type: str | None = Field(description="pydantic's error type, e.g. `missing`, `int_parsing`.")
    loc: list[str] = Field(description='Where the input was: ["body", "payload", ...], ["path", ...], ["query", ...].')


class ValidationErrorOut(ErrorOut):
    """A 422: the input does not have the documented shape. `field` is the first input to blame."""

    errors: list[FieldErrorOut]


# A decimal amount exactly as sent (a string such as "25.00", or a JSON number), left for the
# service to check with gateway.money: the API, the admin and every other caller then refuse the
# same values (NaN, 1e30, true, "5_0", too many places) with the same 400 naming the field.
AmountIn = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["25.00"]}, {"type": "number"}]}),
]


def _checked_price(value: Any) -> Decimal | None:
    column = Deployment._meta.get_field("input_price")  # the three price columns are alike: (12, 6)
    if value is None:
        return None
    return money.amount(value, max_digits=column.max_digits, decimal_places=column.decimal_places)


# A deployment price, checked here with gateway.money's rule and message, so the API answers 422
# naming e.g. `deployments.0.input_price`. The service checks it again for its other callers.
PriceIn = Annotated[
    Decimal | None,
    BeforeValidator(_checked_price),
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["2.50"]}, {"type": "number"}, {"type": "null"}]}),
]


# --- business units ---


class BusinessUnitIn(In):
    name: str


class BusinessUnitPatch(In):
    name: str | None = None


class BusinessUnitOut(Schema):
    id: int
    name: str
    created_at: datetime


# --- projects and members ---


_RPM = "Requests per minute; null: no limit."
_TPM = "Tokens per minute; null: no limit."
_LOG_BODIES = (
    "What request logs keep of bodies: full, redacted (PII and secrets replaced) or metadata (none); "
    'null or "": the organisation\'s default (LOG_BODIES). A project may only be stricter than that.'
)
_RETENTION = "Days request logs are kept; null: the default (LOG_RETENTION_DAYS)."
LogBodiesIn = Literal["", "full", "redacted", "metadata"] | None


class ProjectIn(In):
    name: str
    business_unit: int = Field(description="The business unit's id.")
    allowed_models: list[str] = Field(default_factory=list, description="Public model names the project may use.")
    rpm_limit: int | None = Field(default=None, ge=1, description=_RPM)
    tpm_limit: int | None = Field(default=None, ge=1, description=_TPM)
    log_bodies: LogBodiesIn = Field(default=None, description=_LOG_BODIES)
    log_retention_days: int | None = Field(default=None, ge=1, le=MAX_LOG_RETENTION_DAYS, description=_RETENTION)


class ProjectPatch(In):
    name: str | None = None
    business_unit: int | None = None
    allowed_models: list[str] | None = Field(default=None, description="Replaces the whole list when given.")
    rpm_limit: int | None = Field(default=None, ge=1, description=_RPM)
    tpm_limit: int | None = Field(default=None, ge=1, description=_TPM)
    log_bodies: LogBodiesIn = Field(default=None, description=_LOG_BODIES)
    log_retention_days: int | None = Field(default=None, ge=1, le=MAX_LOG_RETENTION_DAYS, description=_RETENTION)


class ProjectOut(Schema):
    id: int
    name: str
    business_unit: int
    allowed_models: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    log_bodies: str | None = Field(description="The project's own policy; null: the organisation's default.")
    effective_log_bodies: str = Field(description="The policy in force: the project's, or the default if stricter.")
    log_retention_days: int | None = Field(description=_RETENTION)
    created_at: datetime

    @staticmethod
    def resolve_log_bodies(obj: Project) -> str | None:
        return obj.log_bodies or None

    @staticmethod
    def resolve_effective_log_bodies(obj: Project) -> str:
        return log_bodies.effective(obj.log_bodies)

    @staticmethod
    def resolve_business_unit(obj: Project) -> int:
        return obj.business_unit_id

    @staticmethod
    def resolve_allowed_models(obj: Project) -> list[str]:
        return [m.name for m in obj.allowed_models.all()]


class MemberIn(In):
    user: int | str = Field(description="A user id (number) or a username (string). The user must exist.")
    role: Membership.Role = Membership.Role.MEMBER


class MemberPatch(In):
    role: Membership.Role


class MemberOut(Schema):
    id: int
    project: int
    user: int
    username: str
    role: str
    created_at: datetime

    @staticmethod
    def resolve_project(obj: Membership) -> int:
        return obj.project_id

    @staticmethod
    def resolve_user(obj: Membership) -> int:
        return obj.user_id

    @staticmethod
    def resolve_username(obj: Membership) -> str:
        return obj.user.get_username()


# --- providers ---


class ProviderIn(In):
    name: str
    kind: Provider.Kind
    base_url: str = Field(default="", description="Anthropic and OpenAI: empty means the vendor's public API.")
    api_key: SecretStr | None = Field(default=None, description="Write-only: stored encrypted, never returned.")
    approved: bool = False
    api_version: str = Field(default="", description="Azure OpenAI's api-version (default 2024-10-21).")


class ProviderPatch(In):
    name: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, description='Write-only. "" removes the stored key.')
    approved: bool | None = None
    api_version: str | None = None


class ProviderOut(Schema):
    id: int
    name: str
    kind: str
    base_url: str
    api_version: str
    approved: bool
    has_api_key: bool
    created_at: datetime
    updated_at: datetime


# --- models and their deployments ---


class DeploymentIn(In):
    provider: int = Field(description="The provider's id.")
    upstream_model: str = Field(description="The name the provider knows the model by.")
    weight: int = Field(default=1, ge=0, description="Share of traffic among deployments of the same priority.")
    priority: int = Field(default=0, ge=0, le=32767, description="Lower is tried first.")
    enabled: bool = True
    connect_timeout: float | None = _seconds("Seconds.")
    first_token_timeout: float | None = _seconds("Seconds until the answer starts.")
    idle_timeout: float | None = _seconds("Seconds a stream may stay silent.")
    total_timeout: float | None = _seconds("Seconds for the whole call.")
    input_price: PriceIn = Field(default=None, description="Per million input tokens, as a string.")
    output_price: PriceIn = Field(default=None, description="Per million output tokens, as a string.")
    cached_input_price: PriceIn = Field(default=None, description="Per million cached input tokens.")


class ModelIn(In):
    name: str = Field(description="The public name clients ask for.")
    deployments: list[DeploymentIn]
    description: str = ""
    context_window: int | None = Field(default=None, ge=1)
    default_max_tokens: int | None = Field(default=None, ge=1)
    fallbacks: list[str] = Field(default_factory=list, description="Models to try, in order, when this one fails.")
    enabled: bool = True


class ModelPatch(In):
    """Only the fields sent change; `context_window` and `default_max_tokens` may be sent as null to clear them."""

    description: str | None = None
    context_window: int | None = Field(default=None, ge=1)
    default_max_tokens: int | None = Field(default=None, ge=1)
    fallbacks: list[str] | None = None
    enabled: bool | None = None
    deployments: list[DeploymentIn] | None = Field(default=None, description="Replaces every deployment when given.")


class DeploymentOut(Schema):
    id: int
    provider: int
    upstream_model: str
    weight: int
    priority: int
    enabled: bool
    connect_timeout: float | None
    first_token_timeout: float | None
    idle_timeout: float | None
    total_timeout: float | None
    input_price: str | None = Field(description="Per million input tokens (decimal string).")
    output_price: str | None = Field(description="Per million output tokens (decimal string).")
    cached_input_price: str | None = Field(description="Per million cached input tokens (decimal string).")

    @staticmethod
    def resolve_input_price(obj: Deployment) -> str | None:
        return _decimal_string(obj.input_price)

    @staticmethod
    def resolve_output_price(obj: Deployment) -> str | None:
        return _decimal_string(obj.output_price)

    @staticmethod
    def resolve_cached_input_price(obj: Deployment) -> str | None:
        return _decimal_string(obj.cached_input_price)

    @staticmethod
    def resolve_provider(obj: Deployment) -> int:
        return obj.provider_id


class ModelOut(Schema):
    id: int
    name: str
    description: str
    context_window: int | None
    default_max_tokens: int | None
    fallbacks: list[str]
    enabled: bool
    created_at: datetime
    deployments: list[DeploymentOut]

    @staticmethod
    def resolve_deployments(obj: Model) -> list[Deployment]:
        return list(obj.deployments.all())


class DeploymentHealthOut(Schema):
    deployment: int
    provider: int
    provider_name: str
    upstream_model: str
    priority: int
    weight: int
    enabled: bool
    state: str = Field(description="healthy, degraded (failing recently) or open (circuit open: taken out).")
    last_error: str = ""
    last_error_at: float | None = Field(default=None, description="Unix time.")
    latency_ms: float | None = Field(default=None, description="The last call's or check's latency.")
    updated_at: float | None = Field(default=None, description="Unix time of the last report.")


class ModelHealthOut(Schema):
    model: str
    deployments: list[DeploymentHealthOut]


# --- virtual keys ---


class KeyIn(In):
    name: str
    allowed_models: list[str] = Field(
        default_factory=list, description="A subset of the project's models; empty means all of them."
    )
    expires_at: AwareDatetime | None = Field(default=None, description="With a time zone, in the future.")
    rpm_limit: int | None = Field(default=None, ge=1, description=_RPM)
    tpm_limit: int | None = Field(default=None, ge=1, description=_TPM)
    max_streams: int | None = Field(default=None, ge=1, description="Concurrent streams; null: no cap.")


class KeyPatch(In):
    rpm_limit: int | None = Field(default=None, ge=1, description=_RPM)
    tpm_limit: int | None = Field(default=None, ge=1, description=_TPM)
    max_streams: int | None = Field(default=None, ge=1, description="Concurrent streams; null: no cap.")


class KeyOut(Schema):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    project: int
    created_by: int | None
    allowed_models: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    rpm_limit: int | None
    tpm_limit: int | None
    max_streams: int | None
    active: bool = Field(description="Neither revoked nor expired.")
    created_at: datetime

    @staticmethod
    def resolve_project(obj: VirtualKey) -> int:
        return obj.project_id

    @staticmethod
    def resolve_created_by(obj: VirtualKey) -> int | None:
        return obj.created_by_id

    @staticmethod
    def resolve_allowed_models(obj: VirtualKey) -> list[str]:
        return [m.name for m in obj.allowed_models.all()]

    @staticmethod
    def resolve_active(obj: VirtualKey) -> bool:
        return obj.is_active(timezone.now())


class KeyCreatedOut(KeyOut):
    key: str = Field(description="The full key. Shown only in this response: store it now.")


# --- request logs ---


class RequestLogOut(Schema):
    request_id: str
    created_at: datetime
    endpoint: str = Field(description="chat/completions, embeddings, messages, ...")
    project: int | None = Field(description="The project's id.")
    key: int | None = Field(description="The virtual key's id.")
    key_prefix: str
    member: int | None = Field(description="The id of the user who made the key, if any.")
    model: str = Field(description="The public model the client asked for.")
    answered_model: str = Field(description="The model that answered (another one after a fallback).")
    deployment: int | None = Field(description="The deployment's id.")
    provider: str
    attempts: list[Any] = Field(description="Failed upstream attempts before the answer.")
    status_code: int
    error_code: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    usage_estimated: bool = Field(description="The gateway counted the tokens itself (no usage from upstream).")
    cost: str | None = Field(description="Decimal string in BILLING_CURRENCY; null: the deployment has no price.")
    latency_ms: float
    ttft_ms: float | None = Field(description="Time to the first token (streams).")
    guardrails: list[Any] = Field(description="Guardrail verdicts.")
    bodies: str = Field(description="What the row keeps of bodies: full, redacted or metadata.")

    @staticmethod
    def resolve_project(obj: RequestLog) -> int | None:
        return obj.project_id

    @staticmethod
    def resolve_key(obj: RequestLog) -> int | None:
        return obj.key_id

    @staticmethod
    def resolve_member(obj: RequestLog) -> int | None:
        return obj.member_id

    @staticmethod
    def resolve_deployment(obj: RequestLog) -> int | None:
        return obj.deployment_id

    @staticmethod
    def resolve_cost(obj: RequestLog) -> str | None:
        return _decimal_string(obj.cost)


class RequestLogDetailOut(RequestLogOut):
    request_body: str = Field(description="As the policy kept it (JSON text, possibly redacted or truncated).")
    response_body: str = Field(description="As the policy kept it; a stream's answer reassembled.")
    bodies_truncated: bool = Field(description="A body was longer than LOG_BODY_MAX_BYTES and was cut.")
    user_agent: str


# --- people: users, role mappings, business-unit managers (gateway/identity.py) ---


class UserIn(In):
    username: str = Field(description="Letters, digits and @ . + - _; at most 150 characters.")
    email: str = Field(description="Links the user to the identity provider's account with this verified email.")
    password: SecretStr | None = Field(
        default=None, description="Only where local sign-in is on (LOCAL_LOGIN); otherwise a 400."
    )


class UserRoleOut(Schema):
    role: Literal["admin", "manager", "developer"]
    business_unit: int | None = Field(description="Managers: the unit; null for the other roles.")
    source: Literal["manual", "idp"] = Field(
        description="idp: granted by a role mapping at sign-in, taken away when the group is gone; "
        "manual: given here or in the admin, kept whatever the identity provider says."
    )


class UserOut(Schema):
    id: int
    username: str
    email: str
    is_active: bool
    has_password: bool = Field(description="Whether the user can sign in locally (when LOCAL_LOGIN is on).")
    sso_linked: bool = Field(description="Whether the user has signed in through single sign-on.")
    roles: list[UserRoleOut]
    date_joined: datetime
    last_login: datetime | None


class RoleMappingIn(In):
    group: str = Field(description="The group's name exactly as the identity provider sends it in the groups claim.")
    role: Literal["admin", "manager", "developer"]
    business_unit: int | None = Field(default=None, description="Required for manager; must be null otherwise.")


class RoleMappingOut(Schema):
    id: int
    group: str
    role: str
    business_unit: int | None = Field(validation_alias="business_unit_id")
    created_at: datetime


class ManagerIn(In):
    user: int | str = Field(description="A user id (number) or a username (string).")


class ManagerOut(Schema):
    business_unit: int
    managers: list[str] = Field(description="Usernames of the unit's managers.")
