"""Errors of the approvals app. All are ValidationFailed (a message safe to show, naming the field
where there is one), so every caller (portal, management API, tasks) reports them the same way."""

from __future__ import annotations

from gateway.errors import ValidationFailed


class ApprovalError(ValidationFailed):
    """A request could not be filed, decided or cancelled; the message says why and what to do."""


class DuplicateRequest(ApprovalError):
    """The same person already has a pending request for the same thing."""


class AlreadyDecided(ApprovalError):
    """The request has left the pending state (another approver, the requester, a rule or the
    clock was first). The management API answers 409."""


class NotAllowed(ApprovalError):
    """The user may see the request but not do this to it (decide their own, cancel another's)."""
