"""Deciding from a mail's link (gateway/urls.py includes this module under approvals/)."""

from django.urls import path

from approvals import views

app_name = "approvals"
urlpatterns = [
    path("t/<str:token>/", views.open_link, name="open-link"),
    path("decide/<str:kind>/<int:request_id>/", views.decide, name="decide"),
]
