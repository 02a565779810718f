"""/api/v1/projects: projects, the business unit they belong to and the models they may use."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import selectors, services
from gateway.admin_api.lookups import get_or_400, get_or_404
from gateway.admin_api.schemas import ErrorOut, ProjectIn, ProjectOut, ProjectPatch
from gateway.models import Project

router = Router(tags=["projects"])


@router.get("", response=list[ProjectOut])
def list_projects(request: HttpRequest) -> list[Project]:
    return list(selectors.list_projects())


@router.post("", response={201: ProjectOut, 400: ErrorOut})
def create_project(request: HttpRequest, payload: ProjectIn) -> Status[Project]:
    unit = get_or_400(
        selectors.list_business_units(), pk=payload.business_unit, what="business unit", field="business_unit"
    )
    project = services.create_project(
        name=payload.name,
        business_unit=unit,
        allowed_models=payload.allowed_models,
        rpm_limit=payload.rpm_limit,
        tpm_limit=payload.tpm_limit,
        log_bodies=payload.log_bodies or "",
        log_retention_days=payload.log_retention_days,
    )
    return Status(201, project)


@router.get("/{project_id}", response={200: ProjectOut, 404: ErrorOut})
def get_project(request: HttpRequest, project_id: int) -> Project:
    return get_or_404(selectors.list_projects(), pk=project_id, what="Project")


@router.patch("/{project_id}", response={200: ProjectOut, 400: ErrorOut, 404: ErrorOut})
def update_project(request: HttpRequest, project_id: int, payload: ProjectPatch) -> Project:
    project = get_or_404(selectors.list_projects(), pk=project_id, what="Project")
    unit = None
    if payload.business_unit is not None:
        unit = get_or_400(
            selectors.list_business_units(), pk=payload.business_unit, what="business unit", field="business_unit"
        )
    # null removes a limit, and returns the log policy and retention to the organisation's defaults
    clearable = payload.model_dump(exclude_unset=True, include={"rpm_limit", "tpm_limit", "log_retention_days"})
    if "log_bodies" in payload.model_fields_set:
        clearable["log_bodies"] = payload.log_bodies or ""
    return services.update_project(
        project=project, name=payload.name, business_unit=unit, allowed_models=payload.allowed_models, **clearable
    )


@router.delete("/{project_id}", response={204: None, 404: ErrorOut})
def delete_project(request: HttpRequest, project_id: int) -> Status[None]:
    """Deletes the project with its memberships and virtual keys."""
    project = get_or_404(selectors.list_projects(), pk=project_id, what="Project")
    services.delete_project(project=project)
    return Status(204, None)
