"""A project's money in the admin: balance and spend on its page, credit granted once per form
(billing.services.grant_credits), adjustments as new ledger entries, never edits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.urls import reverse

from billing import selectors
from billing.models import LedgerEntry
from gateway.models import Project
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def project() -> Project:
    return ProjectFactory(name="Shop")


def _url(name: str, project: Project) -> str:
    return reverse(f"admin:gateway_project_{name}", args=[project.pk])


def _form(client: Client, url: str) -> dict[str, str]:
    """The form as the page serves it (with its idempotency key)."""
    form = client.get(url).context["form"]
    return {"idempotency_key": form.initial["idempotency_key"]}


def _balance(project: Project) -> Decimal:
    return selectors.project_money(project_ids=[project.pk])[project.pk].balance


def test_project_page_shows_balance_and_spend_in_the_currency(client: Client, project: Project) -> None:
    page = client.get(_url("change", project)).content.decode()

    assert "Balance" in page and "0.00 EUR" in page and "Spent this month" in page
    assert _url("grant_credit", project) in page and _url("adjustment", project) in page


def test_credit_is_granted_once_when_the_same_form_is_sent_twice(
    client: Client, project: Project, admin_user: AbstractBaseUser
) -> None:
    form = {**_form(client, _url("grant_credit", project)), "amount": "50.00", "reason": "pilot"}

    first = client.post(_url("grant_credit", project), form)
    second = client.post(_url("grant_credit", project), form)

    assert first.status_code == second.status_code == 302
    assert _balance(project) == Decimal("50.00")
    entry = LedgerEntry.objects.get(kind="grant")
    assert (entry.reason, entry.actor) == ("pilot", admin_user.get_username())
    assert "50.00 EUR" in client.get(_url("change", project)).content.decode()


@pytest.mark.parametrize(
    ("amount", "reason", "field"),
    [
        ("0", "pilot", "amount"),
        ("-5", "pilot", "amount"),
        ("1.234", "pilot", "amount"),
        ("10", "", "reason"),
        ("1e13", "pilot", "amount"),
    ],
)
def test_grant_error_is_shown_beside_the_field_when_invalid(
    client: Client, project: Project, amount: str, reason: str, field: str
) -> None:
    form = {**_form(client, _url("grant_credit", project)), "amount": amount, "reason": reason}

    response = client.post(_url("grant_credit", project), form)

    assert response.status_code == 200
    assert list(response.context["form"].errors) == [field]
    assert not LedgerEntry.objects.filter(kind="grant").exists()


def test_grant_error_from_the_service_is_shown_when_the_reason_is_blank(client: Client, project: Project) -> None:
    form = {**_form(client, _url("grant_credit", project)), "amount": "5", "reason": "   "}

    response = client.post(_url("grant_credit", project), form)

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors


def test_adjustment_adds_a_ledger_entry_either_way_when_posted(client: Client, project: Project) -> None:
    for amount in ("20.00", "-7.50"):
        form = {**_form(client, _url("adjustment", project)), "amount": amount, "reason": "correction"}
        assert client.post(_url("adjustment", project), form).status_code == 302

    assert sorted(LedgerEntry.objects.filter(kind="adjustment").values_list("amount", flat=True)) == [
        Decimal("-7.5"),
        Decimal("20"),
    ]
    assert _balance(project) == Decimal("12.50")


def test_adjustment_is_recorded_once_when_the_same_form_is_sent_twice(client: Client, project: Project) -> None:
    form = {**_form(client, _url("adjustment", project)), "amount": "-3", "reason": "refund reversed"}

    client.post(_url("adjustment", project), form)
    client.post(_url("adjustment", project), form)

    assert LedgerEntry.objects.filter(kind="adjustment").count() == 1


def test_adjustment_of_zero_is_refused_beside_the_amount(client: Client, project: Project) -> None:
    form = {**_form(client, _url("adjustment", project)), "amount": "0", "reason": "nothing"}

    response = client.post(_url("adjustment", project), form)

    assert response.status_code == 200 and list(response.context["form"].errors) == ["amount"]
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("action", ["grant_credit", "adjustment"])
def test_money_action_is_refused_when_a_staff_user_lacks_the_permission(
    staff_client: Client, project: Project, action: str
) -> None:
    form = {"idempotency_key": "x" * 32, "amount": "10", "reason": "sneaky"}

    assert staff_client.get(_url(action, project)).status_code == 403
    assert staff_client.post(_url(action, project), form).status_code == 403
    assert not LedgerEntry.objects.exists()
    assert _url(action, project) not in staff_client.get(_url("change", project)).content.decode()


def test_ledger_link_lists_only_the_project_entries(client: Client, project: Project) -> None:
    other = ProjectFactory(name="Other")
    for target in (project, other):
        form = {**_form(client, _url("grant_credit", target)), "amount": "1", "reason": f"for {target.name}"}
        client.post(_url("grant_credit", target), form)

    response = client.get(client.get(_url("change", project)).context["ledger_url"])

    assert response.status_code == 200
    assert "for Shop" in response.content.decode() and "for Other" not in response.content.decode()
