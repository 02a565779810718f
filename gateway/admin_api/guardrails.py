"""/api/v1/guardrails (the organisation's floor) and /api/v1/projects/{id}/guardrails.

A policy names an action per check (`off`, `flag`, `redact`, `block`) for the input and the
output, a deny list and whether redactions are restored in answers. `GET` on a project returns
the effective policy (the floor applied) with the project's own settings beside it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Body, Router

from gateway import selectors, services
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import ErrorOut
from gateway.guardrail_policy import looser_than
from gateway.models import Project

router = Router(tags=["guardrails"])

_EXAMPLE = {
    "input": {"pii": "redact", "secrets": "block", "prompt_injection": "flag", "denylist": "block"},
    "output": {"pii": "redact", "secrets": "block"},
    "denylist": ["term", "re:regex"],
    "restore_redactions": False,
    "denied_betas": ["files-api-2025-04-14", "web-search-*"],
}


def _project_view(project: Project) -> dict[str, Any]:
    own, floor, effective = selectors.guardrail_policies(project=project)
    return effective.as_json() | {
        "project": project.id,
        "own": own.as_json() if own is not None else None,
        "organisation": floor.as_json(),
        "raised_to_floor": looser_than(floor, own) if own is not None else [],
    }


@router.get("/guardrails", response={200: dict[str, Any]})
def get_floor(request: HttpRequest) -> dict[str, Any]:
    """The organisation's policy: the default of every project and the floor none may go below."""
    _, floor, _ = selectors.guardrail_policies(project=None)
    return floor.as_json()


@router.put("/guardrails", response={200: dict[str, Any], 400: ErrorOut, 409: ErrorOut})
def put_floor(request: HttpRequest, payload: dict[str, Any] = Body(..., examples=[_EXAMPLE])) -> dict[str, Any]:  # noqa: B008
    services.set_guardrail_policy(project=None, data=payload)
    _, floor, _ = selectors.guardrail_policies(project=None)
    return floor.as_json()


@router.get("/projects/{project_id}/guardrails", response={200: dict[str, Any], 404: ErrorOut})
def get_project_policy(request: HttpRequest, project_id: int) -> dict[str, Any]:
    """The effective policy (the organisation's floor applied), with the project's own beside it."""
    return _project_view(get_or_404(selectors.list_projects(), pk=project_id, what="Project"))


@router.put(
    "/projects/{project_id}/guardrails", response={200: dict[str, Any], 400: ErrorOut, 404: ErrorOut, 409: ErrorOut}
)
def put_project_policy(
    request: HttpRequest,
    project_id: int,
    payload: dict[str, Any] = Body(..., examples=[_EXAMPLE]),  # noqa: B008
) -> dict[str, Any]:
    """Set the project's own policy; where it is looser than the floor, the floor applies."""
    project = get_or_404(selectors.list_projects(), pk=project_id, what="Project")
    services.set_guardrail_policy(project=project, data=payload)
    return _project_view(project)


@router.delete("/projects/{project_id}/guardrails", response={200: dict[str, Any], 404: ErrorOut})
def delete_project_policy(request: HttpRequest, project_id: int) -> dict[str, Any]:
    """Drop the project's own policy: the organisation's applies."""
    project = get_or_404(selectors.list_projects(), pk=project_id, what="Project")
    services.set_guardrail_policy(project=project, data=None)
    return _project_view(project)
