"""/api/v1/projects/{id}/keys and /api/v1/keys/{id}: virtual keys. The full key is shown once."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import selectors, services
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import ErrorOut, KeyCreatedOut, KeyIn, KeyOut, KeyPatch
from gateway.models import Project, VirtualKey

router = Router(tags=["keys"])


@router.get("/projects/{project_id}/keys", response={200: list[KeyOut], 404: ErrorOut})
def list_keys(request: HttpRequest, project_id: int) -> list[VirtualKey]:
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    return list(selectors.list_keys(project=project))


@router.post("/projects/{project_id}/keys", response={201: KeyCreatedOut, 400: ErrorOut, 404: ErrorOut})
def create_key(request: HttpRequest, project_id: int, payload: KeyIn) -> Status[KeyCreatedOut]:
    """The response's `key` is the full secret. It is not stored and cannot be shown again."""
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    issued = services.create_virtual_key(
        project=project,
        name=payload.name,
        created_by=request.auth,  # type: ignore[attr-defined]
        allowed_models=payload.allowed_models,
        expires_at=payload.expires_at,
        rpm_limit=payload.rpm_limit,
        tpm_limit=payload.tpm_limit,
        max_streams=payload.max_streams,
    )
    shown = KeyOut.from_orm(issued.key)  # validated here; the secret is added without re-running resolvers
    return Status(201, KeyCreatedOut.model_construct(**shown.model_dump(), key=issued.secret))


@router.get("/keys/{key_id}", response={200: KeyOut, 404: ErrorOut})
def get_key(request: HttpRequest, key_id: int) -> VirtualKey:
    return get_or_404(selectors.list_all_keys(), pk=key_id, what="Key")


@router.patch("/keys/{key_id}", response={200: KeyOut, 400: ErrorOut, 404: ErrorOut})
def update_key(request: HttpRequest, key_id: int, payload: KeyPatch) -> VirtualKey:
    """Change a key's limits (null removes one). A key's secret, project and models are fixed."""
    key = get_or_404(selectors.list_all_keys(), pk=key_id, what="Key")
    changes = payload.model_dump(exclude_unset=True)
    return services.set_key_limits(
        key=key,
        rpm_limit=changes.get("rpm_limit", key.rpm_limit),
        tpm_limit=changes.get("tpm_limit", key.tpm_limit),
        max_streams=changes.get("max_streams", key.max_streams),
    )


@router.post("/keys/{key_id}/revoke", response={200: KeyOut, 404: ErrorOut})
def revoke_key(request: HttpRequest, key_id: int) -> VirtualKey:
    """Idempotent: revoking a revoked key keeps its first revocation time."""
    key = get_or_404(selectors.list_all_keys(), pk=key_id, what="Key")
    return services.revoke_key(key=key)


@router.delete("/keys/{key_id}", response={204: None, 404: ErrorOut})
def delete_key(request: HttpRequest, key_id: int) -> Status[None]:
    key = get_or_404(selectors.list_all_keys(), pk=key_id, what="Key")
    services.delete_key(key=key)
    return Status(204, None)
