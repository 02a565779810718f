"""The portal's pages (gateway/urls.py includes this module by its dotted name)."""

from django.urls import path

from portal.views import catalogue, dashboard, keys, logs, projects, requests, units

app_name = "portal"
urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("notifications/read/", dashboard.mark_notifications_read, name="notifications-read"),
    path("projects/<int:project_id>/", projects.overview, name="project"),
    path("projects/<int:project_id>/usage/", projects.usage, name="project-usage"),
    path("projects/<int:project_id>/members/", projects.members, name="project-members"),
    path("projects/<int:project_id>/ledger/", projects.ledger, name="project-ledger"),
    path("projects/<int:project_id>/keys/", keys.key_list, name="project-keys"),
    path("projects/<int:project_id>/keys/new/", keys.create, name="project-key-create"),
    path("projects/<int:project_id>/keys/<int:key_id>/revoke/", keys.revoke, name="project-key-revoke"),
    path("projects/<int:project_id>/keys/<int:key_id>/rotate/", keys.rotate, name="project-key-rotate"),
    path("logs/", logs.log_list, name="logs"),
    path("logs/<str:request_id>/", logs.detail, name="log-detail"),
    path("models/", catalogue.models, name="models"),
    path("requests/", requests.request_list, name="requests"),
    path("requests/access/new/", requests.new_access_request, name="request-access"),
    path("requests/credit/new/", requests.new_credit_request, name="request-credit"),
    path("requests/<str:kind>/<int:request_id>/", requests.detail, name="request-detail"),
    path("requests/<str:kind>/<int:request_id>/cancel/", requests.cancel, name="request-cancel"),
    path("requests/<str:kind>/<int:request_id>/decide/", requests.decide, name="request-decide"),
    path("units/", units.unit_list, name="units"),
    path("units/<int:unit_id>/", units.report, name="unit-report"),
    path("units/<int:unit_id>/report.csv", units.report_csv, name="unit-report-csv"),
]
