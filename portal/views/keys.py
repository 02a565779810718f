"""A project's keys: the list, create (in a dialog), revoke, rotate.

A new secret is shown once, in the answer to the POST that made it (never reachable by GET, never
cached); the list shows only the prefix. Who may: members of the project, its unit's managers and
administrators (gateway.selectors.can_manage_keys); anyone else gets a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget

from billing import selectors as billing_selectors
from gateway import selectors, services
from gateway.errors import ValidationFailed
from portal.forms import KeyForm, RotateForm, add_service_error
from portal.views.common import portal_view, render_page

if TYPE_CHECKING:  # names for type hints only: the portal reaches the core through its selectors and services
    from gateway.models import Project, VirtualKey

TEMPLATE = "portal/keys.html"


def _project_for_keys(request: HttpRequest, project_id: int) -> Project:
    project = selectors.get_visible_project(user=request.user, project_id=project_id)
    if not selectors.can_manage_keys(user=request.user, project=project):
        raise selectors.NotVisible("No such project.", field="project")
    return project


def _model_names(project: Project) -> list[str]:
    return sorted(m.name for m in project.allowed_models.all())


def _context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    names = _model_names(project)
    return {
        "project": project,
        "money": billing_selectors.project_money(project_ids=[project.id])[project.id],
        "role": selectors.project_role(user=request.user, project=project),
        "tab": "keys",
        "keys": selectors.project_keys(project=project),
        "form": extra.pop("form", None) or KeyForm(model_names=names),
        "rotate_form": RotateForm(),
        "can_manage_keys": True,
        "open_dialog": extra.pop("open_dialog", request.GET.get("new") == "1"),
        **extra,
    }


@portal_view
@require_GET
def key_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_for_keys(request, project_id)
    return render_page(request, TEMPLATE, _context(request, project), partial="key-table")


def _secret_response(
    request: HttpRequest, project: Project, issued: services.IssuedKey, *, old_key: VirtualKey | None = None
) -> HttpResponse:
    """The panel with the new secret: in the dialog (htmx) or the whole page with it open."""
    model = next(iter(sorted(m.name for m in issued.key.allowed_models.all())), None) or next(
        iter(_model_names(project)), "your-model"
    )
    context = _context(
        request,
        project,
        issued=issued,
        rotated=old_key is not None,
        old_expires_at=old_key.expires_at if old_key else None,
        snippet_model=model,
        base_url=settings.PUBLIC_URL,
        open_dialog=True,
    )
    response = render_page(request, TEMPLATE, context, partial="key-created")
    add_never_cache_headers(response)  # no-store: the secret must not stay in any cache
    return response


@portal_view
@require_POST
def create(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_for_keys(request, project_id)
    form = KeyForm(request.POST, model_names=_model_names(project))
    if form.is_valid():
        try:
            issued = services.create_virtual_key(
                project=project,
                name=form.cleaned_data["name"],
                created_by=request.user,
                allowed_models=form.cleaned_data["models"],
                expires_at=form.expires_at,
                rpm_limit=form.cleaned_data["rpm_limit"],
                tpm_limit=form.cleaned_data["tpm_limit"],
                max_streams=form.cleaned_data["max_streams"],
            )
        except ValidationFailed as error:
            add_service_error(form, error)
        else:
            return _secret_response(request, project, issued)
    context = _context(request, project, form=form, open_dialog=True)
    status = 200 if request.htmx else 400  # htmx swaps only 2xx answers into the dialog
    return render_page(request, TEMPLATE, context, partial="key-form", status=status)


@portal_view
@require_POST
def revoke(request: HttpRequest, project_id: int, key_id: int) -> HttpResponse:
    project = _project_for_keys(request, project_id)
    key = selectors.get_visible_key(user=request.user, project=project, key_id=key_id)
    services.revoke_key(key=key)
    message = f"Key “{key.name}” ({key.prefix}…) is revoked: requests with it are refused from now on."
    if request.htmx:
        return render_page(request, TEMPLATE, _context(request, project, notice=message), partial="key-table")
    messages.success(request, message)
    return redirect("portal:project-keys", project_id=project.id)


@portal_view
@require_POST
def rotate(request: HttpRequest, project_id: int, key_id: int) -> HttpResponse:
    project = _project_for_keys(request, project_id)
    key = selectors.get_visible_key(user=request.user, project=project, key_id=key_id)
    form = RotateForm(request.POST)
    error = "Choose how long the old key keeps working."
    if form.is_valid():
        try:
            issued = services.rotate_key(key=key, grace=form.grace_period, created_by=request.user)
        except ValidationFailed as failed:
            error = str(failed)
        else:
            return _secret_response(request, project, issued, old_key=key)
    if request.htmx:  # the form aimed at the dialog; the refusal belongs above the list
        context = _context(request, project, notice=error, notice_kind="error")
        response = render_page(request, TEMPLATE, context, partial="key-table")
        return reswap(retarget(response, "#key-table"), "outerHTML")
    messages.error(request, error)
    return redirect("portal:project-keys", project_id=project.id)
