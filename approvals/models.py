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
    # The clock's steps while pending (approvals/tasks.py): each is taken once, then recorded here.
    reminded_at = models.DateTimeField(null=True, blank=True, help_text="When its approvers were reminded.")
    escalated_at = models.DateTimeField(null=True, blank=True, help_text="When it was escalated to the administrators.")

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


class MailStep(models.TextChoices):
    """Why a mail of the workflow was sent (approvals/mail.py)."""

    FILED = "filed", "To the approvers: a new request"
    REMINDER = "reminder", "To the approvers: a reminder"
    ESCALATED = "escalated", "To the administrators: escalated (and to the requester: it was)"
    REMINDED = "reminded", "To the requester: the approvers were reminded"
    DECIDED = "decided", "To the requester: how it ended"


class SentMail(models.Model):
    """One mail of the workflow that went out: which request, which step, to whom. A task that
    is retried or delivered twice finds the row and sends nothing again (approvals/mail.py)."""

    key = models.CharField(max_length=120, unique=True, help_text="kind:request id:step:user id")
    to = models.EmailField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-sent_at", "-id"]

    def __str__(self) -> str:
        return f"{self.key} -> {self.to}"


class ApprovalRule(models.Model):
    """A rule that decides routine requests as soon as they are filed (approvals/rules.py).

    Enabled rules are tried in order (priority, then id); the first whose conditions all hold
    decides: it approves (auto_approved, the effect applied) or denies (auto_denied), and the
    decision comment says which rule and why. When none holds the request waits for a person.
    A condition left empty always holds.
    """

    class Action(models.TextChoices):
        APPROVE = "approve", "Approve"
        DENY = "deny", "Deny"

    class AppliesTo(models.TextChoices):
        CREDIT = "credit", "Credit requests"
        JOIN = "join", "Requests to join a project"
        NEW_PROJECT = "new_project", "Requests for a new project"
        MODEL = "model", "Requests for a model"

    class UnitBudget(models.TextChoices):
        ANY = "any", "Whatever the unit's budget"
        HEADROOM = "headroom", "The unit's monthly cap has room (for the amount, for credit)"
        OVER = "over", "The unit has spent its monthly cap"

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(max_length=MAX_REASON, blank=True, help_text="For people; not used by the rule.")
    enabled = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower runs first; the first rule that holds decides."
    )
    action = models.CharField(max_length=8, choices=Action.choices)
    applies_to = models.CharField(max_length=12, choices=AppliesTo.choices)
    business_unit = models.ForeignKey(
        "gateway.BusinessUnit",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="approval_rules",
        help_text="Only requests in this unit (empty: every unit).",
    )
    max_amount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Credit only: holds for amounts up to this (required to approve credit).",
    )
    monthly_cap = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Credit approvals only: holds while the project's auto-approved credit this month, "
        "this request included, stays at or under this.",
    )
    unit_budget = models.CharField(max_length=8, choices=UnitBudget.choices, default=UnitBudget.ANY)
    idp_groups = models.TextField(
        max_length=MAX_REASON,
        blank=True,
        help_text="Holds when the requester was in one of these identity-provider groups at their last "
        "SSO sign-in: one name per line, exactly as the IdP sends it (empty: anyone).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.CheckConstraint(
                name="approval_rule_amounts_only_for_credit",
                condition=Q(applies_to="credit") | Q(max_amount__isnull=True, monthly_cap__isnull=True),
                violation_error_message="Only credit rules have a maximum amount or a monthly cap.",
            ),
            models.CheckConstraint(
                name="approval_rule_cap_only_to_approve",
                condition=Q(action="approve") | Q(monthly_cap__isnull=True),
                violation_error_message="A monthly cap limits what rules approve: only approving rules have one.",
            ),
            models.CheckConstraint(
                name="approval_rule_credit_approval_has_max_amount",
                condition=~Q(action="approve", applies_to="credit") | Q(max_amount__isnull=False),
                violation_error_message="A rule that approves credit needs a maximum amount.",
            ),
            models.CheckConstraint(
                name="approval_rule_amounts_positive",
                condition=(Q(max_amount__isnull=True) | Q(max_amount__gt=0))
                & (Q(monthly_cap__isnull=True) | Q(monthly_cap__gt=0)),
                violation_error_message="The maximum amount and the monthly cap must be more than zero.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def group_names(self) -> list[str]:
        """The IdP groups, one per line (names may hold commas: LDAP DNs), in the order written,
        without blanks or duplicates."""
        return list(dict.fromkeys(line.strip() for line in self.idp_groups.splitlines() if line.strip()))
