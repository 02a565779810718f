"""The test suite keeps to the services it is given."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_test_writes_into_a_fixed_local_redis_database_when_collected() -> None:
    """Tests use the run's REDIS_URL (none on the embedded default), never a hard-coded database of a
    developer's local Redis (the benchmark's own BENCH_REDIS_URL default is outside the test run)."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        if "bench" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"redis://(127\.0\.0\.1|localhost|\[::1\])(:6379)?/\d", line):  # the default port
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders
