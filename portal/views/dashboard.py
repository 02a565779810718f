"""The dashboard: my projects with their money and usage, a 30-day chart, recent errors, my
pending requests and my notifications."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from approvals import selectors as approvals_selectors
from billing import selectors as billing_selectors
from gateway import selectors, services
from portal.views.common import portal_view, render_page

TEMPLATE = "portal/dashboard.html"
DAYS = 30


def unix_days(days: list[date]) -> list[int]:
    """Midnight UTC of each day in seconds, the x axis of the portal's charts."""
    return [int(datetime.combine(day, time.min, tzinfo=UTC).timestamp()) for day in days]


def _pending_requests(user: Any) -> list[Any]:
    """My access and credit requests still waiting for a decision, newest first (at most five)."""
    mine = approvals_selectors.my_requests(user=user, limit=50)
    return [r for r in mine if r.state == "pending"][:5]


def _notifications(request: HttpRequest) -> dict[str, Any]:
    notifications, unread = selectors.notifications_for(user=request.user)
    return {"notifications": notifications, "unread": unread}


@portal_view
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    projects = list(selectors.member_projects(user=request.user))
    ids = [p.id for p in projects]
    money = billing_selectors.project_money(project_ids=ids)
    usage = billing_selectors.daily_usage(project_ids=ids, days=DAYS)
    x = unix_days(usage.days)
    cards = []
    for project in projects:
        series = usage.by_project.get(project.id, {"requests": [0] * DAYS, "tokens": [0] * DAYS})
        cards.append(
            {
                "project": project,
                "money": money[project.id],
                "requests": sum(series["requests"]),
                "tokens": sum(series["tokens"]),
                "spark_id": f"spark-{project.id}",
                "spark": {"x": x, "series": [{"label": "Requests", "values": series["requests"]}]},
            }
        )
    days = [
        {"day": day, "requests": r, "tokens": t, "spend": s}
        for day, r, t, s in zip(usage.days, usage.requests, usage.tokens, usage.spend, strict=True)
    ]
    context = {
        "cards": cards,
        "projects": projects,
        "days": list(reversed(days)),
        "total_requests": sum(usage.requests),
        "total_tokens": sum(usage.tokens),
        "total_spend": sum(usage.spend),
        "requests_chart": {"x": x, "series": [{"label": "Requests", "values": usage.requests}]},
        "tokens_chart": {"x": x, "series": [{"label": "Tokens", "values": usage.tokens}]},
        "errors": selectors.request_log_page(project_ids=ids, status="error", limit=5).rows if ids else [],
        "pending_requests": _pending_requests(request.user),
        "is_admin": selectors.is_administrator(request.user),
        **_notifications(request),
    }
    return render_page(request, TEMPLATE, context)


@portal_view
@require_POST
def mark_notifications_read(request: HttpRequest) -> HttpResponse:
    services.mark_notifications_read(user=request.user)
    if request.htmx:
        return render_page(request, TEMPLATE, _notifications(request), partial="notifications")
    return redirect("portal:dashboard")
