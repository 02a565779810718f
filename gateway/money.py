"""Decimal amounts that come from outside (the management API, the admin, any caller of a service):
budget limits, credits, adjustments, deployment prices.

One rule for all of them, checked before any arithmetic (so no `decimal.InvalidOperation` can
escape): a finite decimal number, sent as a string or a number (booleans are not numbers), that
fits the column storing it (its max_digits and decimal_places) and the sign the field allows.
"1e2" is 100; "10.100" has two decimal places, "1e-7" has seven. The message names the field and
the allowed range. Services call `parse_amount` (ValidationFailed, 400 in the API); a schema that
checks a field itself calls `amount` (ValueError, 422 in the API).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import models

from gateway.errors import ValidationFailed

# Digits with an optional point and exponent: no NaN, Infinity, hex, underscores or spaces inside.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_MAX_TEXT = 100  # longer strings are no amount any column here can hold


def amount(
    value: Any,
    *,
    max_digits: int,
    decimal_places: int,
    allow_zero: bool = True,
    allow_negative: bool = False,
) -> Decimal:
    """VALUE as a Decimal with exactly `decimal_places` places, or ValueError saying what is allowed."""
    number = _decimal(value)
    largest = Decimal(10) ** (max_digits - decimal_places) - Decimal(10) ** -decimal_places
    smallest = Decimal(10) ** -decimal_places
    low = -largest if allow_negative else (Decimal(0) if allow_zero else smallest)
    allowed = f"a decimal number from {_plain(low)} to {_plain(largest)}"
    if allow_negative and not allow_zero:
        allowed += ", not zero,"
    allowed += f" with at most {decimal_places} decimal places"
    if number is None:
        raise ValueError(f"must be {allowed}; {_shown(value)} is not a finite decimal number.")
    if _places(number) > decimal_places:
        raise ValueError(f"must be {allowed}; {_shown(value)} has more decimal places.")
    if not low <= number <= largest or (number == 0 and not allow_zero):
        raise ValueError(f"must be {allowed}; {_shown(value)} is out of range.")
    return number.quantize(smallest)  # exact: the checks above keep it within max_digits


def parse_amount(
    value: Any,
    *,
    field: str,
    column: models.DecimalField,
    allow_zero: bool = True,
    allow_negative: bool = False,
) -> Decimal:
    """VALUE checked against COLUMN (a DecimalField), or ValidationFailed naming FIELD and the range."""
    assert isinstance(column, models.DecimalField), column
    try:
        return amount(
            value,
            max_digits=column.max_digits,
            decimal_places=column.decimal_places,
            allow_zero=allow_zero,
            allow_negative=allow_negative,
        )
    except ValueError as exc:
        raise ValidationFailed(f"{field} {exc}", field=field) from None


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal, or None for anything else (text that is no number, bool, NaN, lists, ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text that reads back as this float: 0.1, not 0.1000000000000000055
    elif isinstance(value, str) and len(value) <= _MAX_TEXT and _NUMBER.fullmatch(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:  # an exponent beyond what Decimal can represent ("1e99999999999999999999")
            return None
    else:
        return None
    return number if number.is_finite() else None


def _places(number: Decimal) -> int:
    """Decimal places that matter: "10.100" has 1, "1E+2" has 0. No context arithmetic (no rounding)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros)) if any(digits) else 0


def _plain(number: Decimal) -> str:
    return f"{number:f}"


def _shown(value: Any) -> str:
    """The value as it was sent, short enough for a message."""
    if isinstance(value, Decimal):
        text = str(value)
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
