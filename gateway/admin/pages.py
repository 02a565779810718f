"""The admin's action pages: one small form about one object (edit a key's limits, rotate or
revoke it, grant credit to a project), with the admin's breadcrumbs and its look.

A GET shows the form (a confirmation for a button); the POST does the action through a service and
goes back to the object's page with a message. Errors are shown beside their field on the same page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers


def object_or_404(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> models.Model:
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        raise Http404(f"No {model_admin.opts.verbose_name} with id {object_id}.")
    return obj


def require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


def change_url(obj: models.Model) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def action_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    obj: models.Model,
    *,
    title: str,
    form: forms.Form,
    submit: str,
    intro: str = "",
    danger: bool = False,
    details: list[tuple[str, Any]] | None = None,
) -> HttpResponse:
    """The page of one action on OBJ: breadcrumbs Home > app > list > object > TITLE."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "object": obj,
        "object_url": change_url(obj),
        "title": title,
        "subtitle": str(obj),
        "form": form,
        "submit": submit,
        "intro": intro,
        "danger": danger,
        "details": details or [],
        "has_view_permission": model_admin.has_view_permission(request, obj),
    }
    return TemplateResponse(request, "admin/cockpit/action.html", context)


def secret_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    *,
    key: models.Model,
    secret: str,
    title: str,
    note: str = "",
) -> HttpResponse:
    """The one page that shows a key's secret. Never cached, and never in a message (whose cookie
    or session would keep a copy)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "key": key,
        "secret": secret,
        "title": title,
        "note": note,
        "change_url": change_url(key),
        "list_url": reverse(f"admin:{key._meta.app_label}_{key._meta.model_name}_changelist"),
        "has_view_permission": model_admin.has_view_permission(request, key),
    }
    response = TemplateResponse(request, "admin/cockpit/secret.html", context)
    add_never_cache_headers(response)
    return response
