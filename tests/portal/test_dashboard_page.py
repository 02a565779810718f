"""The dashboard: my projects with spend against budget, 30 days of traffic, recent errors, my
pending requests and notifications (unread first, "mark all read")."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from gateway import services
from gateway.models import Notification
from tests.portal.conftest import PERSONAS, seed_usage

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("portal:dashboard")


def test_dashboard_redirects_to_sign_in_when_anonymous(world, login_as):
    response = login_as(None).get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={DASHBOARD}"


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p != "anonymous"])
def test_dashboard_answers_every_signed_in_persona(world, login_as, persona):
    assert login_as(world.persona(persona)).get(DASHBOARD).status_code == 200


def test_dashboard_shows_my_project_with_spend_budget_and_traffic_when_used(world, login_as):
    seed_usage(project=world.project_a, key=world.key_a, days=30, per_day=2)
    page = login_as(world.dev_a).get(DASHBOARD).content.decode()
    assert "Checkout" in page
    assert "Search" not in page  # dev_a is not in project B
    # 30 days x 2 calls x 0.0125 = 0.75; this month's part is at most that
    assert "of €" in page and "this month" in page
    assert ">60<" in page  # requests over 30 days
    assert 'data-chart="requests-chart"' in page and 'id="requests-chart"' in page
    assert "The same numbers as a table" in page
    assert f'href="/projects/{world.project_a.id}/keys/?new=1"' in page  # primary: New key


def test_dashboard_offers_request_access_when_in_no_project(world, login_as):
    page = login_as(world.newcomer).get(DASHBOARD).content.decode()
    assert "You are not in a project yet" in page
    assert reverse("portal:request-access") in page
    assert "New key" not in page


def test_manager_sees_every_project_of_the_unit(world, login_as):
    page = login_as(world.manager).get(DASHBOARD).content.decode()
    assert "Checkout" in page and "Search" in page
    assert 'data-dialog="new-key-dialog"' in page  # several projects: choose one


def test_dashboard_lists_recent_errors_of_my_projects_only(world, login_as):
    seed_usage(project=world.project_a, key=world.key_a, days=1, per_day=1, errors_per_day=2)
    seed_usage(project=world.project_b, days=1, per_day=0, errors_per_day=1, model="secret-model-b")
    page = login_as(world.dev_a).get(DASHBOARD).content.decode()
    assert page.count("/logs/req-") == 2
    assert "502 Bad Gateway" in page
    assert "secret-model-b" not in page


def test_notifications_are_listed_unread_first_and_marked_read(world, login_as):
    services.notify(users=[world.dev_a], kind="budget", title="Old news", link="/")
    Notification.objects.filter(user=world.dev_a).update(read_at="2026-01-01T00:00:00Z")
    services.notify(users=[world.dev_a], kind="decision", title="Credit approved", link="/requests/")
    services.notify(users=[world.dev_b], kind="decision", title="Not for Alice")
    client = login_as(world.dev_a)
    page = client.get(DASHBOARD).content.decode()
    assert page.index("Credit approved") < page.index("Old news")
    assert "1 unread" in page and "Not for Alice" not in page

    response = client.post(reverse("portal:notifications-read"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'id="notifications"' in response.content.decode() and "<html" not in response.content.decode()
    assert not Notification.objects.filter(user=world.dev_a, read_at__isnull=True).exists()
    assert Notification.objects.filter(user=world.dev_b, read_at__isnull=True).exists()


def test_mark_read_works_as_a_plain_post_and_refuses_get(world, login_as):
    client = login_as(world.dev_a)
    services.notify(users=[world.dev_a], kind="budget", title="Budget at 80%")
    assert client.get(reverse("portal:notifications-read")).status_code == 405
    response = client.post(reverse("portal:notifications-read"))
    assert response.status_code == 302 and response["Location"] == DASHBOARD
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_notification_links_other_than_local_paths_are_not_links(world, login_as):
    services.notify(users=[world.dev_a], kind="x", title="Click me", link="javascript:alert(1)")
    page = login_as(world.dev_a).get(DASHBOARD).content.decode()
    assert "javascript:alert(1)" not in page


def test_dashboard_query_count_does_not_grow_with_projects(world, login_as, django_assert_max_num_queries):
    from billing import services as billing_services

    for n in range(20):
        project = services.create_project(name=f"Extra {n}", business_unit=world.unit, allowed_models=["gpt-portal"])
        billing_services.set_budget(target=project, monthly_limit=Decimal("10"))
        seed_usage(project=project, days=3, per_day=1, errors_per_day=1)
    client = login_as(world.manager)
    with django_assert_max_num_queries(16):
        page = client.get(DASHBOARD).content.decode()
    assert "Extra 19" in page


def test_dashboard_lists_my_pending_requests(world, login_as):
    from approvals import services as approvals_services

    approvals_services.file_credit_request(
        user=world.dev_a, project=world.project_a, amount="50.00", reason="Load test before the sale."
    )
    approvals_services.file_join_request(user=world.dev_b, project=world.project_a, reason="Bob's own request.")
    page = login_as(world.dev_a).get(DASHBOARD).content.decode()
    assert "Credit of €50.00 for Checkout" in page and ">Pending<" in page
    assert "Join a project" not in page  # Bob's, not mine
