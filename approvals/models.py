"""Access and credit requests, and the audit trail of their transitions.

Each request is a small state machine (see approvals/services.py): it is created `pending` and
leaves that state exactly once, to `approved` / `denied` (an approver), `cancelled` (its
requester), `expired` (the clock) or `auto_approved` / `auto_denied` (a rule). Every transition,
creation included, is one RequestEvent row; events are only ever added.

Foreign keys to the core are strings (STYLE.md 3.3). A request goes with its project or business
unit when those are deleted (as the ledger does); people are protected while they have requests,
actors are kept as null when a user is deleted.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

MAX_REASON = 2000  # a justification, a reason, a decision comment
MAX_PROJECT_NAME = 120  # gateway.Project.name


class State(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    AUTO_APPROVED = "auto_approved", "Approved by a rule"
    AUTO_DENIED = "auto_denied", "Denied by a rule"


APPROVED_STATES = (State.APPROVED, State.AUTO_APPROVED)


class Via(models.TextChoices):
    """How a transition happened."""

    PORTAL = "portal", "Portal"
    EMAIL = "email", "Email link"
    API = "api", "Management API"
    RULE = "rule", "Rule"
    SYSTEM = "system", "System (expiry, escalation)"


class RequestBase(models.Model):
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    reason = models.TextField(max_length=MAX_REASON, help_text="The requester's justification.")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True, help_text="When it left the pending state.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_via = models.CharField(max_length=10, choices=Via.choices, blank=True)
    decision_comment = models.TextField(max_length=MAX_REASON, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def is_pending(self) -> bool:
        return self.state == State.PENDING

    @property
    def is_approved(self) -> bool:
        return self.state in APPROVED_STATES


class AccessRequest(RequestBase):
    """Join a project, create a project in a business unit, or add a model to a project's allow-list."""

    KIND = "access"

    class Kind(models.TextChoices):
        JOIN = "join", "Join a project"
        NEW_PROJECT = "new_project", "Create a project"
        MODEL = "model", "Use a model in a project"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    project = models.ForeignKey(
        "gateway.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="access_requests"
    )
    business_unit = models.ForeignKey(
        "gateway.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE, related_name="access_requests"
    )
    new_project_name = models.CharField(max_length=MAX_PROJECT_NAME, blank=True)
    model = models.ForeignKey(
        "gateway.Model", null=True, blank=True, on_delete=models.CASCADE, related_name="access_requests"
    )
    # What the approval created (new project), for the requester's link; set once, on approval.
    created_project = models.ForeignKey(
        "gateway.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(RequestBase.Meta):
        constraints = [
            models.CheckConstraint(
                name="access_request_shape",
                condition=(
                    Q(kind="join", project__isnull=False, model__isnull=True, new_project_name="")
                    | Q(kind="model", project__isnull=False, model__isnull=False, new_project_name="")
                    | (
                        Q(kind="new_project", project__isnull=True, business_unit__isnull=False, model__isnull=True)
                        & ~Q(new_project_name="")
                    )
                ),
            ),
            # One pending request per person for the same thing (the service says so first, clearly;
            # these catch two submissions racing).
            models.UniqueConstraint(
                fields=["requester", "project"],
                condition=Q(state="pending", kind="join"),
                name="one_pending_join_per_requester",
            ),
            models.UniqueConstraint(
                fields=["requester", "project", "model"],
                condition=Q(state="pending", kind="model"),
                name="one_pending_model_access_per_requester",
            ),
            models.UniqueConstraint(
                "requester",
                "business_unit",
                Lower("new_project_name"),
                condition=Q(state="pending", kind="new_project"),
                name="one_pending_new_project_per_requester",
            ),
        ]
        indexes = [models.Index(fields=["state", "kind"], name="access_request_state")]

    def __str__(self) -> str:
        return f"access #{self.pk} ({self.kind}, {self.state})"


class CreditRequest(RequestBase):
    """More credit for a project, in BILLING_CURRENCY."""

    KIND = "credit"

    project = models.ForeignKey("gateway.Project", on_delete=models.CASCADE, related_name="credit_requests")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)

    class Meta(RequestBase.Meta):
        constraints = [
            models.CheckConstraint(name="credit_request_amount_positive", condition=Q(amount__gt=0)),
            models.UniqueConstraint(
                fields=["requester", "project"],
                condition=Q(state="pending"),
                name="one_pending_credit_request_per_requester",
            ),
        ]
        indexes = [models.Index(fields=["state"], name="credit_request_state")]

    def __str__(self) -> str:
        return f"credit #{self.pk} ({self.amount} {self.currency}, {self.state})"


class RequestEvent(models.Model):
    """One transition of one request: from a state (empty: created) to a state, by whom, how, why."""

    access_request = models.ForeignKey(
        AccessRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    credit_request = models.ForeignKey(
        CreditRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    from_state = models.CharField(max_length=16, choices=State.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=State.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=10, choices=Via.choices)
    reason = models.TextField(max_length=MAX_REASON, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(
                name="request_event_has_one_request",
                condition=Q(access_request__isnull=False, credit_request__isnull=True)
                | Q(access_request__isnull=True, credit_request__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.from_state or 'new'} -> {self.to_state} ({self.via})"
