from allauth.account import views as account_views
from django.contrib import admin
from django.urls import include, path

from gateway import health, sso
from gateway.admin_api.api import api as admin_api
from gateway.login_throttle import throttle_failed_logins
from gateway.telemetry import views as telemetry_views

# Ours before allauth's: the sign-in page, sign-out at the identity provider, the OpenID Connect
# login and callback with the redirect URI from PUBLIC_URL, password pages only with LOCAL_LOGIN.
accounts = [
    path("login/", throttle_failed_logins(sso.SignInView.as_view()), name="account_login"),
    path("logout/", sso.SignOutView.as_view(), name="account_logout"),
    path("oidc/sso/login/", sso.sso_login, name="openid_connect_login_sso"),
    path("oidc/sso/login/callback/", sso.sso_callback, name="openid_connect_callback_sso"),
    path("password/change/", sso.local_only(account_views.password_change), name="account_change_password"),
    path("password/set/", sso.local_only(account_views.password_set), name="account_set_password"),
    path("password/reset/", sso.local_only(account_views.password_reset), name="account_reset_password"),
    path("", include("allauth.urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", telemetry_views.metrics, name="metrics"),  # Prometheus; 404 unless METRICS_TOKEN is set
    path("admin/login/", throttle_failed_logins(sso.admin_login), name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("api/v1/", admin_api.urls),
    path("approvals/", include("approvals.urls")),  # decision links from mails
    # Served by the lean handler in gateway/asgi.py; listed here too so WSGI and reverse() know it.
    path("", include("gateway.proxy.urls")),
    path("", include("portal.urls")),
]
