"""The cap on concurrent streams per key: a slot per open stream, freed on release or when its lease runs out."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.proxy import ratelimit
from gateway.proxy.ratelimit import Limits, RateLimited


@pytest.mark.usefixtures("backend")
async def test_stream_is_refused_when_the_key_has_as_many_open_as_its_cap(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_max_streams=2)
    results = await asyncio.gather(
        *(ratelimit.acquire(limits=limits, tokens=0, stream=True) for _ in range(5)), return_exceptions=True
    )

    refused = [result for result in results if isinstance(result, RateLimited)]
    assert len(refused) == 3
    assert {error.limit_name for error in refused} == {"key_max_streams"}
    assert refused[0].retry_after == 1.0
    assert refused[0].headers["retry-after"] == "1"
    assert await ratelimit.acquire(limits=limits, tokens=0, stream=False)  # a plain request takes no slot


@pytest.mark.usefixtures("backend")
async def test_stream_is_admitted_when_another_released_its_slot(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_max_streams=1)
    ticket = await ratelimit.acquire(limits=limits, tokens=0, stream=True)

    await ratelimit.release_stream(ticket)
    await ratelimit.release_stream(ticket)  # twice is harmless

    other = await ratelimit.acquire(limits=limits, tokens=0, stream=True)
    assert other.holds_stream
    with pytest.raises(RateLimited):
        await ratelimit.acquire(limits=limits, tokens=0, stream=True)  # the second release freed nothing more


@pytest.mark.usefixtures("backend")
async def test_leaked_slot_frees_itself_when_its_lease_runs_out(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_max_streams=1, stream_lease_seconds=0.5)
    await ratelimit.acquire(limits=limits, tokens=0, stream=True)  # never released
    with pytest.raises(RateLimited):
        await ratelimit.acquire(limits=limits, tokens=0, stream=True)

    await asyncio.sleep(0.55)

    assert (await ratelimit.acquire(limits=limits, tokens=0, stream=True)).holds_stream


@pytest.mark.usefixtures("backend")
async def test_refreshed_slot_outlives_its_first_lease_when_the_stream_is_still_open(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_max_streams=1, stream_lease_seconds=0.6)
    ticket = await ratelimit.acquire(limits=limits, tokens=0, stream=True)

    await asyncio.sleep(0.3)
    await ratelimit.refresh_stream(ticket)  # lease now ends at 0.9 s
    await asyncio.sleep(0.4)

    with pytest.raises(RateLimited):
        await ratelimit.acquire(limits=limits, tokens=0, stream=True)


@pytest.mark.usefixtures("backend")
async def test_refused_stream_counts_no_request_when_the_cap_refuses_it(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=5, key_tpm=1000, key_max_streams=1)
    await ratelimit.acquire(limits=limits, tokens=100, stream=True)
    with pytest.raises(RateLimited):
        await ratelimit.acquire(limits=limits, tokens=100, stream=True)

    headers = (await ratelimit.acquire(limits=limits, tokens=100, stream=False)).headers()

    assert headers["x-ratelimit-remaining-requests"] == "3"
    assert headers["x-ratelimit-remaining-tokens"] == "800"


@pytest.mark.usefixtures("backend")
async def test_stream_takes_no_slot_when_the_key_has_no_cap(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=5)

    ticket = await ratelimit.acquire(limits=limits, tokens=0, stream=True)

    assert not ticket.holds_stream


_HOLD_A_SLOT = """
import asyncio, json, sys
from gateway.proxy import ratelimit

async def main():
    await ratelimit.acquire(limits=ratelimit.Limits(**json.loads(sys.argv[1])), tokens=0, stream=True)
    print("holding", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_slot_of_a_killed_process_frees_itself_when_its_lease_runs_out(project_id, spawn):
    fields = {"key_id": 1, "project_id": project_id, "key_max_streams": 1, "stream_lease_seconds": 1.0}
    child = spawn(_HOLD_A_SLOT, json.dumps(fields))
    assert child.stdout.readline().strip() == "holding"
    child.kill()
    child.wait(10)
    limits = Limits(**fields)

    with pytest.raises(RateLimited):
        await ratelimit.acquire(limits=limits, tokens=0, stream=True)
    await asyncio.sleep(1.05)

    assert (await ratelimit.acquire(limits=limits, tokens=0, stream=True)).holds_stream
