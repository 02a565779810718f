"""Requests: mine and those waiting for my decision, the forms to ask for access or credit, a
request's page with its history, and the POSTs that cancel or decide one.

Views parse, call one approvals service or selector, render. A service's ValidationFailed goes
beside the field it names (or above the form); NotVisible becomes a 404 (portal_view)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from approvals import selectors, services
from approvals.selectors import AnyRequest
from gateway.errors import ValidationFailed
from gateway.selectors import NotVisible
from portal import request_forms as forms
from portal.views.common import portal_view, render_page

LIST = "portal/requests.html"


def _refused(form: Any, error: ValidationFailed) -> None:
    """Put a service's refusal beside its field when the form has that field, else above the form."""
    field = error.field if error.field in form.fields else None
    form.add_error(field, str(error))


@portal_view
@require_http_methods(["GET", "HEAD"])
def request_list(request: HttpRequest) -> HttpResponse:
    pending = selectors.pending_for_approver(user=request.user)
    money = selectors.money_of(requests=[r for r in pending if r.KIND == "credit"])
    return render_page(
        request,
        LIST,
        {
            "pending": [(item, money.get(item.project_id)) for item in pending],
            "mine": selectors.my_requests(user=request.user),
        },
    )


@portal_view
@require_http_methods(["GET", "HEAD", "POST"])
def new_access_request(request: HttpRequest) -> HttpResponse:
    what = request.POST.get("what") if request.method == "POST" else request.GET.get("what")
    what = what if what in forms.WHAT else "join"
    builders = {
        "join": lambda data: forms.JoinForm(data, user=request.user),
        "new_project": lambda data: forms.NewProjectForm(data),
        "model": lambda data: forms.ModelAccessForm(data, user=request.user),
    }
    form = builders[what](request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if what == "join":
                filed = services.file_join_request(user=request.user, project=data["project"], reason=data["reason"])
            elif what == "new_project":
                filed = services.file_new_project_request(
                    user=request.user, business_unit=data["business_unit"], name=data["name"], reason=data["reason"]
                )
            else:
                project, model = form.chosen()
                filed = services.file_model_request(
                    user=request.user, project=project, model=model, reason=data["reason"]
                )
        except ValidationFailed as error:
            _refused(form, error)
        else:
            messages.success(request, "Request sent. You will be notified when it is decided.")
            return redirect(selectors.request_path(filed))
    status = 400 if form.errors else 200
    return render_page(
        request, "portal/request_new_access.html", {"form": form, "what": what, "choices": forms.WHAT}, status=status
    )


@portal_view
@require_http_methods(["GET", "HEAD", "POST"])
def new_credit_request(request: HttpRequest) -> HttpResponse:
    currency = settings.BILLING_CURRENCY
    if request.method == "POST":
        form = forms.CreditForm(request.POST, user=request.user, currency=currency)
        if form.is_valid():
            data = form.cleaned_data
            try:
                filed = services.file_credit_request(
                    user=request.user, project=data["project"], amount=data["amount"], reason=data["reason"]
                )
            except ValidationFailed as error:
                _refused(form, error)
            else:
                messages.success(request, "Credit request sent to the business unit's managers.")
                return redirect(selectors.request_path(filed))
    else:
        initial = {}
        # ?project=<id> prefills (the 429 message links here); a project the user may not see is ignored.
        wanted = request.GET.get("project", "")
        if wanted.isdigit() and selectors.credit_projects(user=request.user).filter(id=int(wanted)).exists():
            initial["project"] = int(wanted)
        form = forms.CreditForm(initial=initial, user=request.user, currency=currency)
    project = _chosen_project(form)
    context = {
        "form": form,
        "currency": currency,
        "project": project,
        "money": selectors.money_of_project(project=project) if project else None,
        "has_projects": form.fields["project"].queryset.exists(),
    }
    # An htmx GET (the project select changed) asks only for the project's money beside the form.
    partial = "project-money" if request.method != "POST" else None
    return render_page(
        request, "portal/request_new_credit.html", context, partial=partial, status=400 if form.errors else 200
    )


def _chosen_project(form: forms.CreditForm) -> Any:
    """The project the form is about (prefilled or posted), for its balance beside the form."""
    value = form.data.get("project") if form.is_bound else form.initial.get("project")
    if not str(value or "").isdigit():
        return None
    return form.fields["project"].queryset.filter(id=int(value)).first()


def _detail_context(request: HttpRequest, item: AnyRequest, **extra: Any) -> dict[str, Any]:
    user = request.user
    project_visible = selectors.may_see_project(user=user, request=item)
    return {
        "item": item,
        "kind": item.KIND,
        "events": selectors.request_events(request=item),
        "approvers": selectors.approvers_of(item) if item.is_pending else [],
        "approvers_label": selectors.approvers_label(item),
        "can_decide": selectors.can_decide(user=user, request=item),
        "can_cancel": item.is_pending and item.requester_id == user.pk,
        "project_visible": project_visible,
        "money": selectors.money_of_project(project=item.project) if project_visible and item.project else None,
        "decision_form": extra.pop("decision_form", None) or forms.DecisionForm(),
        **extra,
    }


@portal_view
@require_http_methods(["GET", "HEAD"])
def detail(request: HttpRequest, kind: str, request_id: int) -> HttpResponse:
    item = selectors.get_request_for_user(user=request.user, kind=kind, request_id=request_id)
    return render_page(request, "portal/request_detail.html", _detail_context(request, item))


@portal_view
@require_POST
def cancel(request: HttpRequest, kind: str, request_id: int) -> HttpResponse:
    form = forms.CancelForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        services.cancel_request(kind=kind, request_id=request_id, by=request.user, reason=reason)
    except NotVisible:
        raise
    except ValidationFailed as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Request cancelled.")
    item = selectors.get_request_for_user(user=request.user, kind=kind, request_id=request_id)
    return redirect(selectors.request_path(item))


@portal_view
@require_POST
def decide(request: HttpRequest, kind: str, request_id: int) -> HttpResponse:
    """Approve or deny. From /requests/ with htmx, the answer replaces that request's card; as a
    plain POST it redirects back (`from=list`) or to the request's page."""
    form = forms.DecisionForm(request.POST)
    from_list = request.POST.get("from") == "list"
    error, field = "", None
    if not form.is_valid():
        error = "Choose Approve or Deny (a reason of at most 2000 characters)."
    else:
        approve = form.cleaned_data["decision"] == "approve"
        try:
            services.decide_request(
                kind=kind, request_id=request_id, by=request.user, approve=approve, comment=form.cleaned_data["comment"]
            )
        except NotVisible:
            raise
        except ValidationFailed as failure:
            error, field = str(failure), failure.field
    item = selectors.get_request_for_user(user=request.user, kind=kind, request_id=request_id)
    if getattr(request, "htmx", False) and from_list:
        money = selectors.money_of(requests=[item]) if item.KIND == "credit" else {}
        context = {
            "item": item,
            "m": money.get(item.project_id),
            "error": error,
            "comment": form.data.get("comment", ""),
        }
        return render_page(request, LIST, context, partial="pending-item")
    if error:
        if not from_list and selectors.can_decide(user=request.user, request=item):
            # still theirs to decide: the form again, the error beside the comment (or above it)
            form.add_error("comment" if field == "comment" else None, error)
            context = _detail_context(request, item, decision_form=form)
            return render_page(request, "portal/request_detail.html", context, status=400)
        messages.error(request, error)
    else:
        messages.success(request, f"Request {item.get_state_display().lower()}. The requester has been notified.")
    return redirect("portal:requests" if from_list else selectors.request_path(item))
