"""Writes to billing: budgets, credit grants, adjustments, monthly allowances, usage debits.

The ledger is append-only: every function here adds entries, none changes one. Grants carry an
idempotency key, so a retried task or a double click grants once; allowances and expiries carry
one derived from the project and month, so concurrent processes opening a month open it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from billing.models import Budget, LedgerEntry, validate_thresholds
from billing.periods import current_period, label, period_of
from gateway import audit, bulk_insert, writable
from gateway import selectors as gateway_selectors
from gateway.errors import ValidationFailed
from gateway.invalidation import publish_catalog_change
from gateway.money import parse_amount

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import BusinessUnit, Project, VirtualKey

logger = logging.getLogger(__name__)

_CENT = Decimal("0.01")


def _money(value: Any, *, field: str, allow_zero: bool = True, allow_negative: bool = False) -> Decimal:
    """An amount in cents that fits a monthly limit's column (below 10^12), as gateway.money checks
    every amount from outside. Credits and adjustments are held to the same size, though the ledger
    keeps more places (usage costs)."""
    column = Budget._meta.get_field("monthly_limit")
    return parse_amount(value, field=field, column=column, allow_zero=allow_zero, allow_negative=allow_negative)


@dataclass(frozen=True)
class BudgetTarget:
    scope: str
    project: Project | None = None
    key: VirtualKey | None = None
    business_unit: BusinessUnit | None = None

    @classmethod
    def of(cls, target: Project | VirtualKey | BusinessUnit) -> BudgetTarget:
        # The core's classes, as Budget's own foreign keys name them (billing imports no core model).
        if isinstance(target, Budget._meta.get_field("project").related_model):
            return cls(Budget.Scope.PROJECT, project=target)
        if isinstance(target, Budget._meta.get_field("key").related_model):
            return cls(Budget.Scope.KEY, key=target)
        return cls(Budget.Scope.BUSINESS_UNIT, business_unit=target)

    def filter(self) -> dict[str, Any]:
        return {"scope": self.scope, "project": self.project, "key": self.key, "business_unit": self.business_unit}


def set_budget(
    *,
    target: Project | VirtualKey | BusinessUnit,
    monthly_limit: Any,
    hard: bool = True,
    thresholds: Any = None,
    webhook_url: str = "",
    actor: str = "",
) -> Budget:
    """Create or replace the budget of a project, a key or a business unit.

    `monthly_limit` and `thresholds` may be as sent (a JSON number or string, a list): they are
    checked here, so every caller refuses the same values with the same message.
    A project's current month is opened at once (its allowance written); changing the limit of an
    open month adds the difference to that month's allowance, so the change applies from now on.
    """
    where = BudgetTarget.of(target)
    limit = _money(monthly_limit, field="monthly_limit")
    thresholds = _thresholds(thresholds) if thresholds is not None else None
    with transaction.atomic(durable=True):
        budget = Budget.objects.select_for_update().filter(**where.filter()).first()
        before = audit.snapshot(budget)
        if budget is None:
            budget = Budget(**where.filter())
        budget.monthly_limit, budget.hard, budget.webhook_url = limit, hard, webhook_url
        if thresholds is not None:
            budget.thresholds = thresholds
        try:
            budget.full_clean(validate_constraints=False)  # runs validate_thresholds, naming the field
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise ValidationFailed(" ".join(messages), field=None if field == "__all__" else field) from None
        budget.save()
        if where.project is not None:
            period = current_period()
            if not _open_period(where.project, period):
                # The month's allowance so far, not the old row's limit: the budget may have been
                # deleted and set again this month (its first allowance stays in the ledger).
                allowed = LedgerEntry.objects.filter(
                    project=where.project, period=period, kind=LedgerEntry.Kind.ALLOWANCE
                ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
                if allowed != limit:
                    _add(
                        project=where.project,
                        kind=LedgerEntry.Kind.ALLOWANCE,
                        amount=limit - allowed,
                        period=period,
                        reason=f"Monthly limit changed from {allowed.quantize(_CENT)} to {limit}",
                        actor=actor,
                    )
        audit.record(action="budget.update", target=budget, before=before, after=audit.snapshot(budget))
    publish_catalog_change()
    return budget


def _thresholds(values: Any) -> list[int]:
    """Checked before sorting: a list of anything else (booleans, floats, strings) is refused, never coerced."""
    try:
        validate_thresholds(values)
    except ValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages), field="thresholds") from None
    return sorted(set(values))


def delete_budget(*, target: Project | VirtualKey | BusinessUnit) -> bool:
    """Remove a budget: the project (key, unit) is no longer limited. The ledger stays as it is."""
    with transaction.atomic(durable=True):
        for budget in Budget.objects.select_for_update().filter(**BudgetTarget.of(target).filter()):
            audit.record(action="budget.delete", target=budget, before=audit.snapshot(budget))
        deleted, _ = Budget.objects.filter(**BudgetTarget.of(target).filter()).delete()
    publish_catalog_change()
    return bool(deleted)


def _add(
    *,
    project: Project,
    kind: str,
    amount: Decimal,
    period: date,
    reason: str = "",
    actor: str = "",
    idempotency_key: str | None = None,
) -> LedgerEntry:
    return LedgerEntry.objects.create(
        created_at=datetime.now(UTC),
        period=period,
        kind=kind,
        amount=amount,
        project=project,
        business_unit_id=project.business_unit_id,
        reason=reason[:500],
        actor=actor[:150],
        idempotency_key=idempotency_key,
    )


@dataclass(frozen=True)
class Granted:
    entry: LedgerEntry
    created: bool  # False: this idempotency key had granted already (nothing added)


def grant_credits(*, project: Project, amount: Any, reason: str, idempotency_key: str, actor: str = "") -> Granted:
    """Add one-off credit to a project. Once per idempotency key, however often it is called.

    A project without a budget gets a hard one with a zero monthly allowance: it then runs on its
    credits. Repeating a key with another project or amount is refused (a conflict, not a retry).
    """
    return _grant(
        project=project, amount=amount, reason=reason, idempotency_key=idempotency_key, actor=actor, durable=True
    )


def grant_credits_in_transaction(
    *, project: Project, amount: Any, reason: str, idempotency_key: str, actor: str = ""
) -> Granted:
    """grant_credits inside the caller's transaction (approvals grants with the decision): the
    same checks and the same idempotency, in a savepoint."""
    return _grant(
        project=project, amount=amount, reason=reason, idempotency_key=idempotency_key, actor=actor, durable=False
    )


def _grant(*, project: Project, amount: Any, reason: str, idempotency_key: str, actor: str, durable: bool) -> Granted:
    value = _money(amount, field="amount", allow_zero=False)
    if not idempotency_key or len(idempotency_key) > 150:
        raise ValidationFailed("idempotency_key is required (at most 150 characters).", field="idempotency_key")
    if not reason.strip():
        raise ValidationFailed("reason is required: say why the credit is granted.", field="reason")
    stored_key = f"grant:{idempotency_key}"
    try:
        with transaction.atomic(durable=durable):
            if not Budget.objects.filter(scope=Budget.Scope.PROJECT, project=project).exists():
                Budget.objects.create(scope=Budget.Scope.PROJECT, project=project, monthly_limit=Decimal(0))
            entry = _add(
                project=project,
                kind=LedgerEntry.Kind.GRANT,
                amount=value,
                period=current_period(),
                reason=reason,
                actor=actor,
                idempotency_key=stored_key,
            )
            audit.record(action="credit.grant", target=entry, after=_entry(entry))
    except IntegrityError:
        existing = LedgerEntry.objects.filter(idempotency_key=stored_key).first()
        if existing is None:  # the budget row raced with another first grant: try once more
            return _grant(
                project=project,
                amount=amount,
                reason=reason,
                idempotency_key=idempotency_key,
                actor=actor,
                durable=durable,
            )
        if existing.project_id != project.id or existing.amount != value:
            raise ValidationFailed(
                "This idempotency_key was already used for a different grant; use a new key for a new grant.",
                field="idempotency_key",
            ) from None
        return Granted(existing, created=False)
    publish_catalog_change()
    return Granted(entry, created=True)


def adjust_balance(
    *, project: Project, amount: Any, reason: str, actor: str = "", idempotency_key: str | None = None
) -> LedgerEntry:
    """A correction, either way (a refund, a charge the gateway could not see). Never an edit."""
    value = _money(amount, field="amount", allow_zero=False, allow_negative=True)
    if not reason.strip():
        raise ValidationFailed("reason is required: say why the balance is adjusted.", field="reason")
    try:
        with transaction.atomic(durable=True):
            entry = _add(
                project=project,
                kind=LedgerEntry.Kind.ADJUSTMENT,
                amount=value,
                period=current_period(),
                reason=reason,
                actor=actor,
                idempotency_key=f"adjust:{idempotency_key}" if idempotency_key else None,
            )
            audit.record(action="credit.adjust", target=entry, after=_entry(entry))
    except IntegrityError:
        raise ValidationFailed("This idempotency_key was already used.", field="idempotency_key") from None
    publish_catalog_change()
    return entry


def _entry(entry: LedgerEntry) -> dict[str, Any] | None:
    """A grant or an adjustment as the audit log shows it (a usage entry's columns are all empty)."""
    return audit.snapshot(entry, exclude=_USAGE_ONLY)


_USAGE_ONLY = (
    *("key", "key_prefix", "request_id", "model"),
    *("input_tokens", "output_tokens", "cached_tokens", "estimated", "priced"),
)


def _open_period(project: Project, period: date) -> bool:
    """Close the months before `period` (expire what was left of their allowances) and write
    `period`'s allowance. Idempotent and safe to run concurrently. True when it wrote the allowance."""
    budget = Budget.objects.filter(scope=Budget.Scope.PROJECT, project=project).first()
    if budget is None:
        return False
    entries = LedgerEntry.objects.filter(project=project)
    closed = set(entries.filter(kind=LedgerEntry.Kind.EXPIRY).values_list("period", flat=True))
    open_months = set(
        entries.filter(kind=LedgerEntry.Kind.ALLOWANCE, period__lt=period).values_list("period", flat=True)
    )
    now = datetime.now(UTC)
    rows = []
    for month in sorted(open_months - closed):
        totals = entries.filter(period=month).aggregate(
            allowance=Sum("amount", filter=Q(kind=LedgerEntry.Kind.ALLOWANCE)),
            usage=Sum("amount", filter=Q(kind=LedgerEntry.Kind.USAGE)),
        )
        unused = (totals["allowance"] or Decimal(0)) + (totals["usage"] or Decimal(0))
        rows.append(
            LedgerEntry(
                created_at=now,
                period=month,
                kind=LedgerEntry.Kind.EXPIRY,
                amount=-max(unused, Decimal(0)),
                project=project,
                business_unit_id=project.business_unit_id,
                reason=f"Unused allowance of {label(month)} expired",
                idempotency_key=f"expiry:{project.id}:{label(month)}",
            )
        )
    allowance_key = f"allowance:{project.id}:{label(period)}"
    had_allowance = entries.filter(idempotency_key=allowance_key).exists()
    if not had_allowance:
        rows.append(
            LedgerEntry(
                created_at=now,
                period=period,
                kind=LedgerEntry.Kind.ALLOWANCE,
                amount=budget.monthly_limit,
                project=project,
                business_unit_id=project.business_unit_id,
                reason=f"Monthly allowance for {label(period)}",
                idempotency_key=allowance_key,
            )
        )
    if rows:
        LedgerEntry.objects.bulk_create(rows, ignore_conflicts=True)
    return not had_allowance


def open_period(*, project_id: int, period: date | None = None) -> None:
    """Make sure the project's month is open (see `_open_period`). Called when a budget is read
    for a new month, and by the monthly beat task."""
    project = gateway_selectors.get_project(project_id=project_id)
    if project is None:
        return
    with transaction.atomic():
        _open_period(project, period or current_period())


def open_all_periods() -> int:
    """Open the current month for every project with a budget (Celery beat, first of the month)."""
    ids = list(Budget.objects.filter(scope=Budget.Scope.PROJECT).values_list("project_id", flat=True))
    for project_id in ids:
        open_period(project_id=project_id)
    return len(ids)


def record_usage(*, entries: Iterable[dict[str, Any]]) -> int:
    """One usage debit per request that used tokens or money, linked by request id. Idempotent:
    a request already debited is skipped (a retried flush never charges twice). Returns how many
    debits the batch holds (written now or before).

    The log writer calls this in a thread of the gateway process, in the transaction that writes
    the request-log rows: the debits go in through gateway/bulk_insert.py, without model instances."""
    rows = []
    for entry in entries:
        project_id = entry.get("project_id")
        cost = entry.get("cost")
        tokens = entry.get("input_tokens", 0) + entry.get("output_tokens", 0)
        if project_id is None or (not tokens and not cost):
            continue
        rows.append(
            {
                "created_at": entry["created_at"],
                "period": period_of(entry["created_at"]),
                "kind": LedgerEntry.Kind.USAGE.value,
                "amount": -(writable.money(cost, places=10, digits=22) or Decimal(0)),
                "project_id": project_id,
                "business_unit_id": entry.get("business_unit_id"),
                "key_id": entry.get("key_id"),
                "key_prefix": writable.text(entry.get("key_prefix", ""), 20),
                "request_id": entry["request_id"],
                "model": writable.text(entry.get("answered_model") or entry.get("model", ""), 128),
                "input_tokens": writable.count(entry.get("input_tokens", 0)),
                "output_tokens": writable.count(entry.get("output_tokens", 0)),
                "cached_tokens": writable.count(entry.get("cached_tokens", 0)),
                "estimated": entry.get("usage_estimated", False),
                "priced": cost is not None,
            }
        )
    bulk_insert.insert_ignoring_conflicts(model=LedgerEntry, rows=rows)
    return len(rows)


def queue_budget_alert_check(*, project_ids: list[int], key_ids: list[int]) -> None:
    """Ask a worker to check the budget alerts of the projects and keys that just spent. Never
    raises: alerts must never cost a request log, and the next batch queues the check again."""
    try:
        from billing.tasks import check_budget_alerts

        check_budget_alerts.delay(project_ids, key_ids)
    except Exception as exc:
        logger.warning("could not queue the budget-alert check (%s: %s)", type(exc).__name__, str(exc)[:200])
