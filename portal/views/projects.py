"""A project's pages (tabs): overview, usage, members, ledger. The keys tab is portal/views/keys.py
and the request log is portal/views/logs.py. Anyone who may not see the project gets a 404."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from billing import selectors as billing_selectors
from gateway import selectors
from gateway.errors import ValidationFailed
from portal.views.common import portal_view, render_page
from portal.views.dashboard import unix_days

if TYPE_CHECKING:  # names for type hints only: the portal reaches the core through its selectors and services
    from gateway.models import Project

# Who may do what in a project (shown on the members tab).
PERMISSIONS = [
    ("See the project, its usage, ledger and request log", True, True, True, True),
    ("Create, rotate and revoke keys", True, True, True, True),
    ("Ask for credit", True, True, True, True),
    ("Decide access and credit requests", False, False, True, True),
    ("Change budgets, members and allowed models", False, False, False, True),
]


def _project_context(request: HttpRequest, project_id: int, tab: str) -> dict[str, Any]:
    project = selectors.get_visible_project(user=request.user, project_id=project_id)
    money = billing_selectors.project_money(project_ids=[project.id])[project.id]
    role = selectors.project_role(user=request.user, project=project)
    return {
        "project": project,
        "money": money,
        "role": role,
        "tab": tab,
        "can_manage_keys": role is not None,  # as selectors.can_manage_keys, without asking again
    }


@portal_view
@require_GET
def overview(request: HttpRequest, project_id: int) -> HttpResponse:
    context = _project_context(request, project_id, "overview")
    project: Project = context["project"]
    usage = billing_selectors.daily_usage(project_ids=[project.id], days=30)
    members = list(selectors.list_members(project=project))
    context |= {
        "allowed_models": sorted(m.name for m in project.allowed_models.all()),
        "members": members,
        "owners": [m for m in members if m.role == "owner"],
        "requests_30d": sum(usage.requests),
        "tokens_30d": sum(usage.tokens),
        "spend_30d": sum(usage.spend),
        "spark": {"x": unix_days(usage.days), "series": [{"label": "Requests", "values": usage.requests}]},
    }
    return render_page(request, "portal/project.html", context)


def _chart(x: list[int], label: str, values: list[Any], unit: str = "") -> dict[str, Any]:
    return {"x": x, "series": [{"label": label, "values": [float(v) for v in values], "unit": unit}]}


@portal_view
@require_GET
def usage(request: HttpRequest, project_id: int) -> HttpResponse:
    context = _project_context(request, project_id, "usage")
    project: Project = context["project"]
    daily = billing_selectors.daily_usage(project_ids=[project.id], days=30)
    x = unix_days(daily.days)
    by_key = billing_selectors.usage_by(project_id=project.id, group_by="key")
    names = dict(selectors.list_keys(project=project).values_list("id", "name"))
    today = datetime.now(UTC).date()
    context |= {
        "days": [
            {"day": d, "requests": r, "tokens": t, "spend": s}
            for d, r, t, s in reversed(list(zip(daily.days, daily.requests, daily.tokens, daily.spend, strict=True)))
        ],
        "total_requests": sum(daily.requests),
        "total_tokens": sum(daily.tokens),
        "total_spend": sum(daily.spend),
        "spend_chart": _chart(x, "Spend", daily.spend, settings.BILLING_CURRENCY),
        "requests_chart": _chart(x, "Requests", daily.requests),
        "tokens_chart": _chart(x, "Tokens", daily.tokens),
        "by_model": billing_selectors.usage_by(project_id=project.id, group_by="model"),
        "by_key": [{"share": s, "name": names.get(s.key_id, "deleted key")} for s in by_key],
        "this_month": today.replace(day=1),
    }
    return render_page(request, "portal/project_usage.html", context)


@portal_view
@require_GET
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    context = _project_context(request, project_id, "members")
    project: Project = context["project"]
    context |= {
        "members": list(selectors.list_members(project=project)),
        "managers": list(project.business_unit.managers.order_by("username")),
        "permissions": PERMISSIONS,
    }
    return render_page(request, "portal/project_members.html", context)


@portal_view
@require_GET
def ledger(request: HttpRequest, project_id: int) -> HttpResponse:
    context = _project_context(request, project_id, "ledger")
    cursor = request.GET.get("before") or None
    try:
        page = billing_selectors.ledger_page(project_id=context["project"].id, cursor=cursor)
    except ValidationFailed as error:
        messages.error(request, str(error))
        page = billing_selectors.ledger_page(project_id=context["project"].id)
        cursor = None
    context |= {"page": page, "paged": bool(cursor)}
    return render_page(request, "portal/project_ledger.html", context, partial="ledger-table")
