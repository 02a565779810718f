"""Access requests, credit requests and approval rules in the management API (/api/v1/...).

Mounted by `gateway.admin_api.api` by dotted path (the gateway never imports approvals).
Authentication is the API's admin bearer token; the caller is an administrator.

- `requested_by` names the person a request is filed for: an existing, active user, by id (a
  number) or username (a string). They must be allowed to ask for it as in the portal (credit:
  a project they can see). A request filed here goes through the approval rules like one filed
  in the portal (the event says via=api): its answer may already be `auto_approved` or
  `auto_denied` when the rules run at once (the embedded profile), else poll `GET .../{id}`.
- An access request is either a join (`project`, with `business_unit` empty or that project's
  unit), a new project (`project` null, `business_unit`, `new_project_name`), or a model for a
  project (`project`, `model`). Anything else is refused, naming the field.
- `approve` / `deny` decide as the administrator whose token it is (via=api); a request that has
  left `pending` answers 409, the administrator's own request 403.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import WithJsonSchema

from approvals import rules, services
from approvals.errors import AlreadyDecided, DuplicateRequest, NotAllowed
from approvals.models import AccessRequest, ApprovalRule, CreditRequest, State, Via
from gateway import selectors as gateway_selectors
from gateway.admin_api.lookups import get_or_400, get_or_404
from gateway.admin_api.schemas import AmountIn, ErrorOut, In
from gateway.errors import ValidationFailed

router = Router(tags=["approvals"])

MAX_LIST = 1000
_STATUS = f"One of {', '.join(State.values)}."
_REQUESTED_BY = "The person asking: an active user's id (a number) or username (a string)."
# As sent, checked by _user (400 naming the field): not coerced (true is not user 1).
UserRef = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]})]


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


# --- schemas ---


class CreditRequestIn(In):
    project: int
    amount: AmountIn = Field(description='More than zero, at most two decimals, e.g. "50.00" (BILLING_CURRENCY).')
    reason: str = Field(description="Why the credit is needed (the approver reads this first).")
    requested_by: UserRef = Field(description=_REQUESTED_BY)


class AccessRequestIn(In):
    project: int | None = Field(default=None, description="The project to join (or to add `model` to).")
    business_unit: int | None = Field(
        default=None, description="A new project's unit; for a join, empty or the project's own unit."
    )
    new_project_name: str | None = Field(default=None, description="Ask for a new project with this name.")
    model: int | None = Field(default=None, description="Ask for this model in `project` (administrators decide).")
    reason: str = Field(description="Why (the approver reads this first).")
    requested_by: UserRef = Field(description=_REQUESTED_BY)


class DecisionIn(In):
    comment: str = Field(default="", description="Why; required to deny (the requester is told).")


class _RequestOut(Schema):
    id: int
    status: str = Field(description=_STATUS)
    reason: str
    requested_by: int
    requested_by_username: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None = Field(description="The approver's username; null for a rule, the clock, or pending.")
    decided_via: str | None = Field(description="portal, email, api, rule or system; null while pending.")
    decision_comment: str = Field(description="The approver's comment, or the rule's explanation.")


class CreditRequestOut(_RequestOut):
    project: int
    business_unit: int
    amount: str
    currency: str


class AccessRequestOut(_RequestOut):
    kind: str = Field(description="join, new_project or model.")
    project: int | None
    business_unit: int | None
    new_project_name: str | None
    model: int | None
    created_project: int | None = Field(description="The project an approved new-project request created.")


class StatusQuery(Schema):
    status: str | None = Field(default=None, description=_STATUS)
    limit: int = Field(default=100, ge=1, le=MAX_LIST, description="Newest first, at most this many.")


class RuleIn(In):
    name: str
    description: str = ""
    enabled: bool = True
    priority: int = Field(default=100, description="Lower runs first; the first rule that holds decides.")
    action: str = Field(description="approve or deny.")
    applies_to: str = Field(description="credit, join, new_project or model.")
    business_unit: int | None = Field(default=None, description="Only this unit's requests; null: every unit.")
    max_amount: AmountIn = Field(default=None, description="Credit: amounts up to this (required to approve credit).")
    monthly_cap: AmountIn = Field(
        default=None,
        description="Credit approvals: while the project's credit approved by rules this month, this request "
        "included, stays within this.",
    )
    unit_budget: str = Field(
        default="any", description="any; headroom (the unit's monthly cap has room); over (the unit spent its cap)."
    )
    idp_groups: list[str] = Field(
        default_factory=list, description="The requester was in one of these IdP groups at their last SSO sign-in."
    )


class RulePatch(In):
    """Omitted fields are unchanged; null clears business_unit, max_amount and monthly_cap."""

    name: str | None = None
    description: str | None = None
    enabled: bool | None = None
    priority: int | None = None
    action: str | None = None
    applies_to: str | None = None
    business_unit: int | None = None
    max_amount: AmountIn = None
    monthly_cap: AmountIn = None
    unit_budget: str | None = None
    idp_groups: list[str] | None = None


class RuleOut(Schema):
    id: int
    name: str
    description: str
    enabled: bool
    priority: int
    action: str
    applies_to: str
    business_unit: int | None
    max_amount: str | None
    monthly_cap: str | None
    unit_budget: str
    idp_groups: list[str]
    summary: str = Field(description="What the rule does, in one sentence.")
    created_at: datetime
    updated_at: datetime


# --- helpers ---


def _user(value: Any) -> AbstractBaseUser:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise ValidationFailed(
            "requested_by must be a user id (a number) or a username (a string).", field="requested_by"
        )
    user = gateway_selectors.user_by_id_or_username(user=value)
    if user is None:
        raise ValidationFailed(f"Unknown user: {value!r}. Create users with POST /api/v1/users.", field="requested_by")
    if not user.is_active:
        raise ValidationFailed(f"User {user.get_username()} is deactivated.", field="requested_by")
    return user


def _base(item: CreditRequest | AccessRequest) -> dict[str, Any]:
    return {
        "id": item.pk,
        "status": item.state,
        "reason": item.reason,
        "requested_by": item.requester_id,
        "requested_by_username": item.requester.get_username(),
        "created_at": item.created_at,
        "decided_at": item.decided_at,
        "decided_by": item.decided_by.get_username() if item.decided_by else None,
        "decided_via": item.decided_via or None,
        "decision_comment": item.decision_comment,
    }


def _credit_out(item: CreditRequest) -> dict[str, Any]:
    return _base(item) | {
        "project": item.project_id,
        "business_unit": item.project.business_unit_id,
        "amount": _amount(item.amount),
        "currency": item.currency,
    }


def _access_out(item: AccessRequest) -> dict[str, Any]:
    unit = item.business_unit_id or (item.project.business_unit_id if item.project_id else None)
    return _base(item) | {
        "kind": item.kind,
        "project": item.project_id,
        "business_unit": unit,
        "new_project_name": item.new_project_name or None,
        "model": item.model_id,
        "created_project": item.created_project_id,
    }


def _credit_requests() -> Any:
    return CreditRequest.objects.select_related("requester", "decided_by", "project")


def _access_requests() -> Any:
    return AccessRequest.objects.select_related("requester", "decided_by", "project")


def _listed(queryset: Any, filters: StatusQuery) -> list[Any]:
    if filters.status is not None:
        if filters.status not in State.values:
            raise ValidationFailed(f"status must be one of {', '.join(State.values)}.", field="status")
        queryset = queryset.filter(state=filters.status)
    return list(queryset.order_by("-created_at", "-id")[: filters.limit])


def _filed(item: CreditRequest | AccessRequest) -> CreditRequest | AccessRequest:
    """The request as it is now: the rules may already have decided it (eager tasks)."""
    return _credit_requests().get(pk=item.pk) if isinstance(item, CreditRequest) else _access_requests().get(pk=item.pk)


def _refused_project(user: AbstractBaseUser) -> ValidationFailed:
    return ValidationFailed(
        f"{user.get_username()} may not ask for this project: credit and models are asked for by people who "
        "can see the project (its members, its unit's managers, administrators).",
        field="requested_by",
    )


def _decide(kind: str, request_id: int, request: HttpRequest, *, approve: bool, comment: str) -> Any:
    try:
        return services.decide_request(
            kind=kind, request_id=request_id, by=request.auth, approve=approve, comment=comment, via=Via.API
        )
    except AlreadyDecided as exc:
        raise HttpError(409, str(exc)) from None
    except NotAllowed as exc:
        raise HttpError(403, str(exc)) from None


# --- credit requests ---


@router.post("/credit-requests", response={201: CreditRequestOut, 400: ErrorOut, 409: ErrorOut})
def file_credit_request(request: HttpRequest, payload: CreditRequestIn) -> Status[dict[str, Any]]:
    """File a credit request for `requested_by` (via=api). The approval rules run on it as on
    one filed in the portal; 409 if that person already has a pending credit request for it."""
    user = _user(payload.requested_by)
    project = get_or_400(gateway_selectors.list_projects(), pk=payload.project, what="project", field="project")
    try:
        item = services.file_credit_request(
            user=user, project=project, amount=payload.amount, reason=payload.reason, via=Via.API
        )
    except DuplicateRequest as exc:
        raise HttpError(409, str(exc)) from None
    except gateway_selectors.NotVisible:
        raise _refused_project(user) from None
    return Status(201, _credit_out(_filed(item)))


@router.get("/credit-requests", response={200: list[CreditRequestOut], 422: ErrorOut})
def list_credit_requests(request: HttpRequest, filters: Query[StatusQuery]) -> list[dict[str, Any]]:
    return [_credit_out(item) for item in _listed(_credit_requests(), filters)]


@router.get("/credit-requests/{request_id}", response={200: CreditRequestOut, 404: ErrorOut})
def get_credit_request(request: HttpRequest, request_id: int) -> dict[str, Any]:
    return _credit_out(get_or_404(_credit_requests(), pk=request_id, what="Credit request"))


@router.post(
    "/credit-requests/{request_id}/approve",
    response={200: CreditRequestOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def approve_credit_request(request: HttpRequest, request_id: int, payload: DecisionIn) -> dict[str, Any]:
    """Approve as this administrator (via=api): the credit is granted in the same transaction."""
    get_or_404(_credit_requests(), pk=request_id, what="Credit request")
    item = _decide("credit", request_id, request, approve=True, comment=payload.comment)
    return _credit_out(_filed(item))


@router.post(
    "/credit-requests/{request_id}/deny", response={200: CreditRequestOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}
)
def deny_credit_request(request: HttpRequest, request_id: int, payload: DecisionIn) -> dict[str, Any]:
    """Deny as this administrator (via=api); `comment` is required (the requester is told)."""
    get_or_404(_credit_requests(), pk=request_id, what="Credit request")
    item = _decide("credit", request_id, request, approve=False, comment=payload.comment)
    return _credit_out(_filed(item))


# --- access requests ---


def _file_access(payload: AccessRequestIn) -> AccessRequest:
    user = _user(payload.requested_by)
    unit = None
    if payload.business_unit is not None:
        unit = get_or_400(
            gateway_selectors.list_business_units(),
            pk=payload.business_unit,
            what="business unit",
            field="business_unit",
        )
    name = payload.new_project_name
    if payload.project is None:
        if payload.model is not None:
            raise ValidationFailed("A model is asked for an existing project: give project.", field="project")
        if name is None or not name.strip():
            raise ValidationFailed(
                "Give project (to join it) or business_unit and new_project_name (to create one).", field="project"
            )
        if unit is None:
            raise ValidationFailed("A new project needs its business_unit.", field="business_unit")
        return services.file_new_project_request(
            user=user, business_unit=unit, name=name, reason=payload.reason, via=Via.API
        )
    if name is not None:
        raise ValidationFailed(
            "Give either project (to join it) or new_project_name (to create one), not both.", field="new_project_name"
        )
    project = get_or_400(gateway_selectors.list_projects(), pk=payload.project, what="project", field="project")
    if unit is not None and unit.pk != project.business_unit_id:
        raise ValidationFailed(
            f"Project {project} belongs to business unit {project.business_unit_id}, not {unit.pk}.",
            field="business_unit",
        )
    if payload.model is None:
        return services.file_join_request(user=user, project=project, reason=payload.reason, via=Via.API)
    model = gateway_selectors.get_model(model_id=payload.model)
    if model is None:
        raise ValidationFailed(f"Unknown model id: {payload.model}", field="model")  # as get_or_400 says it
    try:
        return services.file_model_request(user=user, project=project, model=model, reason=payload.reason, via=Via.API)
    except gateway_selectors.NotVisible:
        raise _refused_project(user) from None


@router.post("/access-requests", response={201: AccessRequestOut, 400: ErrorOut, 409: ErrorOut})
def file_access_request(request: HttpRequest, payload: AccessRequestIn) -> Status[dict[str, Any]]:
    """File an access request for `requested_by` (via=api): join `project`; or a new project
    (`project` null, `business_unit`, `new_project_name`); or `model` for `project`. The
    approval rules run on it as on one filed in the portal; 409 if the same request is pending."""
    try:
        item = _file_access(payload)
    except DuplicateRequest as exc:
        raise HttpError(409, str(exc)) from None
    return Status(201, _access_out(_filed(item)))


@router.get("/access-requests", response={200: list[AccessRequestOut], 422: ErrorOut})
def list_access_requests(request: HttpRequest, filters: Query[StatusQuery]) -> list[dict[str, Any]]:
    return [_access_out(item) for item in _listed(_access_requests(), filters)]


@router.get("/access-requests/{request_id}", response={200: AccessRequestOut, 404: ErrorOut})
def get_access_request(request: HttpRequest, request_id: int) -> dict[str, Any]:
    return _access_out(get_or_404(_access_requests(), pk=request_id, what="Access request"))


@router.post(
    "/access-requests/{request_id}/approve",
    response={200: AccessRequestOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def approve_access_request(request: HttpRequest, request_id: int, payload: DecisionIn) -> dict[str, Any]:
    """Approve as this administrator (via=api): membership, project or model applied at once."""
    get_or_404(_access_requests(), pk=request_id, what="Access request")
    item = _decide("access", request_id, request, approve=True, comment=payload.comment)
    return _access_out(_filed(item))


@router.post(
    "/access-requests/{request_id}/deny", response={200: AccessRequestOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}
)
def deny_access_request(request: HttpRequest, request_id: int, payload: DecisionIn) -> dict[str, Any]:
    """Deny as this administrator (via=api); `comment` is required (the requester is told)."""
    get_or_404(_access_requests(), pk=request_id, what="Access request")
    item = _decide("access", request_id, request, approve=False, comment=payload.comment)
    return _access_out(_filed(item))


# --- approval rules ---


def _rule_out(rule: ApprovalRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "priority": rule.priority,
        "action": rule.action,
        "applies_to": rule.applies_to,
        "business_unit": rule.business_unit_id,
        "max_amount": _amount(rule.max_amount),
        "monthly_cap": _amount(rule.monthly_cap),
        "unit_budget": rule.unit_budget,
        "idp_groups": rule.group_names,
        "summary": rules.describe(rule),
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def _rules() -> Any:
    return ApprovalRule.objects.select_related("business_unit").order_by("priority", "id")


def _rule_unit(unit_id: int | None) -> Any:
    if unit_id is None:
        return None
    return get_or_400(gateway_selectors.list_business_units(), pk=unit_id, what="business unit", field="business_unit")


@router.get("/approval-rules", response=list[RuleOut])
def list_rules(request: HttpRequest) -> list[dict[str, Any]]:
    """Every rule, in the order they are tried (priority, then id)."""
    return [_rule_out(rule) for rule in _rules()]


@router.post("/approval-rules", response={201: RuleOut, 400: ErrorOut})
def create_rule(request: HttpRequest, payload: RuleIn) -> Status[dict[str, Any]]:
    fields = payload.model_dump() | {"business_unit": _rule_unit(payload.business_unit)}
    return Status(201, _rule_out(services.create_rule(**fields)))


@router.get("/approval-rules/{rule_id}", response={200: RuleOut, 404: ErrorOut})
def get_rule(request: HttpRequest, rule_id: int) -> dict[str, Any]:
    return _rule_out(get_or_404(_rules(), pk=rule_id, what="Approval rule"))


@router.patch("/approval-rules/{rule_id}", response={200: RuleOut, 400: ErrorOut, 404: ErrorOut})
def update_rule(request: HttpRequest, rule_id: int, payload: RulePatch) -> dict[str, Any]:
    rule = get_or_404(_rules(), pk=rule_id, what="Approval rule")
    clearable = {"business_unit", "max_amount", "monthly_cap"}
    changes = {
        field: value
        for field, value in payload.model_dump(exclude_unset=True).items()
        if value is not None or field in clearable
    }
    if "business_unit" in changes:
        changes["business_unit"] = _rule_unit(changes["business_unit"])
    return _rule_out(services.update_rule(rule=rule, **changes))


@router.delete("/approval-rules/{rule_id}", response={204: None, 404: ErrorOut})
def delete_rule(request: HttpRequest, rule_id: int) -> Status[None]:
    """Delete a rule; what it decided stays decided (the explanation keeps its name)."""
    services.delete_rule(rule=get_or_404(_rules(), pk=rule_id, what="Approval rule"))
    return Status(204, None)
