"""acquire(): exactly L requests and T tokens per window, all-or-nothing, with OpenAI's headers.

Every test runs against Redis and against the in-process fallback (the `backend` fixture).
"""

from __future__ import annotations

import asyncio
import math
import re

import pytest

from gateway.proxy import ratelimit
from gateway.proxy.ratelimit import Limits, RateLimited, Ticket

pytestmark = pytest.mark.usefixtures("backend")


async def _burst(limits: Limits, count: int, *, tokens: int = 0) -> tuple[list[Ticket], list[RateLimited]]:
    results = await asyncio.gather(
        *(ratelimit.acquire(limits=limits, tokens=tokens, stream=False) for _ in range(count)),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, Ticket)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(admitted) + len(refused) == count, results
    return admitted, refused


def _seconds(duration: str) -> float:
    """Reads OpenAI's durations back: "20ms", "1.5s", "6m0s", "1h0m0s"."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:(\d+)ms)?", duration)
    assert match, duration
    hours, minutes, seconds, millis = (float(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


async def test_exactly_rpm_requests_are_admitted_when_more_arrive_at_once(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=20)

    admitted, refused = await _burst(limits, 35)

    assert len(admitted) == 20
    assert len(refused) == 15
    assert {error.limit_name for error in refused} == {"key_rpm"}
    assert {error.status for error in refused} == {429}


async def test_exactly_as_many_requests_as_fit_the_tpm_are_admitted_when_more_arrive_at_once(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000)

    admitted, refused = await _burst(limits, 20, tokens=90)

    assert len(admitted) == 11  # 11 * 90 = 990; a 12th would make 1080
    assert {error.limit_name for error in refused} == {"key_tpm"}
    assert {error.type for error in refused} == {"tokens"}


async def test_project_limit_is_shared_by_its_keys_when_they_send_at_once(project_id):
    keys = [Limits(key_id=key_id, project_id=project_id, key_rpm=100, project_rpm=12) for key_id in (1, 2, 3)]

    results = await asyncio.gather(*(_burst(limits, 10) for limits in keys))

    assert sum(len(admitted) for admitted, _ in results) == 12
    assert {error.limit_name for _, refused in results for error in refused} == {"project_rpm"}


async def test_window_admits_again_when_it_has_closed(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=5, key_tpm=500, window_seconds=1)
    admitted, refused = await _burst(limits, 8, tokens=10)
    assert len(admitted) == 5

    await asyncio.sleep(refused[0].retry_after + 0.05)
    admitted, refused = await _burst(limits, 8, tokens=10)

    assert len(admitted) == 5
    assert len(refused) == 3


async def test_window_starts_at_its_first_request_when_the_key_was_idle(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=1, window_seconds=1)
    await asyncio.sleep(0.3)  # whatever the clock, the window opens now, not at a round second

    await ratelimit.acquire(limits=limits, tokens=0, stream=False)
    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=limits, tokens=0, stream=False)

    assert 0.9 <= refusal.value.retry_after <= 1.0


async def test_nothing_is_counted_when_one_limit_refuses(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=10, key_tpm=1000, project_tpm=100)
    await ratelimit.acquire(limits=limits, tokens=60, stream=False)

    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=limits, tokens=60, stream=False)
    ticket = await ratelimit.acquire(limits=limits, tokens=40, stream=False)

    assert refusal.value.limit_name == "project_tpm"
    headers = ticket.headers()
    assert headers["x-ratelimit-remaining-requests"] == "8"  # 10 - 2: the refused request was not counted
    assert headers["x-ratelimit-remaining-tokens"] == "0"  # project: 100 - 60 - 40


async def test_refusal_says_when_to_retry_when_the_rpm_is_spent(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=2, window_seconds=2)
    await _burst(limits, 2)

    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=limits, tokens=0, stream=False)

    error = refusal.value
    assert 1.5 < error.retry_after <= 2.0
    assert error.headers["retry-after"] == str(math.ceil(error.retry_after))
    assert int(error.headers["retry-after-ms"]) == round(error.retry_after * 1000)
    assert error.headers["x-ratelimit-limit-requests"] == "2"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert abs(_seconds(error.headers["x-ratelimit-reset-requests"]) - error.retry_after) < 0.05
    assert error.body() == {
        "error": {
            "message": error.message,
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert "limit 2, used 2, requested 1" in error.message


async def test_retry_after_is_the_latest_reset_when_several_limits_refuse(project_id):
    project_only = Limits(key_id=1, project_id=project_id, project_rpm=1, window_seconds=2)
    key_only = Limits(key_id=2, project_id=project_id, key_rpm=1, window_seconds=2)
    both = Limits(key_id=2, project_id=project_id, key_rpm=1, project_rpm=1, window_seconds=2)
    await ratelimit.acquire(limits=project_only, tokens=0, stream=False)  # the project's window opens
    await asyncio.sleep(0.5)
    await ratelimit.acquire(limits=key_only, tokens=0, stream=False)  # key 2's opens 0.5 s later

    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=both, tokens=0, stream=False)

    assert refusal.value.limit_name == "key_rpm"
    assert refusal.value.retry_after > 1.8  # key 2's window, not the project's (~1.5 s)


async def test_headers_describe_the_tightest_limit_when_several_apply(project_id):
    busy = Limits(key_id=2, project_id=project_id, project_rpm=10, project_tpm=10_000)
    await _burst(busy, 8, tokens=100)
    limits = Limits(key_id=1, project_id=project_id, key_rpm=3, key_tpm=1000, project_rpm=10, project_tpm=10_000)

    headers = (await ratelimit.acquire(limits=limits, tokens=300, stream=False)).headers()

    assert headers["x-ratelimit-limit-requests"] == "10"  # the project has 1 left, the key 2
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-limit-tokens"] == "1000"  # the key has 700 left, the project 8,900
    assert headers["x-ratelimit-remaining-tokens"] == "700"
    assert 59 < _seconds(headers["x-ratelimit-reset-requests"]) <= 60
    assert 59 < _seconds(headers["x-ratelimit-reset-tokens"]) <= 60


async def test_headers_leave_out_limits_that_are_not_set(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=5)

    headers = (await ratelimit.acquire(limits=limits, tokens=100, stream=False)).headers()

    assert headers.keys() == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    assert headers["x-ratelimit-remaining-requests"] == "4"


async def test_request_is_refused_without_retry_after_when_it_can_never_fit_the_tpm(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000)

    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=limits, tokens=1001, stream=False)
    ticket = await ratelimit.acquire(limits=limits, tokens=1000, stream=False)

    assert refusal.value.limit_name == "key_tpm"
    assert refusal.value.retry_after is None
    assert "retry-after" not in refusal.value.headers
    assert "Request too large" in refusal.value.message
    assert ticket.headers()["x-ratelimit-remaining-tokens"] == "0"  # nothing was counted for the refusal
