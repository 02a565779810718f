"""router.idle_guarded: one timer per stream times the upstream's silence between chunks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.proxy.errors import UpstreamError, UpstreamTimeout
from gateway.proxy.router import idle_guarded
from gateway.selectors import DeploymentSnapshot


def _deployment(idle: float | None) -> DeploymentSnapshot:
    return DeploymentSnapshot(
        id=1,
        provider_id=1,
        provider_name="p",
        provider_kind="openai",
        provider_approved=True,
        base_url="",
        api_key="sk-provider-secret-value",
        upstream_model="m",
        idle_timeout=idle,
    )


async def _chunks(gaps: list[float], *, fail: Exception | None = None) -> AsyncIterator[dict]:
    for index, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield {"n": index}
    if fail is not None:
        raise fail


async def _collect(stream: AsyncIterator[dict], *, reading: float = 0.0) -> list[dict]:
    out = []
    async for chunk in stream:
        out.append(chunk)
        await asyncio.sleep(reading)  # a client slow to read
    return out


async def test_chunks_within_the_timeout_all_pass() -> None:
    got = await _collect(idle_guarded(_chunks([0.01] * 30), _deployment(0.2)))
    assert [c["n"] for c in got] == list(range(30))


async def test_a_stall_longer_than_the_timeout_fails_the_stream_in_time() -> None:
    started = time.monotonic()
    got: list[dict] = []
    with pytest.raises(UpstreamTimeout):
        async for chunk in idle_guarded(_chunks([0.0, 0.0, 5.0]), _deployment(0.2)):
            got.append(chunk)
    assert len(got) == 2
    assert 0.15 < time.monotonic() - started < 1.0


async def test_a_client_slow_to_read_is_not_the_upstreams_silence() -> None:
    got = await _collect(idle_guarded(_chunks([0.0] * 4), _deployment(0.1)), reading=0.25)
    assert len(got) == 4


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    task = asyncio.create_task(_collect(idle_guarded(_chunks([0.0, 5.0]), _deployment(0.3))))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_upstream_errors_never_carry_the_providers_key() -> None:
    failing = _chunks([0.0], fail=UpstreamError("bad key sk-provider-secret-value"))
    for idle in (None, 1.0):
        with pytest.raises(UpstreamError) as caught:
            await _collect(idle_guarded(failing, _deployment(idle)))
        assert "sk-provider-secret-value" not in str(caught.value)
        failing = _chunks([0.0], fail=UpstreamError("bad key sk-provider-secret-value"))


async def test_no_timeout_configured_means_no_limit() -> None:
    got = await _collect(idle_guarded(_chunks([0.0, 0.3]), _deployment(None)))
    assert len(got) == 2
