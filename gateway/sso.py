"""Sign-in: allauth configured from the environment, the views in front of allauth's, sign-out at
the identity provider, and the IdP's access tokens on the management API.

The OpenID provider is one allauth "openid_connect" app with provider id `sso`, built from
settings (OIDC_*) at each request rather than stored in the database, so the environment is the
only place it is configured. The redirect URI is always {PUBLIC_URL}/accounts/oidc/sso/login/callback/,
whatever Host the request came with. Roles follow the groups claim through gateway.identity.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.views import LoginView, LogoutView
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp, SocialLogin
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from gateway import identity, selectors
from gateway.errors import ValidationFailed
from gateway.login_throttle import request_address

logger = logging.getLogger("gateway.sso")

PROVIDER_ID = "sso"  # the SocialApp's provider_id: part of the redirect URI
ID_TOKEN_SESSION_KEY = "gateway_sso_id_token"  # noqa: S105 - a session key name


class IdpUnavailable(Exception):
    """The identity provider did not answer (or not with what OpenID Connect promises)."""


@dataclass(frozen=True)
class SsoConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    groups_claim: str
    name: str

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


def sso_config() -> SsoConfig | None:
    """The OpenID provider from settings (checked at start-up), or None when SSO is not configured."""
    if not settings.OIDC_ISSUER:
        return None
    return SsoConfig(
        issuer=settings.OIDC_ISSUER.rstrip("/"),
        client_id=settings.OIDC_CLIENT_ID,
        client_secret=settings.OIDC_CLIENT_SECRET,
        scopes=tuple(settings.OIDC_SCOPES),
        groups_claim=settings.OIDC_GROUPS_CLAIM,
        name=settings.OIDC_PROVIDER_NAME,
    )


def callback_url() -> str:
    return settings.PUBLIC_URL + reverse("openid_connect_callback", kwargs={"provider_id": PROVIDER_ID})


# --- discovery, fetched lazily and kept for OIDC_DISCOVERY_TTL seconds per issuer ---

_discovery: dict[str, tuple[float, dict[str, Any]]] = {}
_discovery_lock = threading.Lock()


def discovery(*, config: SsoConfig) -> dict[str, Any]:
    now = time.monotonic()
    with _discovery_lock:
        cached = _discovery.get(config.issuer)
    if cached and now - cached[0] < settings.OIDC_DISCOVERY_TTL:
        return cached[1]
    try:
        response = requests.get(config.discovery_url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("identity provider discovery failed: %s", type(exc).__name__)
        if cached:  # a stale document is better than none while the IdP hiccups
            return cached[1]
        raise IdpUnavailable(f"The identity provider at {config.issuer} does not answer.") from exc
    required = ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer")
    if not isinstance(document, dict) or any(not isinstance(document.get(k), str) for k in required):
        raise IdpUnavailable(f"The identity provider at {config.issuer} sent an incomplete discovery document.")
    with _discovery_lock:
        _discovery[config.issuer] = (now, document)
    return document


# --- allauth: the provider's adapter and the two views on its paths ---


class SsoOAuth2Adapter(OpenIDConnectOAuth2Adapter):
    """allauth's OpenID Connect adapter with the redirect URI built from PUBLIC_URL (never from the
    request's Host), the discovery document cached, and the raw ID token kept for sign-out."""

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request, PROVIDER_ID)

    @property
    def openid_config(self) -> dict[str, Any]:
        config = sso_config()
        if config is None:
            raise Http404("Single sign-on is not configured.")
        return discovery(config=config)

    @property
    def basic_auth(self) -> bool:
        methods = self.openid_config.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return "client_secret_post" not in methods and "client_secret_basic" in methods

    def get_callback_url(self, request: HttpRequest, app: SocialApp) -> str:
        return callback_url()

    def complete_login(self, request: HttpRequest, app: SocialApp, token: Any, **kwargs: Any) -> SocialLogin:
        login = super().complete_login(request, app, token, **kwargs)
        request._gateway_sso_id_token = kwargs["response"].get("id_token")  # type: ignore[attr-defined]
        return login


def _unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    message = str(exc) if isinstance(exc, IdpUnavailable) else "The identity provider does not answer."
    return render(request, "socialaccount/authentication_error.html", {"idp_message": message}, status=503)


def sso_login(request: HttpRequest) -> HttpResponse:
    """POST: redirect to the identity provider (a GET shows a confirmation page, allauth's rule)."""
    if sso_config() is None:
        raise Http404("Single sign-on is not configured.")
    try:
        return OAuth2LoginView.adapter_view(SsoOAuth2Adapter)(request)
    except (IdpUnavailable, requests.RequestException) as exc:
        return _unavailable(request, exc)


def sso_callback(request: HttpRequest) -> HttpResponse:
    if sso_config() is None:
        raise Http404("Single sign-on is not configured.")
    try:
        return OAuth2CallbackView.adapter_view(SsoOAuth2Adapter)(request)
    except (IdpUnavailable, requests.RequestException) as exc:
        return _unavailable(request, exc)


# --- allauth's adapters ---


def _claims_sets(sociallogin: SocialLogin) -> list[dict[str, Any]]:
    data = sociallogin.account.extra_data or {}
    return [data.get("id_token"), data.get("userinfo")]


class SsoProvider(OpenIDConnectProvider):
    """allauth's OpenID Connect provider whose OAuth2 adapter is ours (the authorization request
    carries the same PUBLIC_URL redirect URI as the token request)."""

    def get_oauth2_adapter(self, request: HttpRequest) -> SsoOAuth2Adapter:
        return SsoOAuth2Adapter(request)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def get_provider(self, request: HttpRequest, provider: str, client_id: str | None = None) -> Any:
        if provider in ("openid_connect", PROVIDER_ID) and (app := next(iter(self.list_apps(request)), None)):
            return SsoProvider(request, app=app)
        return super().get_provider(request, provider, client_id)

    def list_apps(self, request: HttpRequest | None, provider: str | None = None, client_id: str | None = None) -> list:
        config = sso_config()
        if config is None or provider not in (None, "openid_connect", PROVIDER_ID):
            return []
        if client_id is not None and client_id != config.client_id:
            return []
        app = SocialApp(
            provider="openid_connect",
            provider_id=PROVIDER_ID,
            name=config.name,
            client_id=config.client_id,
            secret=config.client_secret,
            settings={"server_url": config.issuer, "scope": list(config.scopes), "fetch_userinfo": True},
        )
        return [app]

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return True  # users come from the identity provider (refusals: pre_social_login)

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        groups = identity.groups_from_claims(claims=_claims_sets(sociallogin))
        if refusal := identity.sign_in_refusal(groups=groups):
            raise ImmediateHttpResponse(render(request, "socialaccount/refused.html", {"reason": refusal}, status=403))
        if not sociallogin.is_existing:
            email = next(iter(sociallogin.email_addresses), None)
            user = identity.user_to_link(
                email=email.email if email else None,
                email_verified=bool(email and email.verified),
                provider=PROVIDER_ID,
            )
            if user is not None:
                sociallogin.connect(request, user)
                logger.info("linked a first SSO sign-in to the pre-provisioned user %s", user.pk)
        if sociallogin.is_existing:
            _sync(sociallogin.user, groups)

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> AbstractBaseUser:
        user = super().save_user(request, sociallogin, form)
        _sync(user, identity.groups_from_claims(claims=_claims_sets(sociallogin)))
        return user


def _sync(user: AbstractBaseUser, groups: set[str]) -> None:
    changes = identity.sync_idp_roles(user=user, groups=groups)
    if changes.granted or changes.revoked:
        logger.info("roles of user %s from the identity provider: +%s -%s", user.pk, changes.granted, changes.revoked)
    user.refresh_from_db(fields=["is_staff", "is_superuser"])


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False  # no self-signup: users come from the identity provider, the admin or the API

    def get_client_ip(self, request: HttpRequest) -> str:
        """The address sign-in limits count by: the same as the admin's and /v1's (TRUSTED_PROXY_COUNT)."""
        return request_address(request)

    def authenticate(self, request: HttpRequest, **credentials: Any) -> AbstractBaseUser | None:
        if not settings.LOCAL_LOGIN:
            return None
        return super().authenticate(request, **credentials)

    def post_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> HttpResponse:
        id_token = getattr(request, "_gateway_sso_id_token", None)
        if id_token:
            request.session[ID_TOKEN_SESSION_KEY] = id_token
        return super().post_login(request, user, **kwargs)


# --- pages ---


def sign_in_context() -> dict[str, Any]:
    config = sso_config()
    return {
        "sso_name": config.name if config else None,
        "sso_login_url": reverse("openid_connect_login", kwargs={"provider_id": PROVIDER_ID}) if config else None,
        "local_login": settings.LOCAL_LOGIN,
    }


class SignInView(LoginView):
    """/accounts/login/: the identity provider's button and, when LOCAL_LOGIN is on, the form."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LOCAL_LOGIN:
            context = self.get_context_data(local_login_refused=True)
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **sign_in_context()}


class SignOutView(LogoutView):
    """Signs out here, then at the identity provider when the session came from it and the
    provider has an end_session_endpoint (RP-initiated logout)."""

    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        id_token = self.request.session.get(ID_TOKEN_SESSION_KEY)
        came_from_sso = id_token is not None
        response = super().post(*args, **kwargs)
        config = sso_config()
        if not came_from_sso or config is None:
            return response
        try:
            endpoint = discovery(config=config).get("end_session_endpoint")
        except IdpUnavailable:
            return response
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return response
        query = {
            "client_id": config.client_id,
            "post_logout_redirect_uri": settings.PUBLIC_URL + reverse("account_login"),
            "id_token_hint": id_token,
        }
        return HttpResponseRedirect(endpoint + ("&" if "?" in endpoint else "?") + urlencode(query))


def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin's login page: the portal's sign-in page when local sign-in is off."""
    if settings.LOCAL_LOGIN:
        from django.contrib import admin

        return admin.site.login(request)
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("admin:index")
    return HttpResponseRedirect(reverse("account_login") + "?" + urlencode({"next": next_url}))


def local_only(view: Any) -> Any:
    """Password pages exist only while local sign-in is on."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LOCAL_LOGIN:
            raise Http404("Local sign-in is off.")
        return view(request, *args, **kwargs)

    return wrapped


# --- the identity provider's access tokens on the management API (mozilla-django-oidc) ---


class IdpTokenBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with its endpoints from discovery: an access token is checked
    at the IdP's userinfo endpoint, its user found (linked account, then verified email) or created,
    and the user's roles synced from the groups claim."""

    def __init__(self, config: SsoConfig) -> None:  # no super().__init__: it reads OIDC_OP_* settings
        document = discovery(config=config)
        if not isinstance(document.get("userinfo_endpoint"), str):
            raise IdpUnavailable("The identity provider has no userinfo endpoint.")
        from django.contrib.auth import get_user_model

        self.config = config
        self.OIDC_OP_USER_ENDPOINT = document["userinfo_endpoint"]
        self.OIDC_OP_TOKEN_ENDPOINT = document["token_endpoint"]
        self.OIDC_OP_JWKS_ENDPOINT = document["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = config.client_id
        self.OIDC_RP_CLIENT_SECRET = config.client_secret
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return {"OIDC_TIMEOUT": settings.OIDC_TIMEOUT, "OIDC_CREATE_USER": True}.get(attr, *args or (None,))

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return isinstance(claims, dict) and isinstance(claims.get("sub"), str) and bool(claims["sub"])

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        linked = self.UserModel.objects.filter(
            socialaccount__provider=PROVIDER_ID, socialaccount__uid=claims["sub"], is_active=True
        )
        if linked.exists():
            return linked
        user = identity.user_to_link(
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            email_verified=claims.get("email_verified") is True,
            provider=PROVIDER_ID,
        )
        return self.UserModel.objects.filter(pk=user.pk) if user else self.UserModel.objects.none()

    def create_user(self, claims: dict[str, Any]) -> AbstractBaseUser:
        return self._synced(identity.create_sso_user(provider=PROVIDER_ID, claims=claims), claims)

    def update_user(self, user: AbstractBaseUser, claims: dict[str, Any]) -> AbstractBaseUser:
        identity.link_sso_account(user=user, provider=PROVIDER_ID, claims=claims)
        return self._synced(user, claims)

    def _synced(self, user: AbstractBaseUser, claims: dict[str, Any]) -> AbstractBaseUser:
        identity.sync_idp_roles(user=user, groups=identity.groups_from_claims(claims=[claims]))
        user.refresh_from_db()
        return user


def user_for_idp_token(*, token: str) -> AbstractBaseUser | None:
    """The active administrator the identity provider's access TOKEN belongs to, or None (not a
    token the IdP accepts, or its user is not an administrator). Raises IdpUnavailable when the IdP
    does not answer. A validated token's user is cached for OIDC_TOKEN_CACHE_TTL seconds, keyed by
    the token's hash (the token itself is never stored or logged)."""
    config = sso_config()
    if config is None:
        return None
    cache_key = "gateway:idp-token:" + hashlib.sha256(token.encode()).hexdigest()
    if (user_id := cache.get(cache_key)) is not None:
        user = selectors.user_by_id_or_username(user=user_id) if user_id else None
        return user if user is not None and selectors.is_administrator(user) else None
    backend = IdpTokenBackend(config)
    try:
        user = backend.get_or_create_user(token, None, None)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (400, 401, 403):
            cache.set(cache_key, 0, settings.OIDC_TOKEN_CACHE_TTL)
            return None
        raise IdpUnavailable(f"The identity provider answered {status} when checking the token.") from exc
    except requests.RequestException as exc:
        raise IdpUnavailable("The identity provider does not answer.") from exc
    except (SuspiciousOperation, ValidationFailed, ValueError, TypeError, KeyError) as exc:
        logger.warning("an identity provider token was refused: %s", type(exc).__name__)
        return None
    if user is None:
        return None
    cache.set(cache_key, user.pk, settings.OIDC_TOKEN_CACHE_TTL)
    return user if selectors.is_administrator(user) else None
