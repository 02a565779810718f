"""Values made storable before they reach a request-log row or a ledger entry.

A row that the database refuses must never hold back the rows behind it (gateway/proxy/logbuffer.py
isolates it), and most refusals are avoidable: PostgreSQL stores no NUL character in text or JSON,
psycopg cannot encode a lone surrogate, integer and numeric columns have ranges, and a JSON
structure nested a few hundred levels deep cannot even be serialised (orjson stops at 254).
These helpers turn any value into one the columns accept — NUL and lone surrogates replaced by
U+FFFD, text cut to its column, counts and money clamped to their ranges, JSON capped in depth
and size — without recursion that a hostile value could exhaust.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

MAX_COUNT = 2**31 - 1  # PositiveIntegerField on PostgreSQL
MAX_DEPTH = 32  # JSON kept in a row (attempts, verdicts; bodies beyond it are cut, see `json_text`)
_TOO_DEEP = "…[nested too deeply]"


def text(value: Any, limit: int | None = None) -> str:
    """A string the database stores as it is: NUL and lone surrogates replaced, cut to `limit`."""
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    if limit is not None and len(value) > limit:
        value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate
            value = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


def count(value: Any) -> int:
    """A token count the columns hold: a whole number from 0 to MAX_COUNT."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_COUNT)


def money(value: Any, *, places: int, digits: int) -> Decimal | None:
    """An amount a DecimalField(max_digits=digits, decimal_places=places) holds, clamped to its range."""
    if value is None:
        return None
    try:
        amount = Decimal(value)
        if not amount.is_finite():
            return None
        ceiling = Decimal(10) ** (digits - places) - Decimal(1).scaleb(-places)
        return max(min(amount, ceiling), -ceiling).quantize(Decimal(1).scaleb(-places))
    except (InvalidOperation, ValueError, TypeError):
        return None


def json_value(value: Any, *, depth: int = MAX_DEPTH) -> Any:
    """`value` as plain JSON data the database stores: strings cleaned, keys made strings, anything
    deeper than `depth` replaced by a marker. Iterative: no recursion for a hostile value to exhaust."""
    root: list[Any] = [None]
    stack: list[tuple[Any, list[Any] | dict[str, Any], Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, slot, level = stack.pop()
        if isinstance(item, str):
            parent[slot] = text(item)
        elif item is None or isinstance(item, bool | int | float):
            parent[slot] = item if not isinstance(item, int) or -(2**63) <= item < 2**64 else str(item)
        elif isinstance(item, dict | list | tuple):
            if level >= depth:
                parent[slot] = _TOO_DEEP
                continue
            if isinstance(item, dict):
                made: dict[str, Any] = {}
                parent[slot] = made
                for key, child in item.items():
                    name = text(key)
                    made[name] = None
                    stack.append((child, made, name, level + 1))
            else:
                listed: list[Any] = [None] * len(item)
                parent[slot] = listed
                stack.extend((child, listed, i, level + 1) for i, child in enumerate(item))
        else:
            parent[slot] = text(item)
    return root[0]


def json_text(value: Any) -> str:
    """`value` serialised as JSON text for a body column (a string is kept as it is), whatever it holds."""
    if isinstance(value, str):
        return text(value)
    try:
        return orjson.dumps(value, default=str).decode()  # the common case: fast, and already clean
    except (TypeError, ValueError):  # too deep, a lone surrogate, an integer past 64 bits
        return orjson.dumps(json_value(value, depth=64), default=str).decode()
