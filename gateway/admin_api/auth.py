"""Bearer tokens for the management API: our admin tokens (`manage.py issue_admin_token`) and,
when single sign-on is configured, access tokens the identity provider issued to an administrator
(checked at its userinfo endpoint through mozilla-django-oidc, gateway/sso.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from gateway import selectors, sso
from gateway.audit import context as audit_context
from gateway.secrets_format import ADMIN_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX, display_prefix


class AdminTokenAuth(HttpBearer):
    def __call__(self, request: HttpRequest) -> Any:
        # Replaces HttpBearer.__call__, which logs the whole header (the token) under DEBUG
        # when the scheme is not "Bearer".
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != self.openapi_scheme or not token.strip():
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if token.startswith(ADMIN_TOKEN_PREFIX):
            user = selectors.user_for_admin_token(secret=token)
        elif token.startswith(VIRTUAL_KEY_PREFIX) or len(token) > 8192:
            user = None  # a virtual key is never an identity-provider token: don't send it there
        else:
            try:
                user = sso.user_for_idp_token(token=token)
            except sso.IdpUnavailable as exc:
                raise HttpError(503, f"{exc} Try again, or use an admin token (manage.py issue_admin_token).") from None
        if user is not None:
            request.user = user
            audit_context.set_actor(_actor(user, token))
        return user


def _actor(user: Any, token: str) -> audit_context.Actor:
    """Who the audit log names: the admin token (its display prefix) or the IdP bearer's user."""
    if token.startswith(ADMIN_TOKEN_PREFIX):
        label = f"{display_prefix(token, ADMIN_TOKEN_PREFIX)}… ({user.get_username()})"
        return audit_context.Actor(audit_context.ActorType.ADMIN_TOKEN, str(user.pk), label)
    return audit_context.Actor(audit_context.ActorType.OIDC, str(user.pk), user.get_username())
