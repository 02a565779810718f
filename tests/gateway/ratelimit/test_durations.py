"""OpenAI writes durations in its x-ratelimit-reset-* headers the way Go does."""

import pytest

from gateway.proxy import ratelimit


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.02, "20ms"), (0.0201, "21ms"), (1, "1s"), (1.5, "1.5s"), (8.64, "8.64s"), (360, "6m0s"),
     (90.25, "1m30.25s"), (3600, "1h0m0s")],
)  # fmt: skip
def test_durations_are_written_as_openai_writes_them(seconds, text):
    assert ratelimit._duration(seconds) == text
