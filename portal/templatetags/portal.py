"""Formatting for the portal's pages: money with its currency, tokens with separators, times as
"3 min ago" with the exact time in a title, statuses as pills with words (never colour alone)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

register = template.Library()

NONE = "\u2013"  # an en dash where there is no value
MINUS = "\u2212"
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _with_currency(text: str, currency: str, negative: bool) -> str:
    symbol = SYMBOLS.get(currency)
    body = f"{symbol}{text}" if symbol else f"{text} {currency}"
    return MINUS + body if negative else body


@register.filter
def money(value: Any, currency: str = "") -> str:
    """Two decimals with the currency: €1,234.50; a positive amount under a cent shows as < €0.01."""
    amount = _decimal(value)
    currency = currency or settings.BILLING_CURRENCY
    if amount is None:
        return NONE
    if Decimal(0) < abs(amount) < Decimal("0.005"):
        return "< " + _with_currency("0.01", currency, amount < 0)
    rounded = abs(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return _with_currency(f"{rounded:,.2f}", currency, amount < 0 and rounded != 0)


@register.filter
def unit_price(value: Any, currency: str = "") -> str:
    """A price that may need more than two decimals (per million tokens, per request): up to six."""
    amount = _decimal(value)
    currency = currency or settings.BILLING_CURRENCY
    if amount is None:
        return NONE
    text = f"{abs(amount):,.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    text = f"{whole}.{decimals.ljust(2, '0')}"
    return _with_currency(text, currency, amount < 0)


@register.filter
def tokens(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return NONE


@register.filter
def ms(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NONE
    return f"{number / 1000:.2f} s" if number >= 10_000 else f"{number:,.0f} ms"


@register.filter
def percent(part: Any, whole: Any) -> int:
    """Part of whole as a whole percentage for bars (0 when there is no whole)."""
    a, b = _decimal(part), _decimal(whole)
    if a is None or b is None or b <= 0:
        return 0
    return int(min(a / b * 100, Decimal(999)))


@register.simple_tag
def ago(when: datetime | None) -> SafeString | str:
    """<time> with "3 min ago" (or the date, past a week) and the exact UTC time in its title."""
    if when is None:
        return NONE
    now = timezone.now()
    exact = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = now - when
    if delta.total_seconds() < 0:
        text = "in " + timesince(now, when, depth=1)
    elif delta.total_seconds() < 45:
        text = "just now"
    elif delta.days < 7:
        text = timesince(when, now, depth=1) + " ago"
    else:
        text = when.strftime("%d %b %Y")
    return format_html('<time datetime="{}" title="{}">{}</time>', when.isoformat(), exact, text.replace("\xa0", " "))


@register.simple_tag
def status_pill(code: Any) -> SafeString:
    try:
        number = int(code)
        phrase = HTTPStatus(number).phrase
    except (TypeError, ValueError):
        return format_html('<span class="pill">{}</span>', code)
    kind = "ok" if number < 400 else "warn" if number in (429,) or 400 <= number < 500 else "err"
    return format_html('<span class="pill {}" title="{}">{}</span>', kind, phrase, f"{number} {phrase}")


STATE_KINDS = {
    "pending": "warn",
    "approved": "ok",
    "auto_approved": "ok",
    "denied": "err",
    "auto_denied": "err",
    "expired": "",
    "cancelled": "",
    "active": "ok",
    "revoked": "err",
    "expiring": "warn",
    "expired_key": "",
}


@register.simple_tag
def state_pill(state: str, label: str = "") -> SafeString:
    words = label or state.replace("_", " ").capitalize()
    return format_html('<span class="pill {}">{}</span>', STATE_KINDS.get(state, "info"), words)
