"""/api/v1/role-mappings: which identity-provider group grants which role (README: roles)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import identity, selectors
from gateway.admin_api.lookups import get_or_400, get_or_404
from gateway.admin_api.schemas import ErrorOut, RoleMappingIn, RoleMappingOut
from gateway.models import RoleMapping

router = Router(tags=["role mappings"])


@router.get("", response=list[RoleMappingOut])
def list_role_mappings(request: HttpRequest) -> list[RoleMapping]:
    return list(identity.list_role_mappings())


@router.post("", response={201: RoleMappingOut, 400: ErrorOut})
def create_role_mapping(request: HttpRequest, payload: RoleMappingIn) -> Status[RoleMapping]:
    unit = None
    if payload.business_unit is not None:
        unit = get_or_400(
            selectors.list_business_units(), pk=payload.business_unit, what="business unit", field="business_unit"
        )
    mapping = identity.create_role_mapping(group=payload.group, role=payload.role, business_unit=unit)
    return Status(201, mapping)


@router.get("/{mapping_id}", response={200: RoleMappingOut, 404: ErrorOut})
def get_role_mapping(request: HttpRequest, mapping_id: int) -> RoleMapping:
    return get_or_404(identity.list_role_mappings(), pk=mapping_id, what="Role mapping")


@router.delete("/{mapping_id}", response={204: None, 404: ErrorOut})
def delete_role_mapping(request: HttpRequest, mapping_id: int) -> Status[None]:
    mapping = get_or_404(identity.list_role_mappings(), pk=mapping_id, what="Role mapping")
    identity.delete_role_mapping(mapping=mapping)
    return Status(204, None)
