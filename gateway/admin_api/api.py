"""The management API at /api/v1/ (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs)."""

from __future__ import annotations

from ninja import NinjaAPI

from gateway.admin_api.auth import AdminTokenAuth

api = NinjaAPI(
    title="Symbiosis Gateway management API",
    version="1",
    urls_namespace="admin_api",
    auth=AdminTokenAuth(),
)
