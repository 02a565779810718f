"""Any value made storable: text, counts, money and JSON that the database columns accept."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from gateway import writable


@pytest.mark.parametrize(
    ("value", "limit", "stored"),
    [
        ("plain", None, "plain"),
        ("a\x00b", None, "a\ufffdb"),
        ("lone \ud800 surrogate", None, "lone \ufffd surrogate"),
        ("x" * 50, 10, "x" * 10),
        (None, None, ""),
        (12, None, "12"),
    ],
)
def test_text_is_cleaned_and_cut(value, limit, stored):
    assert writable.text(value, limit) == stored


@pytest.mark.parametrize(
    ("value", "stored"), [(5, 5), (-3, 0), (2**40, writable.MAX_COUNT), (True, 0), ("7", 0), (1.5, 0)]
)
def test_counts_are_clamped_to_what_the_column_holds(value, stored):
    assert writable.count(value) == stored


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (Decimal("1.123456789"), Decimal("1.12345679")),
        (Decimal("1e30"), Decimal("99999999.99999999")),
        (Decimal("-1e30"), Decimal("-99999999.99999999")),
        (Decimal("NaN"), None),
        (Decimal("Infinity"), None),
        (None, None),
        ("garbage", None),
    ],
)
def test_money_is_clamped_to_the_column_or_dropped_when_not_a_number(value, stored):
    assert writable.money(value, places=8, digits=16) == stored


def test_json_deeper_than_python_could_recurse_is_cut_without_recursion():
    deep: object = "bottom"
    for _ in range(100_000):
        deep = {"k\x00": [deep]}
    stored = writable.json_value(deep, depth=10)
    text = orjson.dumps(stored).decode()
    assert "nested too deeply" in text and "\\u0000" not in text
    assert text.count(":[") == 5  # ten levels: five objects, five arrays


def test_json_text_keeps_what_serialises_and_repairs_what_does_not():
    assert writable.json_text({"a": 1}) == '{"a":1}'
    assert writable.json_text("already text\x00") == "already text\ufffd"
    deep: list = []
    for _ in range(300):
        deep = [deep]
    assert "nested too deeply" in writable.json_text({"d": deep})
    assert writable.json_text({"big": 2**70, "s": "\udfff"}) == '{"big":"1180591620717411303424","s":"\ufffd"}'
