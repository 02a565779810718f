"""How the admin shows money, tokens, durations and stored JSON.

The ledger keeps ten decimal places (a request can cost a fraction of a cent) and prices keep six,
but an operator reads amounts in the currency with two decimals: `0.0000000000` said nothing.
Unit prices (per million tokens) are the one place where more places carry meaning, so they keep
up to six. Pure functions of their arguments (the currency is read from settings by default).
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.utils.html import format_html

_CENT = Decimal("0.01")
_PRICE_PLACES = 6


def currency() -> str:
    return settings.BILLING_CURRENCY


def money(amount: Any, *, currency_code: str | None = None) -> str:
    """`1,234.50 EUR`; an amount that rounds to zero without being zero shows as `< 0.01 EUR`,
    so a request that cost something never reads as free. None (no price) is a dash."""
    if amount is None or amount == "":
        return "—"
    code = currency_code or currency()
    value = _decimal(amount)
    if value is None:
        return f"{amount} {code}"
    rounded = value.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    if rounded == 0 and value != 0:
        return f"{'> -' if value < 0 else '< '}0.01 {code}"
    return f"{rounded:,.2f} {code}"


def unit_price(amount: Any, *, currency_code: str | None = None) -> str:
    """A price per million tokens: at least two places, up to six, no trailing zeros beyond two."""
    if amount is None or amount == "":
        return "—"
    code = currency_code or currency()
    value = _decimal(amount)
    if value is None:
        return f"{amount} {code}"
    text = f"{value.quantize(Decimal(1).scaleb(-_PRICE_PLACES), rounding=ROUND_HALF_EVEN):,.{_PRICE_PLACES}f}"
    whole, _, places = text.partition(".")
    places = places.rstrip("0").ljust(2, "0")
    return f"{whole}.{places} {code}"


def tokens(input_tokens: int, output_tokens: int, *, estimated: bool = False) -> str:
    """`1,200 → 350`, with a tilde when the gateway counted them (the upstream reported none)."""
    mark = "~" if estimated else ""
    return f"{mark}{input_tokens:,} → {mark}{output_tokens:,}"


def duration_ms(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "—"
    if milliseconds >= 10_000:
        return f"{milliseconds / 1000:.1f} s"
    return f"{milliseconds:,.0f} ms"


def pretty_json(value: Any) -> str:
    """Stored JSON (a text column or a JSON field) indented for reading, as an HTML <pre>; text
    that is not JSON (a truncated body, a redacted one) is shown as it is."""
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return format_html('<pre class="cockpit-body">{}</pre>', value)
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    return format_html('<pre class="cockpit-body">{}</pre>', text)


def _decimal(value: Any) -> Decimal | None:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None
