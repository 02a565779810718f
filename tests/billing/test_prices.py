"""The price list: `manage.py load_prices`, billing.prices and the billing admin around it.

The shipped list (billing/data/prices.json) is in USD; BILLING_CURRENCY is EUR unless a test says
otherwise. Time is frozen in November 2026, after the shipped list took effect.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from billing import prices
from billing import services as billing_services
from billing.models import AlertEvent, Budget, LedgerEntry, PriceListEntry
from gateway import services
from gateway.models import Deployment, Provider

pytestmark = pytest.mark.django_db

SHIPPED = Path(prices.__file__).resolve().parent / "data" / "prices.json"
URLS = {"azure_openai": "https://example-resource.openai.azure.com", "openai_compatible": "http://127.0.0.1:9/v1"}


@pytest.fixture(autouse=True)
def _november_2026(settings):  # type: ignore[no-untyped-def]
    settings.BILLING_CURRENCY = "EUR"
    with time_machine.travel(dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC), tick=False):
        yield


def _shipped() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text())


def _price_list(*entries: dict[str, Any], currency: str = "EUR", effective_date: str = "2026-11-01") -> dict[str, Any]:
    return {"effective_date": effective_date, "currency": currency, "prices": list(entries)}


def _entry(kind: str, upstream_model: str, input_price: str, output_price: str, cached: str | None = None) -> dict:
    return {
        "provider_kind": kind,
        "upstream_model": upstream_model,
        "input_price": input_price,
        "output_price": output_price,
        "cached_input_price": cached,
    }


def _deployment(
    kind: str, upstream_model: str, *, model: str | None = None, input_price: str | None = None
) -> Deployment:
    provider = Provider.objects.filter(kind=kind).first() or services.create_provider(
        name=kind, kind=kind, base_url=URLS.get(kind, ""), approved=True
    )
    price = None if input_price is None else Decimal(input_price)
    spec = services.DeploymentSpec(
        provider=provider, upstream_model=upstream_model, input_price=price, output_price=price
    )
    return services.create_model(name=model or upstream_model, deployments=[spec]).deployments.get()


def _prices_of(deployment: Deployment) -> tuple[Decimal | None, ...]:
    deployment.refresh_from_db()
    return (deployment.input_price, deployment.output_price, deployment.cached_input_price)


def _load_prices(*args: str) -> str:
    out = StringIO()
    call_command("load_prices", *args, stdout=out)
    return out.getvalue()


def _write(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "prices.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


# --- the shipped list ---


def test_shipped_list_prices_the_common_models_of_every_provider_when_read() -> None:
    data = _shipped()
    rows = prices.parse_price_list(data=data, rate=Decimal(1))

    listed = {(row.provider_kind, row.upstream_model) for row in rows}
    openai = [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
    ]
    openai += ["text-embedding-3-small", "text-embedding-3-large"]
    anthropic = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "claude-3-5-haiku-latest"]
    assert {("openai", m) for m in openai} <= listed
    assert {("azure_openai", m) for m in openai} <= listed
    assert {("anthropic", m) for m in anthropic} <= listed
    assert data["currency"] == "USD"
    assert data["effective_date"] == "2026-11-01"
    assert all(row.source.startswith("https://") for row in rows)
    chat = [row for row in rows if "embedding" not in row.upstream_model]
    assert all(row.output_price >= row.input_price > 0 for row in chat)
    assert all(row.cached_input_price is None or row.cached_input_price < row.input_price for row in rows)


def test_shipped_list_is_stored_in_billing_currency_when_loaded_with_a_rate() -> None:
    loaded = prices.load_price_list(data=_shipped(), rate=Decimal("0.5"))

    assert loaded == len(_shipped()["prices"]) == PriceListEntry.objects.count()
    entry = PriceListEntry.objects.get(provider_kind="openai", upstream_model="gpt-4o")
    assert (entry.input_price, entry.output_price, entry.cached_input_price) == (
        Decimal("1.25"),
        Decimal("5.00"),
        Decimal("0.625"),
    )
    assert entry.currency == "EUR"
    assert entry.effective_date == dt.date(2026, 11, 1)
    assert entry.source == "https://openai.com/api/pricing/"
    embedding = PriceListEntry.objects.get(provider_kind="openai", upstream_model="text-embedding-3-small")
    assert embedding.cached_input_price is None


def test_list_is_stored_as_is_when_already_in_billing_currency(settings) -> None:  # type: ignore[no-untyped-def]
    settings.BILLING_CURRENCY = "USD"

    prices.load_price_list(data=_shipped())

    entry = PriceListEntry.objects.get(provider_kind="anthropic", upstream_model="claude-sonnet-4-5")
    assert (entry.input_price, entry.output_price, entry.currency) == (Decimal(3), Decimal(15), "USD")


def test_converted_prices_are_rounded_to_six_decimals_when_loaded() -> None:
    data = _price_list(_entry("openai", "gpt-4o", "2.50", "10", "0.0000013"), currency="USD")

    prices.load_price_list(data=data, rate=Decimal("0.8642137"))

    entry = PriceListEntry.objects.get()
    assert (entry.input_price, entry.output_price, entry.cached_input_price) == (
        Decimal("2.160534"),
        Decimal("8.642137"),
        Decimal("0.000001"),
    )


# --- reloading ---


def test_reload_changes_nothing_when_the_list_is_the_same() -> None:
    prices.load_price_list(data=_shipped(), rate=Decimal("0.9"))
    before = {entry.pk: entry.updated_at for entry in PriceListEntry.objects.all()}

    assert prices.load_price_list(data=_shipped(), rate=Decimal("0.9")) == 0

    assert {entry.pk: entry.updated_at for entry in PriceListEntry.objects.all()} == before


def test_reload_updates_the_entries_in_place_when_the_rate_changes() -> None:
    prices.load_price_list(data=_shipped(), rate=Decimal("0.9"))

    assert prices.load_price_list(data=_shipped(), rate=Decimal("1.1")) == len(_shipped()["prices"])

    assert PriceListEntry.objects.count() == len(_shipped()["prices"])
    assert PriceListEntry.objects.get(provider_kind="openai", upstream_model="gpt-4o").input_price == Decimal("2.75")


def test_a_later_list_adds_entries_beside_the_earlier_ones_when_loaded() -> None:
    prices.load_price_list(data=_price_list(_entry("openai", "gpt-4o", "2", "8")))
    prices.load_price_list(data=_price_list(_entry("openai", "gpt-4o", "3", "9"), effective_date="2026-11-10"))

    assert list(PriceListEntry.objects.values_list("effective_date", "input_price")) == [
        (dt.date(2026, 11, 10), Decimal(3)),
        (dt.date(2026, 11, 1), Decimal(2)),
    ]


# --- applying prices to deployments ---


def test_only_unpriced_deployments_get_the_list_price_when_applied() -> None:
    unpriced = _deployment("openai", "gpt-4o")
    priced = _deployment("openai", "gpt-4o", model="gpt-4o-custom-priced", input_price="9")
    anthropic = _deployment("anthropic", "claude-sonnet-4-5")
    local = _deployment("openai_compatible", "llama-3-70b")
    prices.load_price_list(data=_shipped(), rate=Decimal(1))

    result = prices.apply_prices()

    assert _prices_of(unpriced) == (Decimal("2.5"), Decimal(10), Decimal("1.25"))
    assert _prices_of(anthropic) == (Decimal(3), Decimal(15), Decimal("0.3"))
    assert _prices_of(priced) == (Decimal(9), Decimal(9), None)
    assert _prices_of(local) == (None, None, None)
    assert [d.pk for d in result.priced] == [anthropic.pk, unpriced.pk]
    assert [d.pk for d in result.unpriced] == [local.pk]


def test_priced_deployments_get_the_list_price_too_when_overwriting() -> None:
    priced = _deployment("openai", "gpt-4o", input_price="9")
    already_at_list_price = _deployment("openai", "gpt-4o-mini")
    prices.load_price_list(data=_shipped(), rate=Decimal(1))
    prices.apply_prices()

    result = prices.apply_prices(overwrite=True)

    assert _prices_of(priced) == (Decimal("2.5"), Decimal(10), Decimal("1.25"))
    assert [d.pk for d in result.priced] == [priced.pk]  # unchanged prices are not written again
    assert _prices_of(already_at_list_price)[0] == Decimal("0.15")


def test_the_newest_price_in_effect_applies_when_the_list_has_several_dates() -> None:
    deployment = _deployment("openai", "gpt-4o")
    prices.load_price_list(data=_price_list(_entry("openai", "gpt-4o", "1", "1"), effective_date="2026-10-01"))
    prices.load_price_list(data=_price_list(_entry("openai", "gpt-4o", "2", "2"), effective_date="2026-11-01"))
    prices.load_price_list(data=_price_list(_entry("openai", "gpt-4o", "3", "3"), effective_date="2026-12-01"))

    prices.apply_prices()

    assert _prices_of(deployment) == (Decimal(2), Decimal(2), None)


def test_entries_in_another_currency_are_not_applied_when_billing_currency_changed(settings) -> None:  # type: ignore[no-untyped-def]
    settings.BILLING_CURRENCY = "USD"
    prices.load_price_list(data=_shipped())
    settings.BILLING_CURRENCY = "EUR"
    deployment = _deployment("openai", "gpt-4o")

    result = prices.apply_prices()

    assert _prices_of(deployment) == (None, None, None)
    assert [d.pk for d in result.unpriced] == [deployment.pk]


# --- the command ---


@pytest.mark.django_db(transaction=True)
def test_command_loads_the_shipped_list_and_reports_what_it_priced_when_given_a_rate() -> None:
    _deployment("openai", "gpt-4o", model="gpt-4o")
    _deployment("openai_compatible", "llama-3-70b", model="llama")

    output = _load_prices("--rate", "0.5")

    count = len(_shipped()["prices"])
    assert PriceListEntry.objects.count() == count
    assert f"Price list of 2026-11-01 (USD, converted to EUR at 0.5): {count} entries loaded, {count} new" in output
    assert "Deployments priced: 1." in output
    assert (
        "gpt-4o -> openai/gpt-4o: input 1.250000, output 5.000000, cached input 0.625000 per million tokens (EUR)"
        in output
    )
    assert "Deployments still unpriced: 1" in output
    assert "llama -> openai_compatible/llama-3-70b" in output


@pytest.mark.django_db(transaction=True)
def test_command_replaces_existing_prices_only_when_told_to_overwrite() -> None:
    deployment = _deployment("openai", "gpt-4o", input_price="9")

    first = _load_prices("--rate", "1")
    assert _prices_of(deployment)[0] == Decimal(9)
    assert "Deployments priced: 0." in first
    assert "Deployments still unpriced: none." in first

    second = _load_prices("--rate", "1", "--overwrite")

    assert _prices_of(deployment)[0] == Decimal("2.5")
    assert f"{len(_shipped()['prices'])} entries loaded, 0 new or changed" in second
    assert "Deployments priced: 1." in second


def test_command_changes_nothing_when_it_is_a_dry_run() -> None:
    deployment = _deployment("anthropic", "claude-haiku-4-5")

    output = _load_prices("--rate", "0.9", "--dry-run")

    assert PriceListEntry.objects.count() == 0
    assert _prices_of(deployment) == (None, None, None)
    assert "Dry run: nothing is changed." in output
    assert "Deployments priced: 1." in output
    assert "claude-haiku-4-5 -> anthropic/claude-haiku-4-5" in output


def test_command_says_when_the_list_takes_effect_when_it_is_dated_later(tmp_path: Path) -> None:
    deployment = _deployment("openai", "gpt-4o")
    path = _write(tmp_path, _price_list(_entry("openai", "gpt-4o", "1", "2"), effective_date="2027-01-01"))

    output = _load_prices("--file", path)

    assert PriceListEntry.objects.count() == 1
    assert _prices_of(deployment) == (None, None, None)
    assert "These prices take effect on 2027-01-01" in output


def test_command_refuses_a_list_in_another_currency_when_no_rate_is_given() -> None:
    with pytest.raises(CommandError, match=r"in USD but BILLING_CURRENCY is EUR: give a rate \(load_prices --rate"):
        _load_prices()
    assert PriceListEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"effective_date": "2026-11-01", "currency": "EUR", "prices": [}', "is not valid JSON: .* line 1, column"),
        ([], "A price list is a JSON object"),
        ({"currency": "EUR", "prices": []}, "has no 'effective_date'"),
        (_price_list(effective_date="1 November 2026"), "effective_date must be a date like '2026-11-01'"),
        (_price_list(currency="euro"), "currency must be a three-letter code"),
        (_price_list(), "prices must be a non-empty list"),
        (_price_list({"provider_kind": "openai", "upstream_model": "gpt-4o", "input_price": "1"}), "output_price is"),
        (_price_list(_entry("openai", "", "1", "2")), r"prices\[0\]: upstream_model must be a name"),
        (_price_list(_entry("bedrock", "titan", "1", "2")), "unknown provider_kind 'bedrock'"),
        (_price_list(_entry("openai", "gpt-4o", "-0.01", "2")), r"\(openai/gpt-4o\): input_price must be zero or more"),
        (_price_list(_entry("openai", "gpt-4o", "1", "2", "cheap")), "cached_input_price is not a decimal number"),
        (_price_list(_entry("openai", "gpt-4o", "1", "NaN")), "output_price is not a decimal number"),
        (_price_list(_entry("openai", "gpt-4o", "1", "2000000")), "output_price is too large"),
        (_price_list(_entry("openai", "gpt-4o", "1e30", "2")), "input_price is too large"),
        (_price_list(_entry("openai", "gpt-4o", "1", "9" * 40)), "output_price is too large"),
        (_price_list(_entry("openai", "gpt-4o", "1", "2"), _entry("openai", "gpt-4o", "1", "2")), "listed twice"),
    ],
)
def test_command_explains_what_is_wrong_when_the_file_is_bad(tmp_path: Path, content: Any, message: str) -> None:
    path = _write(tmp_path, content)

    with pytest.raises(CommandError, match=message):
        _load_prices("--file", path)
    assert PriceListEntry.objects.count() == 0


def test_command_refuses_to_load_anything_when_one_entry_is_bad(tmp_path: Path) -> None:
    data = _price_list(_entry("openai", "gpt-4o", "1", "2"), _entry("openai", "o3", "1", "-2"))

    with pytest.raises(CommandError, match=r"prices\[1\] \(openai/o3\): output_price must be zero or more"):
        _load_prices("--file", _write(tmp_path, data))
    assert PriceListEntry.objects.count() == 0


def test_command_says_so_when_the_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"Cannot read the price list .*missing\.json: No such file"):
        _load_prices("--file", str(tmp_path / "missing.json"))


@pytest.mark.parametrize("rate", ["abc", "0", "-1"])
def test_command_refuses_a_rate_when_it_is_not_a_positive_number(rate: str) -> None:
    with pytest.raises(CommandError, match="--rate"):
        _load_prices("--rate", rate)


# --- the admin ---


@pytest.fixture
def admin_client(client: Client, admin_user: AbstractBaseUser) -> Client:
    client.force_login(admin_user)
    return client


def test_ledger_cannot_be_added_changed_or_deleted_when_using_the_admin(admin_client: Client) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))
    entry = LedgerEntry.objects.create(
        created_at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        period=dt.date(2026, 11, 1),
        kind=LedgerEntry.Kind.GRANT,
        amount=Decimal(50),
        project=project,
        reason="Pilot credit",
    )
    change_url = reverse("admin:billing_ledgerentry_change", args=[entry.pk])

    assert admin_client.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    assert admin_client.post(change_url, {"amount": "5000", "reason": "edited"}).status_code == 403
    assert admin_client.get(reverse("admin:billing_ledgerentry_delete", args=[entry.pk])).status_code == 403
    assert (
        admin_client.post(reverse("admin:billing_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code
        == 403
    )
    page = admin_client.get(change_url).content.decode()
    assert 'name="_save"' not in page
    assert "Pilot credit" in page
    changelist = admin_client.get(reverse("admin:billing_ledgerentry_changelist"), {"q": "pilot"}).content.decode()
    assert "Shop (#" in changelist
    assert "delete_selected" not in changelist
    entry.refresh_from_db()
    assert (entry.amount, entry.reason) == (Decimal(50), "Pilot credit")


@pytest.mark.django_db(transaction=True)
def test_admin_action_prices_the_unpriced_deployments_of_the_selected_entries(admin_client: Client) -> None:
    gpt = _deployment("openai", "gpt-4o")
    claude = _deployment("anthropic", "claude-sonnet-4-5")
    prices.load_price_list(data=_shipped(), rate=Decimal(1))
    selected = PriceListEntry.objects.get(provider_kind="openai", upstream_model="gpt-4o")

    response = admin_client.post(
        reverse("admin:billing_pricelistentry_changelist"),
        {"action": "apply_to_unpriced_deployments", "_selected_action": [selected.pk], "index": 0},
        follow=True,
    )

    assert response.status_code == 200
    assert "Priced 1 deployment(s): gpt-4o -&gt; openai/gpt-4o." in response.content.decode()
    assert _prices_of(gpt)[0] == Decimal("2.5")
    assert _prices_of(claude)[0] is None


@pytest.mark.django_db(transaction=True)
def test_budget_and_its_alerts_are_deleted_when_deleted_in_the_admin(admin_client: Client) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))
    budget = Budget.objects.create(scope=Budget.Scope.PROJECT, project=project, monthly_limit=Decimal(100))
    AlertEvent.objects.create(
        budget=budget, period=dt.date(2026, 11, 1), threshold=50, spent=Decimal(50), limit=Decimal(100)
    )

    response = admin_client.post(reverse("admin:billing_budget_delete", args=[budget.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Budget.objects.exists()
    assert not AlertEvent.objects.exists()


def test_billing_admin_pages_load_when_a_ledger_entry_outlived_its_project(admin_client: Client) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))
    budget = Budget.objects.create(scope=Budget.Scope.PROJECT, project=project, monthly_limit=Decimal(100))
    AlertEvent.objects.create(
        budget=budget, period=dt.date(2026, 11, 1), threshold=80, spent=Decimal(80), limit=Decimal(100)
    )
    prices.load_price_list(data=_shipped(), rate=Decimal(1))
    orphan = LedgerEntry.objects.create(
        created_at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        period=dt.date(2026, 11, 1),
        kind=LedgerEntry.Kind.USAGE,
        amount=Decimal("-0.5"),
        project_id=987654,
        request_id="req-gone",
    )
    urls = [
        reverse("admin:billing_budget_changelist"),
        reverse("admin:billing_budget_add"),
        reverse("admin:billing_budget_change", args=[budget.pk]),
        reverse("admin:billing_alertevent_changelist"),
        reverse("admin:billing_alertevent_change", args=[budget.alerts.get().pk]),
        reverse("admin:billing_pricelistentry_changelist"),
        reverse("admin:billing_pricelistentry_add"),
        reverse("admin:billing_ledgerentry_change", args=[orphan.pk]),
    ]

    assert [admin_client.get(url).status_code for url in urls] == [200] * len(urls)
    changelist = admin_client.get(reverse("admin:billing_ledgerentry_changelist")).content.decode()
    assert "#987654 (deleted)" in changelist


@pytest.mark.django_db(transaction=True)
def test_budget_added_in_the_admin_opens_the_projects_month_when_saved(admin_client: Client) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))

    response = admin_client.post(
        reverse("admin:billing_budget_add"),
        {"scope": "project", "project": project.pk, "monthly_limit": "100.00", "hard": "on", "thresholds": "[50, 80]"},
    )

    assert response.status_code == 302
    budget = Budget.objects.get()
    assert (budget.project_id, budget.monthly_limit, budget.thresholds) == (project.pk, Decimal(100), [50, 80])
    allowance = LedgerEntry.objects.get(kind=LedgerEntry.Kind.ALLOWANCE)
    assert (allowance.project_id, allowance.amount) == (project.pk, Decimal(100))


def test_budget_is_refused_when_its_target_does_not_match_its_scope(admin_client: Client) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))

    response = admin_client.post(
        reverse("admin:billing_budget_add"),
        {"scope": "key", "project": project.pk, "monthly_limit": "100.00", "thresholds": "[50]"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Budget.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_budget_keeps_its_target_when_its_limit_is_changed_in_the_admin(admin_client: Client) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))
    budget = billing_services.set_budget(target=project, monthly_limit=Decimal(100))

    response = admin_client.post(
        reverse("admin:billing_budget_change", args=[budget.pk]),
        {"monthly_limit": "150.00", "thresholds": "[50, 80, 100]", "webhook_url": ""},
    )

    assert response.status_code == 302
    budget.refresh_from_db()
    assert (budget.project_id, budget.monthly_limit, budget.hard) == (project.pk, Decimal(150), False)
    assert Budget.objects.count() == 1


ADMIN_HOSTILE_AMOUNTS = ["1e30", "2.47e38", "1" * 40, "NaN", "Infinity", "-Infinity", "1e-30", "abc"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sent", ADMIN_HOSTILE_AMOUNTS)
def test_budget_admin_shows_a_form_error_on_the_limit_when_it_does_not_fit_the_column(
    admin_client: Client, sent: str
) -> None:
    project = services.create_project(name="Shop", business_unit=services.create_business_unit(name="Retail"))
    budget = billing_services.set_budget(target=project, monthly_limit=Decimal(100))

    added = admin_client.post(
        reverse("admin:billing_budget_add"),
        {
            "scope": "business_unit",
            "business_unit": project.business_unit_id,
            "monthly_limit": sent,
            "thresholds": "[50]",
        },
    )
    changed = admin_client.post(
        reverse("admin:billing_budget_change", args=[budget.pk]),
        {"monthly_limit": sent, "thresholds": "[50]", "webhook_url": ""},
    )

    for response in (added, changed):
        assert response.status_code == 200
        assert "monthly_limit" in response.context["adminform"].form.errors
    assert list(Budget.objects.values_list("monthly_limit", flat=True)) == [Decimal(100)]


@pytest.mark.parametrize("sent", ADMIN_HOSTILE_AMOUNTS)
def test_price_list_admin_shows_a_form_error_on_the_price_when_it_does_not_fit_the_column(
    admin_client: Client, sent: str
) -> None:
    response = admin_client.post(
        reverse("admin:billing_pricelistentry_add"),
        {
            "provider_kind": "openai",
            "upstream_model": "gpt-4o",
            "effective_date": "2026-11-01",
            "input_price": sent,
            "output_price": "10",
            "currency": "EUR",
            "source": "",
        },
    )

    assert response.status_code == 200
    assert "input_price" in response.context["adminform"].form.errors
    assert not PriceListEntry.objects.exists()
