"""/api/v1/business-units: cost centres that own projects."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import selectors, services
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import BusinessUnitIn, BusinessUnitOut, BusinessUnitPatch, ErrorOut
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
