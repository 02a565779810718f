"""/api/v1/business-units: cost centres that own projects, and their managers."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from ninja import Router, Status

from gateway import identity, selectors, services
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import (
    BusinessUnitIn,
    BusinessUnitOut,
    BusinessUnitPatch,
    ErrorOut,
    ManagerIn,
    ManagerOut,
)
from gateway.errors import ValidationFailed
from gateway.models import BusinessUnit

router = Router(tags=["business units"])


@router.get("", response=list[BusinessUnitOut])
def list_business_units(request: HttpRequest) -> list[BusinessUnit]:
    return list(selectors.list_business_units())


@router.post("", response={201: BusinessUnitOut, 400: ErrorOut})
def create_business_unit(request: HttpRequest, payload: BusinessUnitIn) -> Status[BusinessUnit]:
    return Status(201, services.create_business_unit(name=payload.name))


@router.get("/{unit_id}", response={200: BusinessUnitOut, 404: ErrorOut})
def get_business_unit(request: HttpRequest, unit_id: int) -> BusinessUnit:
    return get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit")


@router.patch("/{unit_id}", response={200: BusinessUnitOut, 400: ErrorOut, 404: ErrorOut})
def update_business_unit(request: HttpRequest, unit_id: int, payload: BusinessUnitPatch) -> BusinessUnit:
    unit = get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit")
    return services.update_business_unit(unit=unit, name=payload.name)


@router.delete("/{unit_id}", response={204: None, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def delete_business_unit(request: HttpRequest, unit_id: int) -> Status[None]:
    unit = get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit")
    services.delete_business_unit(unit=unit)
    return Status(204, None)


def _managers_out(unit: BusinessUnit) -> dict:
    return {"business_unit": unit.pk, "managers": sorted(u.get_username() for u in unit.managers.all())}


def _user(user: int | str) -> AbstractBaseUser:
    found = selectors.user_by_id_or_username(user=user)
    if found is None:
        raise ValidationFailed(f"Unknown user: {user!r}. Create users with POST /api/v1/users.", field="user")
    return found


@router.get("/{unit_id}/managers", response={200: ManagerOut, 404: ErrorOut})
def list_managers(request: HttpRequest, unit_id: int) -> dict:
    return _managers_out(get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit"))


@router.post("/{unit_id}/managers", response={200: ManagerOut, 400: ErrorOut, 404: ErrorOut})
def add_manager(request: HttpRequest, unit_id: int, payload: ManagerIn) -> dict:
    """Make a user a manager of the unit by hand: kept at every sign-in, whatever the identity
    provider's groups say."""
    unit = get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit")
    identity.add_business_unit_manager(unit=unit, user=_user(payload.user))
    return _managers_out(unit)


@router.delete("/{unit_id}/managers", response={204: None, 400: ErrorOut, 404: ErrorOut})
def remove_manager(request: HttpRequest, unit_id: int, payload: ManagerIn) -> Status[None]:
    unit = get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit")
    identity.remove_business_unit_manager(unit=unit, user=_user(payload.user))
    return Status(204, None)


@router.delete("/{unit_id}/managers/{user}", response={204: None, 400: ErrorOut, 404: ErrorOut})
def remove_manager_by_path(request: HttpRequest, unit_id: int, user: str) -> Status[None]:
    """USER is a username, or a user id when it is all digits."""
    unit = get_or_404(selectors.list_business_units(), pk=unit_id, what="Business unit")
    identity.remove_business_unit_manager(unit=unit, user=_user(int(user) if user.isdigit() else user))
    return Status(204, None)
