"""The admin's index, and its navigation sidebar, grouped by what an operator does rather than
by Django app: the catalog, projects and keys, money, safety, logs, then people and sign-in.

Installed on the default admin site by gateway/admin/__init__.py (`install`): the site's
get_app_list groups the apps' models when no app is asked for; an app's own index
(/admin/billing/) stays as Django builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType
from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest

# (title, one line on what it is for, the models in it as "app_label.ModelName", in order)
TASKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Catalog",
        "What clients can call: providers, models and their deployments, prices.",
        ("gateway.Provider", "gateway.Model", "billing.PriceListEntry"),
    ),
    (
        "Projects and keys",
        "Business units, projects, their members and API keys; access requests.",
        ("gateway.BusinessUnit", "gateway.Project", "gateway.VirtualKey", "approvals.AccessRequest"),
    ),
    (
        "Money",
        "Budgets, the ledger (grants, usage, adjustments), alerts, credit requests and approval rules.",
        (
            "billing.Budget",
            "billing.LedgerEntry",
            "billing.AlertEvent",
            "approvals.CreditRequest",
            "approvals.ApprovalRule",
        ),
    ),
    (
        "Safety",
        "Guardrail policies, management API tokens, identity-provider roles.",
        ("gateway.GuardrailPolicy", "gateway.AdminToken", "gateway.RoleMapping"),
    ),
    (
        "Logs",
        "Every proxied request, every step of every access or credit request, every administrative change.",
        ("gateway.RequestLog", "approvals.RequestEvent", "gateway.AuditEvent"),
    ),
)
OTHERS = ("People and sign-in", "Users, groups and what the sign-in libraries keep.")


def grouped(app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Django's app list (apps holding their models) regrouped by TASKS; models in no task go
    to the last group. Each group has the keys Django's templates read from an app."""
    models = {f"{app['app_label']}.{model['object_name']}": (app, model) for app in app_list for model in app["models"]}
    groups, placed = [], set()
    for title, description, names in TASKS:
        found = [models[name][1] for name in names if name in models]
        placed.update(name for name in names if name in models)
        if found:
            groups.append(_group(title, description, found))
    rest = [model for name, (_, model) in models.items() if name not in placed]
    if rest:
        groups.append(_group(*OTHERS, rest))
    return groups


def _group(title: str, description: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    slug = title.lower().replace(" ", "-")
    return {
        "name": title,
        "app_label": f"task-{slug}",
        "app_url": "",
        "has_module_perms": True,
        "models": models,
        "description": description,
    }


def install(site: AdminSite) -> None:
    """Group the site's index and sidebar by task; /admin/<app>/ keeps its own list."""
    by_app: Callable[..., list[dict[str, Any]]] = site.get_app_list

    def get_app_list(self: AdminSite, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        app_list = by_app(request, app_label)
        return app_list if app_label is not None else grouped(app_list)

    site.get_app_list = MethodType(get_app_list, site)  # type: ignore[method-assign]
