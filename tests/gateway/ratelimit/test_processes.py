"""Exact across processes: several processes fire at the same moment at one Redis; exactly L get through.

Each child opens its connections first (on an unrelated, unlimited key), says "ready", waits for
"go" on stdin, then sends all its requests at once and prints how many were admitted.
"""

from __future__ import annotations

import json

import pytest

_FIRE = """
import asyncio, json, sys
from gateway.proxy import ratelimit

async def main():
    limits = ratelimit.Limits(**json.loads(sys.argv[1]))
    count, tokens = int(sys.argv[2]), int(sys.argv[3])
    warm = ratelimit.Limits(key_id=0, project_id=limits.project_id, key_rpm=10**9)
    await asyncio.gather(*(ratelimit.acquire(limits=warm, tokens=0, stream=False) for _ in range(count)))
    print("ready", flush=True)
    sys.stdin.readline()
    results = await asyncio.gather(
        *(ratelimit.acquire(limits=limits, tokens=tokens, stream=False) for _ in range(count)),
        return_exceptions=True,
    )
    admitted = sum(isinstance(result, ratelimit.Ticket) for result in results)
    refused = sum(isinstance(result, ratelimit.RateLimited) for result in results)
    print(json.dumps({"admitted": admitted, "refused": refused}), flush=True)
    await ratelimit.close()

asyncio.run(main())
"""


def _fire_at_once(spawn, limits_per_child: list[dict], *, count: int, tokens: int) -> list[dict]:
    children = [spawn(_FIRE, json.dumps(fields), str(count), str(tokens)) for fields in limits_per_child]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [json.loads(child.stdout.readline()) for child in children]
    for child in children:
        assert child.wait(10) == 0
    assert sum(result["admitted"] + result["refused"] for result in results) == count * len(children)
    return results


@pytest.mark.parametrize("processes", [2, 4])
def test_exactly_rpm_requests_are_admitted_when_processes_send_at_the_same_moment(spawn, project_id, processes):
    fields = {"key_id": 1, "project_id": project_id, "key_rpm": 25}

    results = _fire_at_once(spawn, [fields] * processes, count=20, tokens=0)

    assert sum(result["admitted"] for result in results) == 25


def test_exactly_as_many_requests_as_fit_the_tpm_are_admitted_when_processes_send_at_the_same_moment(spawn, project_id):
    fields = {"key_id": 1, "project_id": project_id, "key_tpm": 1000}

    results = _fire_at_once(spawn, [fields] * 4, count=15, tokens=70)

    assert sum(result["admitted"] for result in results) == 14  # 14 * 70 = 980; a 15th would make 1050


def test_project_limits_hold_across_keys_when_processes_send_at_the_same_moment(spawn, project_id):
    per_key = [
        {"key_id": key_id, "project_id": project_id, "key_rpm": 10, "project_rpm": 30, "project_tpm": 2000}
        for key_id in (1, 2, 3, 4)
    ]

    results = _fire_at_once(spawn, per_key, count=15, tokens=100)

    assert sum(result["admitted"] for result in results) == 20  # the project's 2000 tokens: 20 requests
    assert all(result["admitted"] <= 10 for result in results)  # and no key above its own 10
