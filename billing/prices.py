"""The dated price list: read it, store it, and copy its prices onto the deployments.

A price list (billing/data/prices.json ships one) gives list prices per million tokens for upstream
models at one kind of provider, from an effective date, in one currency. `load_price_list` stores it
in PriceListEntry, converted to BILLING_CURRENCY at a given rate. `apply_prices` gives each
deployment the newest price in effect for its provider's kind and upstream model, through
gateway.services.set_deployment_prices (which tells the proxies): deployments without a price, or
all of them with `overwrite`. Entries in another currency than BILLING_CURRENCY are never applied.

Callers: `manage.py load_prices` and the price list admin.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import PriceListEntry
from gateway import selectors, services

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import Deployment

PRICE_PLACES = Decimal("0.000001")  # the six decimals of a stored price
MAX_PRICE = Decimal(10) ** 6  # DecimalField(max_digits=12, decimal_places=6)
_PRICES = ("input_price", "output_price", "cached_input_price")


class PriceListError(Exception):
    """A price list that cannot be loaded; the message says where and why."""


@dataclass(frozen=True, kw_only=True)
class PriceRow:
    """One entry of a price list, checked and converted to the currency it will be stored in."""

    provider_kind: str
    upstream_model: str
    input_price: Decimal
    output_price: Decimal
    cached_input_price: Decimal | None
    currency: str
    effective_date: datetime.date
    source: str

    @property
    def prices(self) -> tuple[Decimal, Decimal, Decimal | None]:
        return (self.input_price, self.output_price, self.cached_input_price)


@dataclass(frozen=True)
class ApplyResult:
    priced: list[Deployment]  # given a price (or a new one, with overwrite)
    unpriced: list[Deployment]  # still without an input price


# --- reading ---


def parse_price_list(*, data: Any, rate: Decimal | None = None) -> list[PriceRow]:
    """Check a price list (the parsed JSON) and return its entries in BILLING_CURRENCY.

    `rate` is the number of BILLING_CURRENCY units one unit of the list's currency buys. Without it
    the list must already be in BILLING_CURRENCY.
    """
    if not isinstance(data, dict):
        raise PriceListError("A price list is a JSON object with effective_date, currency and prices.")
    for field in ("effective_date", "currency", "prices"):
        if field not in data:
            raise PriceListError(f"The price list has no {field!r}.")
    effective_date = _date(data["effective_date"])
    currency = data["currency"]
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise PriceListError(f"currency must be a three-letter code such as 'USD', not {currency!r}.")
    target = settings.BILLING_CURRENCY
    if rate is None and currency != target:
        raise PriceListError(
            f"The price list is in {currency} but BILLING_CURRENCY is {target}: give a rate "
            f"(load_prices --rate, the {target} price of 1 {currency}) to convert it."
        )
    if rate is not None and not (rate.is_finite() and rate > 0):
        raise PriceListError(f"The rate must be a number above zero, not {rate}.")
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise PriceListError("sources must be an object mapping a provider kind to a URL.")
    entries = data["prices"]
    if not isinstance(entries, list) or not entries:
        raise PriceListError("prices must be a non-empty list.")

    rows: list[PriceRow] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        row = _row(
            entry,
            where=f"prices[{index}]",
            rate=rate,
            currency=target if rate is not None else currency,
            effective_date=effective_date,
            sources=sources,
        )
        key = (row.provider_kind, row.upstream_model)
        if key in seen:
            raise PriceListError(f"prices[{index}]: {row.provider_kind}/{row.upstream_model} is listed twice.")
        seen.add(key)
        rows.append(row)
    return rows


def _date(value: Any) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise PriceListError(f"effective_date must be a date like '2026-11-01', not {value!r}.") from None


def _row(
    entry: Any,
    *,
    where: str,
    rate: Decimal | None,
    currency: str,
    effective_date: datetime.date,
    sources: dict[str, Any],
) -> PriceRow:
    if not isinstance(entry, dict):
        raise PriceListError(f"{where}: an entry is an object, not {entry!r}.")
    for field in ("provider_kind", "upstream_model", "input_price", "output_price"):
        if entry.get(field) is None:
            raise PriceListError(f"{where}: {field} is missing.")
    kind, upstream_model = entry["provider_kind"], entry["upstream_model"]
    kinds = [value for value, _label in selectors.provider_kinds()]
    if kind not in kinds:
        raise PriceListError(f"{where}: unknown provider_kind {kind!r} (one of {', '.join(kinds)}).")
    if not isinstance(upstream_model, str) or not upstream_model.strip() or len(upstream_model) > 200:
        raise PriceListError(f"{where}: upstream_model must be a name of at most 200 characters.")
    where = f"{where} ({kind}/{upstream_model})"
    source = entry.get("source", sources.get(kind, ""))
    if not isinstance(source, str) or len(source) > 300:
        raise PriceListError(f"{where}: source must be a URL of at most 300 characters.")
    cached = entry.get("cached_input_price")
    return PriceRow(
        provider_kind=kind,
        upstream_model=upstream_model.strip(),
        input_price=_price(entry["input_price"], where=f"{where}: input_price", rate=rate),
        output_price=_price(entry["output_price"], where=f"{where}: output_price", rate=rate),
        cached_input_price=None if cached is None else _price(cached, where=f"{where}: cached_input_price", rate=rate),
        currency=currency,
        effective_date=effective_date,
        source=source,
    )


def _price(value: Any, *, where: str, rate: Decimal | None) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PriceListError(f"{where} must be a decimal number written as a string, not {value!r}.")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise PriceListError(f"{where} is not a decimal number: {value!r}.") from None
    if not price.is_finite():
        raise PriceListError(f"{where} is not a decimal number: {value!r}.")
    if price < 0:
        raise PriceListError(f"{where} must be zero or more, not {value}.")
    if rate is not None:
        price *= rate
    if price < MAX_PRICE:  # checked first: quantizing 1e30 to six places is itself an error
        price = price.quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)
    if price >= MAX_PRICE:
        raise PriceListError(f"{where} is too large: {price} (at most 999999.999999 per million tokens).")
    return price


# --- writing ---


@transaction.atomic(durable=True)
def load_price_list(*, data: Any, rate: Decimal | None = None, dry_run: bool = False) -> int:
    """Store a price list's entries (one per kind, upstream model and date; a reload updates them).

    Returns how many entries were new or changed (or would be, with `dry_run`).
    """
    rows = parse_price_list(data=data, rate=rate)
    existing = {
        (entry.provider_kind, entry.upstream_model): entry
        for entry in PriceListEntry.objects.select_for_update().filter(
            effective_date__in={row.effective_date for row in rows}
        )
    }
    written = 0
    for row in rows:
        entry = existing.get((row.provider_kind, row.upstream_model))
        values = {name: getattr(row, name) for name in (*_PRICES, "currency", "source")}
        if entry is not None and all(getattr(entry, name) == value for name, value in values.items()):
            continue
        written += 1
        if dry_run:
            continue
        if entry is None:
            entry = PriceListEntry(
                provider_kind=row.provider_kind, upstream_model=row.upstream_model, effective_date=row.effective_date
            )
        for name, value in values.items():
            setattr(entry, name, value)
        entry.save()
    return written


def apply_prices(
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    pending: Iterable[PriceRow] = (),
    only: Collection[tuple[str, str]] | None = None,
) -> ApplyResult:
    """Give deployments the newest price in effect for their provider's kind and upstream model.

    Only deployments without an input price are priced, unless `overwrite`. `pending` rows (a list
    not stored yet, for a dry run) count as if they were stored. `only` limits the prices applied to
    these (provider kind, upstream model) pairs. Each deployment is saved on its own: this function
    opens no transaction around set_deployment_prices, a durable entry point.
    """
    in_effect = _prices_in_effect(pending=pending)
    priced: list[Deployment] = []
    unpriced: list[Deployment] = []
    for deployment in selectors.list_deployments():
        key = (deployment.provider.kind, deployment.upstream_model)
        prices = in_effect.get(key) if only is None or key in only else None
        wanted = prices is not None and (overwrite or deployment.input_price is None)
        if wanted and prices != tuple(getattr(deployment, name) for name in _PRICES):
            if not dry_run:
                input_price, output_price, cached_input_price = prices
                services.set_deployment_prices(
                    deployment=deployment,
                    input_price=input_price,
                    output_price=output_price,
                    cached_input_price=cached_input_price,
                )
            priced.append(deployment)
        elif deployment.input_price is None:
            unpriced.append(deployment)
    return ApplyResult(priced=priced, unpriced=unpriced)


def _prices_in_effect(*, pending: Iterable[PriceRow]) -> dict[tuple[str, str], tuple[Decimal, ...]]:
    """The newest prices in BILLING_CURRENCY dated today or earlier, per (provider kind, upstream model)."""
    today = timezone.localdate()
    newest: dict[tuple[str, str], tuple[datetime.date, tuple[Decimal, ...]]] = {}
    entries = PriceListEntry.objects.filter(currency=settings.BILLING_CURRENCY, effective_date__lte=today)
    candidates = [
        (entry.provider_kind, entry.upstream_model, entry.effective_date, tuple(getattr(entry, n) for n in _PRICES))
        for entry in entries
    ]
    candidates += [
        (row.provider_kind, row.upstream_model, row.effective_date, row.prices)
        for row in pending
        if row.currency == settings.BILLING_CURRENCY and row.effective_date <= today
    ]
    for kind, upstream_model, effective_date, prices in candidates:
        current = newest.get((kind, upstream_model))
        if current is None or effective_date >= current[0]:
            newest[(kind, upstream_model)] = (effective_date, prices)
    return {key: prices for key, (_date, prices) in newest.items()}
