"""adjust(): a request reserves its estimate up front; its real usage corrects the tokens counted."""

from __future__ import annotations

import asyncio

import pytest

from gateway.proxy import ratelimit
from gateway.proxy.ratelimit import Limits, RateLimited


@pytest.mark.usefixtures("backend")
async def test_tokens_return_to_the_window_when_the_request_used_fewer_than_reserved(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000, project_tpm=5000)
    ticket = await ratelimit.acquire(limits=limits, tokens=600, stream=False)
    with pytest.raises(RateLimited):
        await ratelimit.acquire(limits=limits, tokens=600, stream=False)

    await ratelimit.adjust(ticket, actual_tokens=100)
    second = await ratelimit.acquire(limits=limits, tokens=600, stream=False)

    assert ticket.tokens == 100
    assert ticket.headers()["x-ratelimit-remaining-tokens"] == "900"  # as of the correction
    assert second.headers()["x-ratelimit-remaining-tokens"] == "300"  # 1000 - 100 - 600


@pytest.mark.usefixtures("backend")
async def test_later_requests_are_refused_when_a_request_used_more_than_reserved(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000)
    ticket = await ratelimit.acquire(limits=limits, tokens=100, stream=False)

    await ratelimit.adjust(ticket, actual_tokens=900)

    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=limits, tokens=200, stream=False)
    assert refusal.value.limit_name == "key_tpm"
    assert refusal.value.headers["x-ratelimit-remaining-tokens"] == "100"


@pytest.mark.usefixtures("backend")
async def test_adjusting_twice_corrects_from_the_last_amount(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000)
    ticket = await ratelimit.acquire(limits=limits, tokens=500, stream=False)

    await ratelimit.adjust(ticket, actual_tokens=200)
    await ratelimit.adjust(ticket, actual_tokens=200)
    await ratelimit.adjust(ticket, actual_tokens=0)

    assert ticket.headers()["x-ratelimit-remaining-tokens"] == "1000"


@pytest.mark.usefixtures("backend")
async def test_correction_is_dropped_when_the_reservations_window_has_closed(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000, window_seconds=1)
    old = await ratelimit.acquire(limits=limits, tokens=800, stream=False)
    await asyncio.sleep(1.05)
    new = await ratelimit.acquire(limits=limits, tokens=100, stream=False)

    await ratelimit.adjust(old, actual_tokens=0)  # -800 must not land in the new window

    with pytest.raises(RateLimited) as refusal:
        await ratelimit.acquire(limits=limits, tokens=901, stream=False)
    assert refusal.value.headers["x-ratelimit-remaining-tokens"] == "900"
    assert new.headers()["x-ratelimit-remaining-tokens"] == "900"


@pytest.mark.usefixtures("redis_url")
async def test_adjust_makes_no_redis_call_when_the_estimate_was_right(project_id, settings, silent_port):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=1000)
    ticket = await ratelimit.acquire(limits=limits, tokens=300, stream=False)
    await ratelimit.close()
    settings.REDIS_URL = silent_port.url  # from here on, any call would knock on this port
    settings.RATELIMIT_REDIS_TIMEOUT = 0.2

    await ratelimit.adjust(ticket, actual_tokens=300)
    assert silent_port.connections() == 0

    await ratelimit.adjust(ticket, actual_tokens=250)  # times out, is logged, and returns
    assert silent_port.connections() == 1
