"""Deciding from a mail's link, in two steps, so that mail scanners (which open links before
people do) change nothing and the token never stays in an address:

1. `GET /approvals/t/<token>/` checks the token (approvals/tokens.py), keeps it in the session and
   redirects (302) to the token-free `/approvals/decide/<kind>/<id>/`. Nothing else happens.
2. That page is read-only for GET: the request, and for the signed-in approver the link was sent
   to, an Approve / Deny form. Anonymous visitors go to the sign-in page, which returns here (with
   SSO that is one click). The POST (CSRF) decides via=email, exactly once (decide_request).

A link that cannot be used (not genuine, expired, for another purpose, someone else's, the
requester's own, the request decided or changed since) gets a page that says why, with a 4xx
status, and changes nothing."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from approvals import mail, selectors, services, tokens
from approvals.errors import AlreadyDecided, NotAllowed
from approvals.tokens import LinkRefused
from gateway.errors import ValidationFailed
from gateway.selectors import NotVisible

SESSION_KEY = "approvals.links"  # {"credit:12": token, ...}: the links opened in this session
MAX_LINKS = 20


def _refused(request: HttpRequest, refused: LinkRefused, *, page_path: str = "") -> HttpResponse:
    context = {"title": refused.title, "message": str(refused), "page_path": page_path}
    response = render(request, "approvals/link_refused.html", context, status=refused.status)
    response["Cache-Control"] = "no-store"
    return response


def _remember(request: HttpRequest, claim: tokens.Claim, token: str) -> None:
    links = dict(request.session.get(SESSION_KEY, {}))
    links.pop(claim.session_key, None)
    links[claim.session_key] = token
    request.session[SESSION_KEY] = dict(list(links.items())[-MAX_LINKS:])


def _forget(request: HttpRequest, key: str) -> None:
    links = dict(request.session.get(SESSION_KEY, {}))
    if links.pop(key, None) is not None:
        request.session[SESSION_KEY] = links


def _current(kind: str, request_id: int) -> Any:
    return selectors.table_of(kind).objects.filter(pk=request_id).first()


@never_cache
@require_GET
def open_link(request: HttpRequest, token: str) -> HttpResponse:
    """Check the link, keep its token in the session, go to the token-free decision page."""
    try:
        claim = tokens.read_token(token)
        current = _current(claim.kind, claim.request_id)
        if request.user.is_authenticated:
            tokens.check_link(claim, user=request.user, request=current)
        else:
            tokens.check_state(claim, current)
    except LinkRefused as refused:
        response = _refused(request, refused)
    else:
        _remember(request, claim, token)
        response = redirect("approvals:decide", kind=claim.kind, request_id=claim.request_id)
    response["Referrer-Policy"] = "no-referrer"  # the token is in this address
    return response


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def decide(request: HttpRequest, kind: str, request_id: int) -> HttpResponse:
    """The request and, for its approver, the decision form; the POST decides via=email."""
    key = f"{kind}:{request_id}"
    token = request.session.get(SESSION_KEY, {}).get(key)
    page_path = _page_path(request, kind, request_id)
    if token is None:
        refused = LinkRefused(
            "This page decides a request from the link in your mail, and no link for this request was "
            "opened in this browser. Open the link from the mail again, or decide on the request's page.",
            status=403,
            title="Open the link from your mail",
        )
        return _refused(request, refused, page_path=page_path)
    try:
        claim = tokens.read_token(token)
        tokens.check_link(claim, user=request.user, request=_current(kind, request_id))
    except LinkRefused as refused:
        if refused.status != 403:
            _forget(request, key)
        return _refused(request, refused, page_path=page_path)
    try:
        item = selectors.get_request_for_user(user=request.user, kind=kind, request_id=request_id)
    except NotVisible:
        raise Http404("No such request.") from None

    error, comment = "", ""
    if request.method == "POST":
        decision, comment = request.POST.get("decision"), request.POST.get("comment", "")
        if decision not in ("approve", "deny"):
            error = "Choose Approve or Deny."
        else:
            try:
                decided = services.decide_by_link(
                    token=token, by=request.user, approve=decision == "approve", comment=comment
                )
            except LinkRefused as refused:
                _forget(request, key)
                return _refused(request, refused, page_path=page_path)
            except (AlreadyDecided, NotAllowed) as failure:
                _forget(request, key)
                status, title = (409, "Already decided") if isinstance(failure, AlreadyDecided) else (403, "Not yours")
                return _refused(request, LinkRefused(str(failure), status=status, title=title), page_path=page_path)
            except ValidationFailed as failure:
                error = str(failure)
            else:
                _forget(request, key)
                messages.success(
                    request, f"Request {decided.get_state_display().lower()}. The requester has been told."
                )
                return redirect(selectors.request_path(decided))
    context = {
        "item": item,
        "kind": kind,
        "what": mail.what(item),
        "who": item.requester.get_full_name() or item.requester.get_username(),
        "facts": mail.facts(item),
        "can_decide": selectors.can_decide(user=request.user, request=item),
        "approvers_label": selectors.approvers_label(item),
        "page_path": page_path,
        "error": error,
        "comment": comment,
    }
    return render(request, "approvals/decide.html", context, status=400 if error else 200)


def _page_path(request: HttpRequest, kind: str, request_id: int) -> str:
    """The request's page in the portal, when the signed-in user may see it."""
    try:
        return selectors.request_path(
            selectors.get_request_for_user(user=request.user, kind=kind, request_id=request_id)
        )
    except NotVisible:
        return ""
