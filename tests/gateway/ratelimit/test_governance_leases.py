"""Leases: far from its limits a process admits from a slice of each window it took from Redis.

What must hold: no more than the limit is ever admitted across processes (and exactly the limit
when every process asks for more), a request a slice covers costs no Redis call, the unused part
of a slice goes back, the slice of a killed process is gone when its window closes, and the
x-ratelimit-* headers count what was admitted. Real Redis (database 5) and the in-process server.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from gateway import installation
from gateway.proxy import ratelimit
from gateway.proxy.ratelimit import Limits, RateLimited, Ticket


@pytest.fixture(autouse=True)
def _leases_on(settings):  # type: ignore[no-untyped-def]
    settings.GOVERNANCE_LEASES = True
    settings.GOVERNANCE_LEASE_SECONDS = 0.3
    ratelimit.reset()
    yield
    ratelimit.reset()


def _window(url: str, project_id: int, scope: str = "key:1") -> dict[bytes, bytes]:
    with redis.Redis.from_url(url) as client:
        return client.hgetall(f"{installation.redis_prefix()}rl:{{p{project_id}}}:{scope}")


async def _waves(limits: Limits, *, waves: int, size: int, tokens: int = 0) -> tuple[list[Ticket], list[RateLimited]]:
    admitted: list[Ticket] = []
    refused: list[RateLimited] = []
    for _ in range(waves):
        results = await asyncio.gather(
            *(ratelimit.acquire(limits=limits, tokens=tokens, stream=False) for _ in range(size)),
            return_exceptions=True,
        )
        assert all(isinstance(r, (Ticket, RateLimited)) for r in results), results
        admitted += [r for r in results if isinstance(r, Ticket)]
        refused += [r for r in results if isinstance(r, RateLimited)]
    return admitted, refused


@pytest.mark.usefixtures("backend")
async def test_exactly_the_rpm_is_admitted_when_one_process_serves_most_requests_from_its_slices(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=3000, project_rpm=5000)

    admitted, refused = await _waves(limits, waves=70, size=50)

    assert len(admitted) == 3000
    assert len(refused) == 500
    assert {error.limit_name for error in refused} == {"key_rpm"}
    assert refused[-1].headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.usefixtures("backend")
async def test_exactly_the_tpm_is_admitted_when_requests_are_served_from_slices(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_tpm=100_000)

    admitted, refused = await _waves(limits, waves=30, size=50, tokens=70)

    assert len(admitted) == 1428  # 1428 * 70 = 99,960; one more would make 100,030
    assert {error.limit_name for error in refused} == {"key_tpm"}


@pytest.mark.usefixtures("redis_url")
async def test_request_makes_no_redis_call_when_a_slice_covers_it(project_id, settings, silent_port):
    settings.RATELIMIT_REDIS_TIMEOUT = 0.2
    limits = Limits(key_id=1, project_id=project_id, key_rpm=10_000, key_tpm=1_000_000)
    await ratelimit.acquire(limits=limits, tokens=100, stream=False)  # the window opens; a slice comes with it
    settings.REDIS_URL = silent_port.url  # from here on, any call would knock on this port

    tickets = [await ratelimit.acquire(limits=limits, tokens=100, stream=False) for _ in range(20)]
    await ratelimit.adjust(tickets[0], actual_tokens=40)

    assert silent_port.connections() == 0
    assert tickets[-1].headers()["x-ratelimit-remaining-requests"] == str(10_000 - 21)


@pytest.mark.usefixtures("backend")
async def test_headers_count_what_was_admitted_when_requests_are_served_from_a_slice(project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=1000, key_tpm=100_000, project_tpm=500_000)

    tickets = [await ratelimit.acquire(limits=limits, tokens=100, stream=False) for _ in range(5)]
    await ratelimit.adjust(tickets[0], actual_tokens=30)
    after = await ratelimit.acquire(limits=limits, tokens=100, stream=False)

    assert [t.headers()["x-ratelimit-remaining-requests"] for t in tickets] == ["999", "998", "997", "996", "995"]
    assert [t.headers()["x-ratelimit-remaining-tokens"] for t in tickets[1:]] == ["99800", "99700", "99600", "99500"]
    assert tickets[0].headers()["x-ratelimit-remaining-tokens"] == "99570"  # corrected in the slice
    assert after.headers()["x-ratelimit-remaining-requests"] == "994"
    assert after.headers()["x-ratelimit-remaining-tokens"] == "99470"  # the key's: tighter than the project's
    assert after.headers()["x-ratelimit-limit-tokens"] == "100000"


async def test_unused_part_of_a_slice_goes_back_to_its_window_when_the_slice_is_stale(redis_url, project_id):
    limits = Limits(key_id=1, project_id=project_id, key_rpm=10_000, key_tpm=1_000_000)
    for _ in range(3):
        ticket = await ratelimit.acquire(limits=limits, tokens=100, stream=False)
    await ratelimit.adjust(ticket, actual_tokens=10)
    held = _window(redis_url, project_id)
    assert int(held[b"r"]) > 3  # the slice is counted in Redis before any request uses it

    await asyncio.sleep(0.5)  # GOVERNANCE_LEASE_SECONDS (0.3) and the return

    window = _window(redis_url, project_id)
    assert (int(window[b"r"]), int(window[b"t"])) == (3, 210)


async def test_slices_go_back_when_the_connection_closes(redis_url, project_id, settings):
    settings.GOVERNANCE_LEASE_SECONDS = 60
    limits = Limits(key_id=1, project_id=project_id, key_rpm=10_000)
    await ratelimit.acquire(limits=limits, tokens=0, stream=False)
    assert int(_window(redis_url, project_id)[b"r"]) > 1

    await ratelimit.close()

    assert int(_window(redis_url, project_id)[b"r"]) == 1


async def test_requests_are_refused_at_once_when_redis_drops_the_connection_of_a_process_holding_a_slice(
    redis_url, project_id, settings, closed_redis
):
    settings.REDIS_URL = redis_url
    settings.GOVERNANCE_LEASE_SECONDS = 60
    limits = Limits(key_id=1, project_id=project_id, key_rpm=10_000)
    await ratelimit.acquire(limits=limits, tokens=0, stream=False)
    with redis.Redis.from_url(redis_url) as client:
        db = str(client.connection_pool.connection_kwargs.get("db", 0))
        for found in client.client_list():
            if found["db"] == db and found["cmd"] in {"evalsha", "eval"}:
                client.client_kill_filter(_id=found["id"])  # as a Redis restart or a cut network would
    await asyncio.sleep(0.05)  # the process sees its connection close
    settings.REDIS_URL = closed_redis

    with pytest.raises(ratelimit.RateLimiterUnavailable):
        await ratelimit.acquire(limits=limits, tokens=0, stream=False)


_FIRE_IN_WAVES = """
import asyncio, json, sys
from gateway.proxy import ratelimit

async def main():
    limits = ratelimit.Limits(**json.loads(sys.argv[1]))
    waves, size, tokens = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    warm = ratelimit.Limits(key_id=0, project_id=limits.project_id, key_rpm=10**9)
    await ratelimit.acquire(limits=warm, tokens=0, stream=False)
    print("ready", flush=True)
    sys.stdin.readline()
    admitted = refused = 0
    for _ in range(waves):
        results = await asyncio.gather(
            *(ratelimit.acquire(limits=limits, tokens=tokens, stream=False) for _ in range(size)),
            return_exceptions=True,
        )
        admitted += sum(isinstance(result, ratelimit.Ticket) for result in results)
        refused += sum(isinstance(result, ratelimit.RateLimited) for result in results)
    print(json.dumps({"admitted": admitted, "refused": refused}), flush=True)
    await ratelimit.close()

asyncio.run(main())
"""


def _fire(spawn, fields: dict, *, processes: int, waves: int, size: int, tokens: int = 0) -> list[dict]:
    children = [spawn(_FIRE_IN_WAVES, json.dumps(fields), str(waves), str(size), str(tokens)) for _ in range(processes)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [json.loads(child.stdout.readline()) for child in children]
    for child in children:
        assert child.wait(20) == 0
    return results


def test_exactly_the_rpm_is_admitted_when_two_processes_lease_from_one_window(spawn, project_id):
    fields = {"key_id": 1, "project_id": project_id, "key_rpm": 4000, "project_rpm": 10_000}

    results = _fire(spawn, fields, processes=2, waves=100, size=50)  # each asks for more than the window holds

    assert sum(result["admitted"] for result in results) == 4000
    assert sum(result["refused"] for result in results) == 6000


def test_exactly_the_tpm_is_admitted_when_two_processes_lease_from_one_window(spawn, project_id):
    fields = {"key_id": 1, "project_id": project_id, "key_tpm": 200_000}

    results = _fire(spawn, fields, processes=2, waves=50, size=50, tokens=90)

    assert sum(result["admitted"] for result in results) == 2222  # 2222 * 90 = 199,980


_HOLD_A_SLICE = """
import asyncio, json, sys
from gateway.proxy import ratelimit

async def main():
    await ratelimit.acquire(limits=ratelimit.Limits(**json.loads(sys.argv[1])), tokens=0, stream=False)
    print("holding", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_slice_of_a_killed_process_is_gone_when_its_window_closes(spawn, project_id, redis_url):
    fields = {"key_id": 1, "project_id": project_id, "key_rpm": 400, "window_seconds": 1.5}
    child = spawn(_HOLD_A_SLICE, json.dumps(fields))
    assert child.stdout.readline().strip() == "holding"
    child.kill()
    child.wait(10)
    limits = Limits(**fields)
    stranded = int(_window(redis_url, project_id)[b"r"]) - 1
    assert stranded > 0  # the dead process's slice stays counted ...

    admitted, _ = await _waves(limits, waves=1, size=400)
    assert len(admitted) == 400 - 1 - stranded  # ... so never more than the limit is admitted
    await asyncio.sleep(1.6)  # ... until its window closes

    admitted, _ = await _waves(limits, waves=10, size=50)
    assert len(admitted) == 400
