"""Budgets, credits, adjustments, balances and the ledger in the management API (/api/v1/...).

Mounted by `gateway.admin_api.api` by dotted path (the gateway never imports billing).
Amounts are decimal strings in BILLING_CURRENCY: requests may send "25.00" or 25; answers
always carry strings, so no client loses a cent to floating point.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import WithJsonSchema

from billing import budget, selectors, services
from billing.models import Budget, LedgerEntry
from billing.periods import label
from gateway import selectors as gateway_selectors
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import AmountIn, ErrorOut

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import BusinessUnit, Project, VirtualKey

router = Router(tags=["budgets"])
_MICRO = Decimal("0.000001")


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(_MICRO))


# As sent, so that `[true]` or `[50.5]` is refused by the service rather than coerced to an integer.
ThresholdsIn = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}),
]


class BudgetIn(Schema):
    # Amounts and thresholds reach the service as sent; it answers 400 naming the field (gateway.money).
    monthly_limit: AmountIn = Field(description='Per calendar month, e.g. "100.00": 0 to 999999999999.99.')
    hard: bool = Field(default=True, description="Refuse requests once reached (false: only alert).")
    thresholds: ThresholdsIn = Field(
        default=None, description="Alert percentages, whole numbers from 1 to 1000; default [50, 80, 100]."
    )
    webhook_url: str = Field(default="", description="Optional incoming-webhook URL for alerts.")


class BudgetOut(Schema):
    scope: str
    project: int | None
    key: int | None
    business_unit: int | None
    monthly_limit: str
    hard: bool
    thresholds: list[int]
    webhook_url: str
    currency: str
    updated_at: datetime


def _budget_out(item: Budget) -> BudgetOut:
    return BudgetOut(
        scope=item.scope,
        project=item.project_id,
        key=item.key_id,
        business_unit=item.business_unit_id,
        monthly_limit=str(item.monthly_limit),
        hard=item.hard,
        thresholds=item.thresholds,
        webhook_url=item.webhook_url,
        currency=settings.BILLING_CURRENCY,
        updated_at=item.updated_at,
    )


def _actor(request: HttpRequest) -> str:
    user = getattr(request, "auth", None)
    return f"{getattr(user, 'username', 'admin')} (management API)"


def _put(request: HttpRequest, target: Project | VirtualKey | BusinessUnit, payload: BudgetIn) -> BudgetOut:
    item = services.set_budget(
        target=target,
        monthly_limit=payload.monthly_limit,
        hard=payload.hard,
        thresholds=payload.thresholds,
        webhook_url=payload.webhook_url,
        actor=_actor(request),
    )
    return _budget_out(item)


def _get(item: Budget | None, what: str) -> BudgetOut:
    if item is None:
        raise HttpError(404, f"{what} has no budget.")
    return _budget_out(item)


def _delete(target: Project | VirtualKey | BusinessUnit, what: str) -> Status[None]:
    if not services.delete_budget(target=target):
        raise HttpError(404, f"{what} has no budget.")
    return Status(204, None)


def _project(project_id: int) -> Project:
    return get_or_404(gateway_selectors.list_projects(), pk=project_id, what="Project")


def _key(key_id: int) -> VirtualKey:
    return get_or_404(gateway_selectors.list_all_keys(), pk=key_id, what="Key")


def _unit(unit_id: int) -> BusinessUnit:
    return get_or_404(gateway_selectors.list_business_units(), pk=unit_id, what="Business unit")


# --- budgets of projects, keys and business units ---


@router.put("/projects/{project_id}/budget", response={200: BudgetOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def put_project_budget(request: HttpRequest, project_id: int, payload: BudgetIn) -> BudgetOut:
    """The project's monthly allowance. Credits granted come on top and carry over; the allowance does not."""
    return _put(request, _project(project_id), payload)


@router.get("/projects/{project_id}/budget", response={200: BudgetOut, 404: ErrorOut})
def get_project_budget(request: HttpRequest, project_id: int) -> BudgetOut:
    return _get(selectors.project_budget(_project(project_id).id), f"Project {project_id}")


@router.delete("/projects/{project_id}/budget", response={204: None, 404: ErrorOut})
def delete_project_budget(request: HttpRequest, project_id: int) -> Status[None]:
    """The project is no longer limited. Its ledger stays."""
    return _delete(_project(project_id), f"Project {project_id}")


@router.put("/keys/{key_id}/budget", response={200: BudgetOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def put_key_budget(request: HttpRequest, key_id: int, payload: BudgetIn) -> BudgetOut:
    """A monthly spending cap for one key, within its project's budget."""
    return _put(request, _key(key_id), payload)


@router.get("/keys/{key_id}/budget", response={200: BudgetOut, 404: ErrorOut})
def get_key_budget(request: HttpRequest, key_id: int) -> BudgetOut:
    return _get(selectors.key_budget(_key(key_id).id), f"Key {key_id}")


@router.delete("/keys/{key_id}/budget", response={204: None, 404: ErrorOut})
def delete_key_budget(request: HttpRequest, key_id: int) -> Status[None]:
    return _delete(_key(key_id), f"Key {key_id}")


@router.put("/business-units/{unit_id}/budget", response={200: BudgetOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def put_unit_budget(request: HttpRequest, unit_id: int, payload: BudgetIn) -> BudgetOut:
    """A monthly cap over all the business unit's projects together."""
    return _put(request, _unit(unit_id), payload)


@router.get("/business-units/{unit_id}/budget", response={200: BudgetOut, 404: ErrorOut})
def get_unit_budget(request: HttpRequest, unit_id: int) -> BudgetOut:
    return _get(selectors.business_unit_budget(_unit(unit_id).id), f"Business unit {unit_id}")


@router.delete("/business-units/{unit_id}/budget", response={204: None, 404: ErrorOut})
def delete_unit_budget(request: HttpRequest, unit_id: int) -> Status[None]:
    return _delete(_unit(unit_id), f"Business unit {unit_id}")


# --- credits, adjustments, the ledger ---


class CreditIn(Schema):
    amount: AmountIn = Field(description='More than zero, e.g. "25.00": 0.01 to 999999999999.99.')
    reason: str = Field(max_length=500)
    idempotency_key: str = Field(description="The same key grants once, however often it is sent.")


class AdjustmentIn(Schema):
    amount: AmountIn = Field(description='Positive adds, negative takes away, e.g. "-5.00"; not zero.')
    reason: str = Field(max_length=500)
    idempotency_key: str | None = None


class EntryOut(Schema):
    id: int
    created_at: datetime
    period: date
    kind: str
    amount: str
    key_prefix: str
    request_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    estimated: bool
    priced: bool
    reason: str
    actor: str
    idempotency_key: str | None


def _exact(value: Decimal) -> str:
    """Every digit the ledger keeps, at least cents, never an exponent: "100.00", "-0.1000003"."""
    value = value.normalize() if value else Decimal(0)
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(Decimal("0.01"))
    return f"{value:f}"


def _entry_out(entry: LedgerEntry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        created_at=entry.created_at,
        period=entry.period,
        kind=entry.kind,
        amount=_exact(entry.amount),
        key_prefix=entry.key_prefix,
        request_id=entry.request_id,
        model=entry.model,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        cached_tokens=entry.cached_tokens,
        estimated=entry.estimated,
        priced=entry.priced,
        reason=entry.reason,
        actor=entry.actor,
        idempotency_key=(entry.idempotency_key or "").removeprefix("grant:").removeprefix("adjust:") or None,
    )


@router.post("/projects/{project_id}/credits", response={200: EntryOut, 201: EntryOut, 400: ErrorOut, 404: ErrorOut})
def grant_credits(request: HttpRequest, project_id: int, payload: CreditIn) -> Status[EntryOut]:
    """Add one-off credit (201). Sending the same idempotency_key again grants nothing more and
    answers 200 with the original grant."""
    granted = services.grant_credits(
        project=_project(project_id),
        amount=payload.amount,
        reason=payload.reason,
        idempotency_key=payload.idempotency_key,
        actor=_actor(request),
    )
    return Status(201 if granted.created else 200, _entry_out(granted.entry))


@router.post("/projects/{project_id}/adjustments", response={201: EntryOut, 400: ErrorOut, 404: ErrorOut})
def adjust_balance(request: HttpRequest, project_id: int, payload: AdjustmentIn) -> Status[EntryOut]:
    """A correction either way (a refund, a charge the gateway did not see): a new entry, never an edit."""
    entry = services.adjust_balance(
        project=_project(project_id),
        amount=payload.amount,
        reason=payload.reason,
        actor=_actor(request),
        idempotency_key=payload.idempotency_key,
    )
    return Status(201, _entry_out(entry))


@router.get("/projects/{project_id}/ledger", response={200: list[EntryOut], 404: ErrorOut})
def list_ledger(
    request: HttpRequest,
    project_id: int,
    limit: Annotated[int, Field(ge=1, le=1000)] = 100,
    kind: Annotated[list[Literal["grant", "usage", "adjustment", "allowance", "expiry"]] | None, Query()] = None,
) -> list[EntryOut]:
    """The project's ledger entries, newest first."""
    project = _project(project_id)
    return [_entry_out(e) for e in selectors.ledger(project_id=project.id, limit=limit, kinds=kind)]


class BalanceOut(Schema):
    project: int
    period: str = Field(description="The month, e.g. 2026-11.")
    currency: str
    limit: str | None = Field(description="What the month allows: allowance plus credit. Null: no budget.")
    spent: str = Field(description="This month's usage in the ledger.")
    reserved: str = Field(description="Held by requests in flight.")
    remaining: str | None = Field(description="limit - spent - reserved. Null: no budget.")
    monthly_limit: str | None
    hard: bool | None


@router.get("/projects/{project_id}/balance", response={200: BalanceOut, 404: ErrorOut, 503: ErrorOut})
def get_balance(request: HttpRequest, project_id: int) -> BalanceOut:
    project = _project(project_id)
    month = selectors.current_period()
    item = selectors.project_budget(project.id)
    if item is not None:  # first read in a new month: expire last month's allowance, add this one's
        services.open_period(project_id=project.id, period=month)
    standing = selectors.project_standing(item, month) if item is not None else None
    spent = standing.spent if standing else selectors.month_spend(project_id=project.id, period=month)
    period = label(month)
    try:
        reserved = Decimal(budget.held_now(scope=budget.project_scope(project.id), period=period)) * _MICRO
    except Exception as exc:
        raise HttpError(503, "The budget store (Redis) does not answer: the reserved amount is unknown.") from exc
    limit = standing.limit if standing else None
    return BalanceOut(
        project=project.id,
        period=period,
        currency=settings.BILLING_CURRENCY,
        limit=_amount(limit),
        spent=_amount(spent),  # type: ignore[arg-type]
        reserved=_amount(reserved),  # type: ignore[arg-type]
        remaining=_amount(limit - spent - reserved) if limit is not None else None,
        monthly_limit=str(item.monthly_limit) if item else None,
        hard=item.hard if item else None,
    )
