"""Lists and read-only records: names in good English, money in the currency with two decimals,
audit records that cannot be deleted, request bodies laid out for reading."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import LedgerEntry, PriceListEntry
from gateway.models import RequestLog
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _log(**fields: object) -> RequestLog:
    values: dict[str, object] = {
        "request_id": "req-1",
        "created_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        "endpoint": "chat",
        "model": "gpt-4o",
        "status_code": 200,
        "input_tokens": 1200,
        "output_tokens": 350,
        "latency_ms": 812.0,
        "cost": Decimal("0.01234567"),
    }
    return RequestLog.objects.create(**(values | fields))


def _entry(amount: str, **fields: object) -> LedgerEntry:
    project = ProjectFactory()
    return LedgerEntry.objects.create(
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        period=date(2026, 12, 1),
        kind=LedgerEntry.Kind.GRANT,
        amount=Decimal(amount),
        project=project,
        **fields,
    )


def test_plurals_are_english_when_the_index_lists_the_models(client: Client) -> None:
    page = client.get(reverse("admin:index")).content.decode()

    assert "Ledger entries" in page and "Guardrail policies" in page
    assert "entrys" not in page and "policys" not in page


def test_ledger_amount_is_shown_in_the_currency_with_two_decimals_when_listed(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.BILLING_CURRENCY = "EUR"
    entry = _entry("1234.5", reason="welcome credit")

    listing = client.get(reverse("admin:billing_ledgerentry_changelist")).content.decode()
    detail = client.get(reverse("admin:billing_ledgerentry_change", args=[entry.pk])).content.decode()

    assert "1,234.50 EUR" in listing
    assert "0000000" not in listing
    assert "1234.5 EUR" in detail  # the exact amount, without the column's padding


def test_tiny_cost_reads_as_less_than_a_cent_when_a_request_is_listed(client: Client) -> None:
    _log(cost=Decimal("0.00012"))

    page = client.get(reverse("admin:gateway_requestlog_changelist")).content.decode()

    assert "&lt; 0.01 EUR" in page
    assert "1,200 → 350" in page and "812 ms" in page


def test_unit_prices_keep_their_places_when_the_price_list_is_listed(client: Client) -> None:
    PriceListEntry.objects.create(
        provider_kind="openai",
        upstream_model="gpt-4o-mini",
        input_price=Decimal("0.15"),
        output_price=Decimal("0.075"),
        currency="USD",
        effective_date=date(2026, 1, 1),
    )

    page = client.get(reverse("admin:billing_pricelistentry_changelist")).content.decode()

    assert "0.15 USD" in page and "0.075 USD" in page


def test_request_log_has_no_delete_when_an_administrator_views_it(client: Client) -> None:
    row = _log()

    page = client.get(reverse("admin:gateway_requestlog_change", args=[row.pk])).content.decode()
    refused = client.post(reverse("admin:gateway_requestlog_delete", args=[row.pk]), {"post": "yes"})
    listing = client.get(reverse("admin:gateway_requestlog_changelist")).content.decode()

    assert reverse("admin:gateway_requestlog_delete", args=[row.pk]) not in page
    assert refused.status_code == 403
    assert "delete_selected" not in listing
    assert RequestLog.objects.filter(pk=row.pk).exists()


def test_ledger_entry_has_no_delete_or_edit_when_an_administrator_views_it(client: Client) -> None:
    entry = _entry("10")

    assert client.post(reverse("admin:billing_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert client.post(reverse("admin:billing_ledgerentry_change", args=[entry.pk]), {"reason": "x"}).status_code == 403
    assert LedgerEntry.objects.get(pk=entry.pk).reason == ""


def test_bodies_are_indented_when_a_request_log_row_is_viewed(client: Client) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello <b>there</b>"}]}
    row = _log(bodies="full", request_body=json.dumps(body), response_body="not json {")

    page = client.get(reverse("admin:gateway_requestlog_change", args=[row.pk])).content.decode()

    assert '<pre class="cockpit-body">{\n  &quot;model&quot;: &quot;gpt-4o&quot;,\n  &quot;messages&quot;: [' in page
    assert "Hello &lt;b&gt;there&lt;/b&gt;" in page  # escaped, never markup
    assert "not json {" in page


def test_request_log_list_has_eight_columns_when_rows_exist(client: Client) -> None:
    _log(model="gpt-4o", answered_model="gpt-4o-mini")

    response = client.get(reverse("admin:gateway_requestlog_changelist"))

    assert "gpt-4o → gpt-4o-mini" in response.content.decode()
    assert len(response.context["cl"].list_display) == 8  # no selection box: there is no action


def test_abbreviated_columns_have_plain_labels_when_a_form_shows_them(client: Client) -> None:
    page = client.get(reverse("admin:gateway_project_add")).content.decode()

    assert "Requests per minute:" in page and "Tokens per minute:" in page
    assert "Rpm limit" not in page and "Tpm limit" not in page
