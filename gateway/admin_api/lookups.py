"""Find the objects an operation names, or answer with a clear 404 (path) or 400 (body)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.db.models import Model, QuerySet
from ninja.errors import HttpError

from gateway.errors import ValidationFailed

M = TypeVar("M", bound=Model)


def get_or_404(queryset: QuerySet[M], *, pk: int, what: str) -> M:
    """The object a URL names; 404 when there is none."""
    if (obj := queryset.filter(pk=pk).first()) is None:
        raise HttpError(404, f"{what} {pk} not found.")
    return obj


def get_or_400(queryset: QuerySet[M], *, pk: int, what: str, field: str) -> M:
    """An object a request body refers to by id; 400 naming the field when there is none."""
    if (obj := queryset.filter(pk=pk).first()) is None:
        raise ValidationFailed(f"Unknown {what} id: {pk}", field=field)
    return obj


def get_many_or_400(queryset: QuerySet[M], *, pks: Iterable[int], what: str, field: str) -> dict[int, M]:
    """Objects a request body refers to by id, keyed by id; 400 naming every unknown id."""
    wanted = list(dict.fromkeys(pks))
    found = {obj.pk: obj for obj in queryset.filter(pk__in=wanted)}
    if missing := [pk for pk in wanted if pk not in found]:
        raise ValidationFailed(f"Unknown {what} id(s): {', '.join(map(str, missing))}", field=field)
    return found
