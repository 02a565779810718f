"""/api/v1/projects/{id}/members: who belongs to a project, as owner or member."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import selectors, services
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import ErrorOut, MemberIn, MemberOut, MemberPatch
from gateway.errors import ValidationFailed
from gateway.models import Membership, Project

router = Router(tags=["members"])


@router.get("/{project_id}/members", response={200: list[MemberOut], 404: ErrorOut})
def list_members(request: HttpRequest, project_id: int) -> list[Membership]:
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    return list(selectors.list_members(project=project))


@router.post("/{project_id}/members", response={201: MemberOut, 400: ErrorOut, 404: ErrorOut})
def add_member(request: HttpRequest, project_id: int, payload: MemberIn) -> Status[Membership]:
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    user = selectors.user_by_id_or_username(user=payload.user)
    if user is None:
        raise ValidationFailed(f"Unknown user: {payload.user!r}. Users are not created here.", field="user")
    if selectors.list_members(project=project).filter(user=user).exists():
        raise ValidationFailed(f"{user.get_username()!r} is already a member of this project.", field="user")
    return Status(201, services.add_member(project=project, user=user, role=payload.role))


@router.get("/{project_id}/members/{membership_id}", response={200: MemberOut, 404: ErrorOut})
def get_member(request: HttpRequest, project_id: int, membership_id: int) -> Membership:
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    return get_or_404(selectors.list_members(project=project), pk=membership_id, what="Membership")


@router.patch("/{project_id}/members/{membership_id}", response={200: MemberOut, 400: ErrorOut, 404: ErrorOut})
def change_member_role(request: HttpRequest, project_id: int, membership_id: int, payload: MemberPatch) -> Membership:
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    membership = get_or_404(selectors.list_members(project=project), pk=membership_id, what="Membership")
    return services.change_member_role(membership=membership, role=payload.role)


@router.delete("/{project_id}/members/{membership_id}", response={204: None, 404: ErrorOut})
def remove_member(request: HttpRequest, project_id: int, membership_id: int) -> Status[None]:
    project = get_or_404(Project.objects.all(), pk=project_id, what="Project")
    membership = get_or_404(selectors.list_members(project=project), pk=membership_id, what="Membership")
    services.remove_member(membership=membership)
    return Status(204, None)
