"""Billing tables: budgets, the append-only ledger, alerts raised, the price list.

Other apps never import these tables; they use `billing.services`, `billing.selectors` and, on the
hot path, `billing.budget`. References to the core tables carry no database constraint where a
row must outlive what it refers to (the ledger outlives a deleted key or project).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from gateway.services import validate_http_url

DEFAULT_THRESHOLDS = [50, 80, 100]


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


def validate_thresholds(value: object) -> None:
    if not isinstance(value, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= 1000 for t in value
    ):
        raise ValidationError("Thresholds are a list of whole percentages between 1 and 1000.", code="invalid")


class Budget(models.Model):
    """A monthly limit on one project, one key or one business unit.

    A project's budget is an allowance that renews every month, plus any credits granted (both in
    the ledger). A key's or a business unit's budget is a cap on what it may spend in a month.
    Hard budgets refuse requests once reached; soft budgets only raise alerts.
    """

    class Scope(models.TextChoices):
        PROJECT = "project", "Project"
        KEY = "key", "Key"
        BUSINESS_UNIT = "business_unit", "Business unit"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    project = models.ForeignKey("gateway.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey("gateway.VirtualKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    business_unit = models.ForeignKey(
        "gateway.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    monthly_limit = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal(0))], help_text="Per calendar month."
    )
    hard = models.BooleanField(default=True, help_text="Refuse requests once reached (otherwise only alert).")
    thresholds = models.JSONField(
        default=default_thresholds, validators=[validate_thresholds], help_text="Percentages that raise an alert."
    )
    webhook_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_http_url],
        help_text="Optional incoming-webhook URL (Teams, Slack, ...) that alerts are posted to.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project"], condition=models.Q(scope="project"), name="one_project_budget"),
            models.UniqueConstraint(fields=["key"], condition=models.Q(scope="key"), name="one_key_budget"),
            models.UniqueConstraint(
                fields=["business_unit"], condition=models.Q(scope="business_unit"), name="one_business_unit_budget"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(scope="project", project__isnull=False, key__isnull=True, business_unit__isnull=True)
                    | models.Q(scope="key", project__isnull=True, key__isnull=False, business_unit__isnull=True)
                    | models.Q(
                        scope="business_unit", project__isnull=True, key__isnull=True, business_unit__isnull=False
                    )
                ),
                name="budget_targets_its_scope",
            ),
        ]

    def __str__(self) -> str:
        target = self.project_id or self.key_id or self.business_unit_id
        return f"{self.get_scope_display()} {target}: {self.monthly_limit}/month ({'hard' if self.hard else 'soft'})"


class LedgerEntry(models.Model):
    """One movement of money on a project's account. Never updated, never deleted.

    Signs: grants and allowances add (+), usage and expiries take away (-), adjustments either way.
    A project's balance is the sum of its entries; its spend in a month is the sum of that month's
    usage. Each month's allowance is an `allowance` entry; what was left of it when the month ended
    is taken back by an `expiry` entry, so credits carry over and allowances do not.
    """

    class Kind(models.TextChoices):
        GRANT = "grant", "Credit grant"
        USAGE = "usage", "Usage"
        ADJUSTMENT = "adjustment", "Adjustment"
        ALLOWANCE = "allowance", "Monthly allowance"
        EXPIRY = "expiry", "Unused allowance expired"

    created_at = models.DateTimeField(db_index=True)
    period = models.DateField(help_text="First day of the month the entry belongs to.")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.DecimalField(max_digits=22, decimal_places=10)
    project = models.ForeignKey("gateway.Project", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    business_unit = models.ForeignKey(
        "gateway.BusinessUnit", null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    key = models.ForeignKey(
        "gateway.VirtualKey", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    key_prefix = models.CharField(max_length=20, blank=True)
    request_id = models.CharField(
        "request ID", max_length=40, blank=True, help_text="Usage: the request log row it pays for."
    )
    model = models.CharField(max_length=128, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(default=False, help_text="Usage counted by the gateway, not reported upstream.")
    priced = models.BooleanField(default=True, help_text="False: the model had no price; the amount is zero.")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=150, blank=True, help_text="Who granted or adjusted (usage: empty).")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["request_id"], condition=models.Q(kind="usage"), name="one_debit_per_request"
            )
        ]
        indexes = [
            models.Index(fields=["project", "period", "kind"], name="ledger_project_period"),
            models.Index(fields=["business_unit", "period", "kind"], name="ledger_unit_period"),
            models.Index(fields=["key", "period", "kind"], name="ledger_key_period"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} (project {self.project_id}, {self.period:%Y-%m})"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError("Ledger entries are never changed; add an adjustment instead.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Ledger entries are never deleted; add an adjustment instead.")


class AlertEvent(models.Model):
    """A threshold a budget crossed in a month: raised once, whatever happens after."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period = models.DateField()
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(max_digits=22, decimal_places=10)
    limit = models.DecimalField(max_digits=22, decimal_places=10)
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_to = models.JSONField(default=list, blank=True)
    webhook_status = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period", "threshold"], name="one_alert_per_threshold_and_month")
        ]

    def __str__(self) -> str:
        return f"{self.budget}: {self.threshold}% in {self.period:%Y-%m}"


class PriceListEntry(models.Model):
    """A published price for one upstream model at one kind of provider, from the dated price list.

    `manage.py load_prices` reads billing/data/prices.json into this table and copies prices onto
    the deployments that serve that upstream model and have none yet (or all, with --overwrite).
    """

    provider_kind = models.CharField(max_length=20)
    upstream_model = models.CharField(max_length=200)
    input_price = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))])
    output_price = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))])
    cached_input_price = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    currency = models.CharField(max_length=3)
    effective_date = models.DateField()
    source = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider_kind", "upstream_model", "-effective_date"]
        verbose_name_plural = "price list entries"
        constraints = [
            models.UniqueConstraint(
                fields=["provider_kind", "upstream_model", "effective_date"], name="one_price_per_model_and_date"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_kind}/{self.upstream_model} from {self.effective_date}"
