from django.contrib import admin
from django.urls import include, path

from gateway import health
from gateway.admin_api.api import api as admin_api
from gateway.telemetry import views as telemetry_views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", telemetry_views.metrics, name="metrics"),  # Prometheus; 404 unless METRICS_TOKEN is set
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", admin_api.urls),
    # Served by the lean handler in gateway/asgi.py; listed here too so WSGI and reverse() know it.
    path("", include("gateway.proxy.urls")),
    path("", include("portal.urls")),
]
