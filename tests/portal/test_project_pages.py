"""A project's tabs: overview, usage, members, ledger; who may see them (others: 404)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import services as billing_services
from gateway import services
from tests.portal.conftest import seed_usage

pytestmark = pytest.mark.django_db

TABS = ["portal:project", "portal:project-usage", "portal:project-members", "portal:project-ledger"]


@pytest.mark.parametrize("tab", TABS)
@pytest.mark.parametrize(
    ("persona", "status"),
    [("dev_a", 200), ("dev_b", 404), ("manager", 200), ("admin", 200), ("newcomer", 404)],
)
def test_project_tabs_answer_by_persona(world, login_as, tab, persona, status):
    url = reverse(tab, args=[world.project_a.id])
    assert login_as(world.persona(persona)).get(url).status_code == status


@pytest.mark.parametrize("tab", TABS)
def test_project_tabs_send_anonymous_people_to_sign_in(world, login_as, tab):
    url = reverse(tab, args=[world.project_a.id])
    response = login_as(None).get(url)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.parametrize("tab", TABS)
def test_a_project_that_does_not_exist_is_the_same_404(world, login_as, tab):
    assert login_as(world.admin).get(reverse(tab, args=[999_999])).status_code == 404


def test_overview_shows_budget_balance_spend_models_and_members(world, login_as):
    seed_usage(project=world.project_a, key=world.key_a, days=1, per_day=4)  # 4 x 0.0125 = 0.05 today
    page = login_as(world.dev_a).get(reverse("portal:project", args=[world.project_a.id])).content.decode()
    assert "Budget <strong>€100.00</strong> a month" in page
    assert "Balance <strong>€99.95</strong>" in page
    assert "€0.05" in page
    assert "gpt-portal-mini" in page and "gpt-portal" in page
    assert "owner: Alice Archer" in page
    assert "New key" in page and f"/requests/credit/new/?project={world.project_a.id}" in page
    assert f"/logs/?project={world.project_a.id}" in page  # the request log of this project


def test_overview_of_a_project_without_budget_says_so(world, login_as):
    page = login_as(world.dev_b).get(reverse("portal:project", args=[world.project_b.id])).content.decode()
    assert "No budget set" in page


def test_usage_shows_per_day_charts_and_tables_by_model_and_key(world, login_as):
    batch = services.create_virtual_key(project=world.project_a, name="batch-jobs").key
    seed_usage(project=world.project_a, key=world.key_a, days=3, per_day=2)
    seed_usage(project=world.project_a, key=batch, model="gpt-portal-mini", days=2, per_day=1)
    page = login_as(world.dev_a).get(reverse("portal:project-usage", args=[world.project_a.id])).content.decode()
    for chart in ("spend-chart", "requests-chart", "tokens-chart"):
        assert f'data-chart="{chart}"' in page and f'id="{chart}"' in page
    assert "By model" in page and "By key" in page
    assert "checkout-web" in page and "batch-jobs" in page
    assert "<code>gpt-portal-mini</code>" in page
    assert "The same numbers as a table" in page


def test_usage_without_traffic_offers_a_key(world, login_as):
    page = login_as(world.dev_b).get(reverse("portal:project-usage", args=[world.project_b.id])).content.decode()
    assert "No usage yet" in page and "?new=1" in page


def test_members_lists_roles_and_owners_see_who_can_do_what(world, login_as):
    url = reverse("portal:project-members", args=[world.project_a.id])
    page = login_as(world.dev_a).get(url).content.decode()
    assert "Alice Archer" in page and ">Owner<" in page and "Maria Manager" in page
    assert "Who can do what" in page
    services.add_member(project=world.project_a, user=world.dev_b)
    page = login_as(world.dev_b).get(url).content.decode()
    assert "Bob Baker" in page and "Who can do what" not in page  # a plain member


def test_ledger_lists_entries_newest_first_in_keyset_pages(world, login_as):
    for n in range(60):
        billing_services.adjust_balance(project=world.project_a, amount=Decimal(n + 1), reason=f"Refund number {n + 1}")
    client = login_as(world.dev_a)
    url = reverse("portal:project-ledger", args=[world.project_a.id])
    first = client.get(url).content.decode()
    assert first.index("Refund number 60") < first.index("Refund number 59")
    assert re.search(r"Refund number 11\b", first) and not re.search(r"Refund number 10\b", first)  # 50 a page
    cursor = re.search(r'\?before=([^"]+)"', first).group(1)
    second = client.get(f"{url}?before={cursor}").content.decode()
    assert re.search(r"Refund number 10\b", second) and not re.search(r"Refund number 11\b", second)
    assert "Monthly allowance" in second
    assert "Newest" in second
    assert "+€60.00" in first


def test_ledger_with_a_broken_cursor_shows_the_first_page_and_says_why(world, login_as):
    page = login_as(world.dev_a).get(reverse("portal:project-ledger", args=[world.project_a.id]) + "?before=garbage")
    assert page.status_code == 200 and "cursor is not valid" in page.content.decode()


def test_ledger_of_a_project_with_no_entries_explains_it(world, login_as):
    page = login_as(world.dev_b).get(reverse("portal:project-ledger", args=[world.project_b.id])).content.decode()
    assert "No entries yet" in page


@pytest.mark.parametrize("tab", TABS)
def test_project_tabs_have_bounded_queries(world, login_as, django_assert_max_num_queries, tab):
    for n in range(20):
        services.create_virtual_key(project=world.project_a, name=f"k{n}")
    seed_usage(project=world.project_a, key=world.key_a, days=30, per_day=2)
    client = login_as(world.dev_a)
    with django_assert_max_num_queries(20):  # a constant: 3 report queries on the usage tab
        assert client.get(reverse(tab, args=[world.project_a.id])).status_code == 200
