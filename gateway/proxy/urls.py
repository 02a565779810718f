"""URLs of the lean /v1 handler (gateway/asgi.py resolves /v1 requests against this alone)."""

from django.urls import path

from gateway.proxy.endpoints import api

urlpatterns = [path("v1/", api.urls)]
