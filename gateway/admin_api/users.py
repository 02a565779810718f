"""/api/v1/users: the people who sign in (through single sign-on, or locally where LOCAL_LOGIN is on)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from ninja import Router, Status

from gateway import identity
from gateway.admin_api.schemas import ErrorOut, UserIn, UserOut

router = Router(tags=["users"])


def _user_out(user: AbstractBaseUser) -> dict[str, Any]:
    return {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "is_active": user.is_active,
        "has_password": user.has_usable_password(),
        "sso_linked": bool(user.socialaccount_set.all()),
        "roles": [vars(role) for role in identity.user_roles(user=user)],
        "date_joined": user.date_joined,
        "last_login": user.last_login,
    }


@router.get("", response=list[UserOut])
def list_users(request: HttpRequest) -> list[dict[str, Any]]:
    return [_user_out(user) for user in identity.list_users()]


@router.post("", response={201: UserOut, 400: ErrorOut})
def create_user(request: HttpRequest, payload: UserIn) -> Status[dict[str, Any]]:
    password = payload.password.get_secret_value() if payload.password is not None else None
    user = identity.create_user(username=payload.username, email=payload.email, password=password)
    return Status(201, _user_out(identity.list_users().get(pk=user.pk)))
