"""gateway.money: the one check every decimal amount from outside goes through (budget limits,
credits, adjustments, deployment prices), whoever calls the service: the API, the admin, a task."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.models import Budget
from gateway.errors import ValidationFailed
from gateway.models import Deployment
from gateway.money import amount, parse_amount

LIMIT = Budget._meta.get_field("monthly_limit")  # DecimalField(max_digits=14, decimal_places=2)
PRICE = Deployment._meta.get_field("input_price")  # DecimalField(max_digits=12, decimal_places=6)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("25", Decimal("25.00")),
        (25, Decimal("25.00")),
        (12.5, Decimal("12.50")),
        (0.1, Decimal("0.10")),
        ("1e2", Decimal("100.00")),
        ("1E+2", Decimal("100.00")),
        (1e2, Decimal("100.00")),
        ("10.100", Decimal("10.10")),
        (" 7 ", Decimal("7.00")),
        (".5", Decimal("0.50")),
        ("0", Decimal("0.00")),
        (Decimal("999999999999.99"), Decimal("999999999999.99")),
    ],
)
def test_parse_amount_returns_the_value_with_the_columns_places_when_it_fits(sent: Any, stored: Decimal) -> None:
    value = parse_amount(sent, field="monthly_limit", column=LIMIT)

    assert value == stored
    assert value.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (2.47e38, "2.47e+38 is out of range"),
        ("1e30", '"1e30" is out of range'),
        (Decimal("1E+30"), "1E+30 is out of range"),
        (10**30, "is out of range"),
        ("1000000000000", "is out of range"),
        ("-0.01", "is out of range"),
        ("0.001", "has more decimal places"),
        ("1e-7", "has more decimal places"),
        ("999999999999.995", "has more decimal places"),
        (Decimal("NaN"), "is not a finite decimal number"),
        (Decimal("sNaN"), "is not a finite decimal number"),
        (float("nan"), "NaN is not a finite decimal number"),
        (float("inf"), "Infinity is not a finite decimal number"),
        (float("-inf"), "-Infinity is not a finite decimal number"),
        ("Infinity", "is not a finite decimal number"),
        ("1e99999999999999999999", "is not a finite decimal number"),
        (True, "true is not a finite decimal number"),
        (False, "false is not a finite decimal number"),
        (None, "null is not a finite decimal number"),
        ("", "is not a finite decimal number"),
        ("abc", "is not a finite decimal number"),
        ("5_0", "is not a finite decimal number"),
        ("1 0", "is not a finite decimal number"),
        ("0x10", "is not a finite decimal number"),
        ("1" * 101, "is not a finite decimal number"),
        ([1], "[1] is not a finite decimal number"),
    ],
)
def test_parse_amount_raises_naming_the_field_and_the_range_when_the_value_does_not_fit(sent: Any, reason: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_amount(sent, field="monthly_limit", column=LIMIT)

    assert refused.value.field == "monthly_limit"
    message = str(refused.value)
    assert message.startswith(
        "monthly_limit must be a decimal number from 0 to 999999999999.99 with at most 2 decimal places; "
    )
    assert reason in message


def test_parse_amount_states_the_smallest_amount_when_zero_is_not_allowed() -> None:
    with pytest.raises(ValidationFailed, match=r"^amount must be a decimal number from 0\.01 to 999999999999\.99 "):
        parse_amount("0", field="amount", column=LIMIT, allow_zero=False)


def test_parse_amount_accepts_negative_amounts_but_not_zero_when_negative_is_allowed() -> None:
    assert parse_amount("-1e2", field="amount", column=LIMIT, allow_zero=False, allow_negative=True) == Decimal("-100")
    with pytest.raises(ValidationFailed, match=r"from -999999999999\.99 to 999999999999\.99, not zero,"):
        parse_amount("0.00", field="amount", column=LIMIT, allow_zero=False, allow_negative=True)
    with pytest.raises(ValidationFailed, match="is out of range"):
        parse_amount("-1e12", field="amount", column=LIMIT, allow_zero=False, allow_negative=True)


def test_parse_amount_follows_the_columns_digits_when_the_column_is_a_price() -> None:
    assert parse_amount("999999.999999", field="input_price", column=PRICE) == Decimal("999999.999999")
    with pytest.raises(ValidationFailed, match=r"from 0 to 999999\.999999 with at most 6 decimal places; "):
        parse_amount("1000000", field="input_price", column=PRICE)


def test_amount_raises_value_error_without_the_field_when_a_schema_checks_the_value() -> None:
    with pytest.raises(ValueError, match=r"^must be a decimal number from 0 to 999999\.999999 ") as refused:
        amount("1e30", max_digits=12, decimal_places=6)

    assert not isinstance(refused.value, ValidationFailed)
