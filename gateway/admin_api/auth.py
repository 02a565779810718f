"""Bearer admin tokens for the management API (see `manage.py issue_admin_token`)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from gateway import selectors


class AdminTokenAuth(HttpBearer):
    def __call__(self, request: HttpRequest) -> Any:
        # Replaces HttpBearer.__call__, which logs the whole header (the token) under DEBUG
        # when the scheme is not "Bearer".
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != self.openapi_scheme or not token.strip():
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = selectors.user_for_admin_token(secret=token)
        if user is not None:
            request.user = user
        return user
