"""The management API at /api/v1/ (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs).

The docs page is ninja's Swagger UI. Because "ninja" is in INSTALLED_APPS, ninja renders it
from its bundled static files (served by WhiteNoise), not from a CDN: it works offline.
"""

from __future__ import annotations

from typing import Any

from ninja import NinjaAPI, Swagger
from ninja.openapi.schema import OpenAPISchema

from gateway.admin_api import (
    ai_models,
    audit,
    business_units,
    errors,
    guardrails,
    keys,
    members,
    projects,
    providers,
    request_logs,
    role_mappings,
    users,
)
from gateway.admin_api.auth import AdminTokenAuth


class ManagementAPI(NinjaAPI):
    """ninja's API, whose OpenAPI document also lists the errors every operation answers (errors.document)."""

    def get_openapi_schema(self, **kwargs: Any) -> OpenAPISchema:
        schema = super().get_openapi_schema(**kwargs)
        errors.document(schema)
        return schema


api = ManagementAPI(
    title="Symbiosis Gateway management API",
    version="1",
    description="Manage business units, projects, members, providers, models and virtual keys; access and "
    "credit requests and the rules that approve them. "
    "Authenticate with `Authorization: Bearer <token>`: an admin token (create one with "
    "`manage.py issue_admin_token`) or, when single sign-on is configured, an access token the identity "
    "provider issued to an administrator.",
    urls_namespace="admin_api",
    auth=AdminTokenAuth(),
    docs=Swagger(),
)
errors.install(api)

api.add_router("/business-units", business_units.router)
api.add_router("/projects", projects.router)
api.add_router("/projects", members.router)
api.add_router("/providers", providers.router)
api.add_router("/models", ai_models.router)
api.add_router("", keys.router)
api.add_router("/request-logs", request_logs.router)
api.add_router("/users", users.router)
api.add_router("/role-mappings", role_mappings.router)
api.add_router("", guardrails.router)
api.add_router("", audit.router)
# By dotted path: the gateway never imports billing or approvals.
api.add_router("", "billing.budget_api.router")
api.add_router("/reports", "billing.api.reports_router")
api.add_router("", "approvals.api.router")
