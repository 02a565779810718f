"""Splitting an upstream's bytes into SSE `data:` payloads (gateway/proxy/sse.py), however the
bytes are cut into reads: the payloads are those a line-by-line reading of the whole stream finds."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from gateway.proxy.sse import SSEProtocolError, data_batches, data_payloads


def _reference(stream: bytes) -> list[bytes]:
    """Line by line, as the SSE format reads: LF ends a line (a CR before it is dropped), a blank
    line ends an event, `data:` lines (one optional space after the colon) are joined with LF."""
    payloads, data = [], []
    lines = stream.split(b"\n")
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        line = line.rstrip(b"\r")
        if not line and not last:
            if data:
                payloads.append(b"\n".join(data))
                data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        payloads.append(b"\n".join(data))
    return payloads


async def _reads(stream: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in [*cuts, len(stream)]:
        if cut > start:
            yield stream[start:cut]
            start = cut


def _split(stream: bytes, cuts: list[int], *, limit: int = 1 << 20) -> list[list[bytes]]:
    async def collect() -> list[list[bytes]]:
        return [batch async for batch in data_batches(_reads(stream, cuts), max_event_bytes=limit)]

    return asyncio.run(collect())


def _random_stream(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 12)):
        eol = rng.choice([b"\n", b"\r\n"])
        kind = rng.random()
        if kind < 0.6:
            for _ in range(rng.randint(1, 3)):
                parts.append(
                    b"data:"
                    + rng.choice([b" ", b"", b"  "])
                    + rng.randbytes(rng.randint(0, 8)).replace(b"\n", b"x").replace(b"\r", b"y")
                    + eol
                )
            parts.append(eol)
        elif kind < 0.8:
            parts.append(rng.choice([b": keep-alive", b"event: message", b"id: 7", b"retry: 10"]) + eol)
        else:
            parts.append(eol)
    if rng.random() < 0.3:
        parts.append(b"data: unterminated" + rng.choice([b"", b"\r"]))
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(300))
def test_any_cut_of_the_bytes_gives_the_payloads_of_a_line_by_line_reading(seed: int) -> None:
    rng = random.Random(seed)
    stream = _random_stream(rng)
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 6)))) if len(stream) > 1 else []

    batches = _split(stream, cuts)

    assert [p for batch in batches for p in batch] == _reference(stream)
    assert all(batches), "no empty batch is yielded"


def test_the_events_completed_by_one_read_come_as_one_batch() -> None:
    stream = b"data: a\n\ndata: b\r\n\r\n: comment\n\ndata: c\ndata: d\n\ndata: e"
    assert _split(stream, [len(b"data: a\n\ndata: b\r\n\r\n: comment\n\ndata: c\ndata")]) == [
        [b"a", b"b"],
        [b"c\nd"],
        [b"e"],
    ]


def test_an_event_over_the_limit_is_refused() -> None:
    with pytest.raises(SSEProtocolError):
        _split(b"data: " + b"x" * 100, [10, 50], limit=64)


def test_payloads_come_one_by_one_from_data_payloads() -> None:
    async def collect() -> list[bytes]:
        return [p async for p in data_payloads(_reads(b"data: 1\n\ndata: 2\n\n", [3]), max_event_bytes=1024)]

    assert asyncio.run(collect()) == [b"1", b"2"]
