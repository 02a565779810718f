"""/api/v1/models: public model names and the deployments (provider + upstream name) serving them."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from gateway import selectors, services
from gateway.admin_api.lookups import get_many_or_400, get_or_404
from gateway.admin_api.schemas import DeploymentIn, ErrorOut, ModelHealthOut, ModelIn, ModelOut, ModelPatch
from gateway.models import Model

router = Router(tags=["models"])


def _specs(deployments: list[DeploymentIn]) -> list[services.DeploymentSpec]:
    providers = get_many_or_400(
        selectors.list_providers(), pks=[d.provider for d in deployments], what="provider", field="deployments"
    )
    return [
        services.DeploymentSpec(provider=providers[d.provider], **d.model_dump(exclude={"provider"}))
        for d in deployments
    ]


@router.get("", response=list[ModelOut])
def list_models(request: HttpRequest) -> list[Model]:
    return list(selectors.list_models())


@router.post("", response={201: ModelOut, 400: ErrorOut})
def create_model(request: HttpRequest, payload: ModelIn) -> Status[Model]:
    model = services.create_model(
        name=payload.name,
        deployments=_specs(payload.deployments),
        description=payload.description,
        context_window=payload.context_window,
        default_max_tokens=payload.default_max_tokens,
        fallbacks=payload.fallbacks,
        enabled=payload.enabled,
    )
    return Status(201, get_or_404(selectors.list_models(), pk=model.pk, what="Model"))


@router.get("/{model_id}", response={200: ModelOut, 404: ErrorOut})
def get_model(request: HttpRequest, model_id: int) -> Model:
    return get_or_404(selectors.list_models(), pk=model_id, what="Model")


@router.patch("/{model_id}", response={200: ModelOut, 400: ErrorOut, 404: ErrorOut})
def update_model(request: HttpRequest, model_id: int, payload: ModelPatch) -> Model:
    """The name is fixed (clients use it). `deployments`, when given, replaces the list; a deployment
    with the same provider and upstream model keeps its id (and its health history)."""
    model = get_or_404(selectors.list_models(), pk=model_id, what="Model")
    changes = payload.model_dump(exclude_unset=True, exclude={"deployments"})
    services.update_model(
        model=model,
        **changes,
        deployments=_specs(payload.deployments) if payload.deployments is not None else None,
    )
    return get_or_404(selectors.list_models(), pk=model_id, what="Model")


@router.delete("/{model_id}", response={204: None, 404: ErrorOut})
def delete_model(request: HttpRequest, model_id: int) -> Status[None]:
    """Deletes the model with its deployments; projects and keys stop listing it."""
    model = get_or_404(selectors.list_models(), pk=model_id, what="Model")
    services.delete_model(model=model)
    return Status(204, None)


@router.get("/{model_id}/health", response={200: ModelHealthOut, 404: ErrorOut})
def model_health(request: HttpRequest, model_id: int) -> dict:
    """Each deployment's state as the proxies last reported it: `healthy`, `degraded` or `open`."""
    model = get_or_404(selectors.list_models(), pk=model_id, what="Model")
    return {"model": model.name, "deployments": selectors.model_health(model=model)}


@router.post("/{model_id}/health/check", response={200: ModelHealthOut, 404: ErrorOut})
def check_model_health(request: HttpRequest, model_id: int) -> dict:
    """Probe every deployment now (the provider's model list: no prompt, nothing billed)."""
    model = get_or_404(selectors.list_models(), pk=model_id, what="Model")
    services.check_model_health(model=model)
    return {"model": model.name, "deployments": selectors.model_health(model=model)}
