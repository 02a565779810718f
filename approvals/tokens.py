"""The decision links in approvers' mails: signed tokens that open a request's decision page.

A token is `django.core.signing` output (HMAC with SECRET_KEY and a salt of its own, with a
timestamp), so nobody can make or alter one. It names:

- the request (its kind and id) and the approver it was sent to (a user id);
- its purpose, "decide" (a token signed for another purpose, or with another salt, is refused);
- the request's version when the mail was written: its state and how many events it has. Any
  transition (decided elsewhere, cancelled, expired, decided with this very link) changes the
  version, so a link works until the request moves on, and once used it is spent;
- its age: it is refused after APPROVAL_LINK_MAX_AGE_HOURS.

The token never authenticates anyone. Opening the link (approvals/views.py) only checks it and
keeps it in the session; deciding is a POST by the signed-in approver the token names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing

from approvals.errors import ApprovalError
from approvals.models import CreditRequest, RequestEvent, State
from approvals.selectors import TABLES, AnyRequest

SALT = "approvals.decision-link.v1"
DECIDE = "decide"

_OUTCOMES = {
    State.APPROVED: "approved",
    State.AUTO_APPROVED: "approved by a rule",
    State.DENIED: "denied",
    State.AUTO_DENIED: "denied by a rule",
    State.CANCELLED: "cancelled by the requester",
    State.EXPIRED: "closed because nobody decided it in time",
}


class LinkRefused(ApprovalError):
    """A decision link that cannot be used. `status` is the page's HTTP status, `title` its heading."""

    def __init__(self, message: str, *, status: int, title: str) -> None:
        super().__init__(message, field="token")
        self.status, self.title = status, title


@dataclass(frozen=True)
class Claim:
    kind: str
    request_id: int
    user_id: int
    purpose: str
    version: str

    @property
    def session_key(self) -> str:
        return f"{self.kind}:{self.request_id}"


def version_of(request: AnyRequest) -> str:
    """The request's state and its number of events: any transition changes it."""
    where = {"credit_request": request} if isinstance(request, CreditRequest) else {"access_request": request}
    return f"{request.state}.{RequestEvent.objects.filter(**where).count()}"


def make_token(*, request: AnyRequest, user: AbstractBaseUser, purpose: str = DECIDE) -> str:
    """A link token for `user` to decide `request` in its current state."""
    payload = {"k": request.KIND, "r": request.pk, "u": user.pk, "p": purpose, "v": version_of(request)}
    return signing.dumps(payload, salt=SALT, compress=True)


def max_age() -> timedelta:
    return timedelta(hours=settings.APPROVAL_LINK_MAX_AGE_HOURS)


def read_token(token: str, *, purpose: str = DECIDE) -> Claim:
    """The token's claim, if it is genuine, not too old and made for `purpose`; LinkRefused if not."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=max_age())
    except signing.SignatureExpired:
        hours = settings.APPROVAL_LINK_MAX_AGE_HOURS
        raise LinkRefused(
            f"Decision links work for {hours:g} hours and this one is older. "
            "Open the request in the portal to decide it, or wait for the reminder.",
            status=410,
            title="This link has expired",
        ) from None
    except signing.BadSignature:
        raise _not_a_link() from None
    try:
        claim = Claim(
            kind=str(payload["k"]),
            request_id=int(payload["r"]),
            user_id=int(payload["u"]),
            purpose=str(payload["p"]),
            version=str(payload["v"]),
        )
    except (KeyError, TypeError, ValueError):
        raise _not_a_link() from None
    if claim.kind not in TABLES:
        raise _not_a_link()
    if claim.purpose != purpose:
        raise LinkRefused(
            "This link was not made for deciding a request, so it cannot be used here.",
            status=400,
            title="This link cannot decide requests",
        )
    return claim


def _not_a_link() -> LinkRefused:
    return LinkRefused(
        "The address is not a complete decision link: copy the whole line from the mail, "
        "or open the request in the portal.",
        status=400,
        title="This link is not valid",
    )


def check_state(claim: Claim, request: AnyRequest | None) -> None:
    """The request still exists and is as it was when the link was sent."""
    if request is None or request.pk != claim.request_id or claim.kind != request.KIND:
        raise LinkRefused("The request this link was for no longer exists.", status=404, title="No such request")
    if version_of(request) == claim.version:
        return
    if request.state != State.PENDING:
        outcome = _OUTCOMES.get(request.state, request.state)
        raise LinkRefused(
            f"This request was already {outcome}, so the link no longer works (each link works once). "
            "Nothing was changed.",
            status=409,
            title="Already decided",
        )
    raise LinkRefused(
        "This request changed after the mail was sent. Open it in the portal to see where it stands.",
        status=409,
        title="The request has changed",
    )


def check_link(claim: Claim, *, user: AbstractBaseUser, request: AnyRequest | None) -> None:
    """`user` may use this link on `request`: they are the approver it was sent to, not the
    requester, and the request is as it was when the link was sent. LinkRefused if not."""
    if claim.user_id != user.pk:
        raise LinkRefused(
            f"This link was sent to another approver; you are signed in as {user.get_username()}. "
            "Sign out and sign in as the person the mail was sent to, or open the request in the portal.",
            status=403,
            title="This link is someone else's",
        )
    if request is not None and request.requester_id == user.pk:
        raise LinkRefused(
            "You cannot decide your own request; another approver will.", status=403, title="Your own request"
        )
    check_state(claim, request)
