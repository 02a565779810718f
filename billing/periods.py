"""Billing periods are calendar months in UTC, named by their first day."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime


def period_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date().replace(day=1)


def current_period() -> date:
    return period_of(datetime.now(UTC))


def next_period(period: date) -> date:
    return date(period.year + 1, 1, 1) if period.month == 12 else date(period.year, period.month + 1, 1)


@functools.lru_cache(maxsize=64)  # on the hot path: every governed request names its month
def label(period: date) -> str:
    return f"{period:%Y-%m}"
