"""Load a dated price list and price the deployments that have none.

    manage.py load_prices                      # the shipped list, billing/data/prices.json
    manage.py load_prices --rate 0.86          # a USD list into BILLING_CURRENCY=EUR
    manage.py load_prices --file mine.json --overwrite --dry-run

Idempotent: entries are unique per provider kind, upstream model and date, and a reload updates them.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import prices

if TYPE_CHECKING:  # names for type hints only: billing reaches the core through its selectors and services
    from gateway.models import Deployment

SHIPPED_LIST = Path(prices.__file__).resolve().parent / "data" / "prices.json"


def _rate(value: str) -> Decimal:
    try:
        rate = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {value!r}") from None
    if not (rate.is_finite() and rate > 0):
        raise argparse.ArgumentTypeError(f"must be above zero: {value!r}")
    return rate


class Command(BaseCommand):
    help = "Load a price list into the billing tables and copy its prices onto deployments that have none."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--file", type=Path, default=SHIPPED_LIST, help="The price list (JSON).")
        parser.add_argument(
            "--rate",
            type=_rate,
            help="Convert the list's prices into BILLING_CURRENCY: how much 1 unit of the list's currency costs.",
        )
        parser.add_argument(
            "--overwrite", action="store_true", help="Also replace the prices of deployments that have one."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check and report; change nothing.")

    def handle(
        self, *args: Any, file: Path, rate: Decimal | None, overwrite: bool, dry_run: bool, **options: Any
    ) -> None:
        data = _read(file)
        try:
            rows = prices.parse_price_list(data=data, rate=rate)
            written = prices.load_price_list(data=data, rate=rate, dry_run=dry_run)
        except prices.PriceListError as exc:
            raise CommandError(f"{file}: {exc}") from None
        result = prices.apply_prices(overwrite=overwrite, dry_run=dry_run, pending=rows if dry_run else ())

        out = self.stdout.write
        if dry_run:
            out(self.style.WARNING("Dry run: nothing is changed. Loading this list would do the following."))
        effective_date = rows[0].effective_date
        conversion = f", converted to {settings.BILLING_CURRENCY} at {rate}" if rate is not None else ""
        out(
            f"Price list of {effective_date} ({data['currency']}{conversion}): "
            f"{len(rows)} entries loaded, {written} new or changed."
        )
        if effective_date > timezone.localdate():
            out(f"These prices take effect on {effective_date}; run this again then to price deployments.")
        out(f"Deployments priced: {len(result.priced)}.")
        for deployment in result.priced:
            out(f"  {deployment}" if dry_run else f"  {deployment}: {_per_million(deployment)}")
        if result.unpriced:
            out(f"Deployments still unpriced: {len(result.unpriced)} (set their prices in the admin).")
            for deployment in result.unpriced:
                out(f"  {deployment}")
        else:
            out("Deployments still unpriced: none.")


def _per_million(deployment: Deployment) -> str:
    cached = deployment.cached_input_price
    cached_text = f", cached input {cached}" if cached is not None else ""
    return (
        f"input {deployment.input_price}, output {deployment.output_price}{cached_text} "
        f"per million tokens ({settings.BILLING_CURRENCY})"
    )


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot read the price list {path}: {exc.strerror or exc}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
