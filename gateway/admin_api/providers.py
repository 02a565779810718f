"""/api/v1/providers: upstream AI services. Their API keys are write-only."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import selectors, services
from gateway.admin_api.lookups import get_or_404
from gateway.admin_api.schemas import ErrorOut, ProviderIn, ProviderOut, ProviderPatch
from gateway.models import Provider

router = Router(tags=["providers"])


@router.get("", response=list[ProviderOut])
def list_providers(request: HttpRequest) -> list[Provider]:
    return list(selectors.list_providers())


@router.post("", response={201: ProviderOut, 400: ErrorOut})
def create_provider(request: HttpRequest, payload: ProviderIn) -> Status[Provider]:
    provider = services.create_provider(
        name=payload.name,
        kind=payload.kind,
        base_url=payload.base_url,
        api_key=payload.api_key.get_secret_value() if payload.api_key else "",
        approved=payload.approved,
        api_version=payload.api_version,
    )
    return Status(201, provider)


@router.get("/{provider_id}", response={200: ProviderOut, 404: ErrorOut})
def get_provider(request: HttpRequest, provider_id: int) -> Provider:
    return get_or_404(selectors.list_providers(), pk=provider_id, what="Provider")


@router.patch("/{provider_id}", response={200: ProviderOut, 400: ErrorOut, 404: ErrorOut})
def update_provider(request: HttpRequest, provider_id: int, payload: ProviderPatch) -> Provider:
    provider = get_or_404(selectors.list_providers(), pk=provider_id, what="Provider")
    return services.update_provider(
        provider=provider,
        name=payload.name,
        base_url=payload.base_url,
        api_key=payload.api_key.get_secret_value() if payload.api_key is not None else None,
        approved=payload.approved,
        api_version=payload.api_version,
    )


@router.delete("/{provider_id}", response={204: None, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def delete_provider(request: HttpRequest, provider_id: int) -> Status[None]:
    """Refused (400) while a model still has a deployment on this provider."""
    provider = get_or_404(selectors.list_providers(), pk=provider_id, what="Provider")
    services.delete_provider(provider=provider)
    return Status(204, None)
