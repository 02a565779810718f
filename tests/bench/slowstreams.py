"""Many slow streams held by one worker at once, and what they cost it in memory.

A client (`python -m tests.bench.slowstreams`, asyncio + aiohttp, pinned to the client core like
the mock; wrk cannot hold streams and read them) opens N streaming requests for the model
`bench-slow`, spread over a short ramp. The mock trickles each answer (`mock-drip=<every>,<seconds>`
in tests/mock_upstream.py), so all N are open at the same time for several seconds. Meanwhile
`hold()` samples the worker's resident memory (VmRSS, every 0.1 s), and does it all twice. Memory
is "flat" when:

- every stream of both rounds answered 200 and ended with `data: [DONE]`, and all N were open at
  once (the last first chunk arrived before the first stream ended);
- the first round's peak is at most PER_STREAM_KIB per stream above the idle RSS: a held stream
  costs the server its buffers and its request's state, bounded, not the answer so far;
- while all N are held, RSS drifts by at most max(DRIFT_MIB, DRIFT_SHARE of the growth) from the
  first fifth of the plateau to its last: relaying more chunks costs no more memory;
- the second round raises the high-water mark by at most AGAIN_MIB: what the first round used is
  reused, nothing leaks.

RSS after the streams end is reported, not judged: CPython's allocator keeps most freed memory
for reuse rather than giving it back to the system (the bare forwarder too stays ~34 MiB above
its idle figure after a thousand streams, for good), so "back to idle" would measure the
allocator, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.procs import CLIENT_CORE, ROOT, STATE, VENV_BIN, pinned, rss_mib

MARKER = "SLOW_STREAMS_RESULT "
PER_STREAM_KIB = 64.0
DRIFT_MIB = 4.0
DRIFT_SHARE = 0.10
AGAIN_MIB = 4.0
ROUNDS = 2
RULE = (
    f"every stream ends with [DONE], all held at once; peak - idle <= {PER_STREAM_KIB:.0f} KiB per stream; "
    f"drift while held <= max({DRIFT_MIB:.0f} MiB, {DRIFT_SHARE:.0%} of the growth); "
    f"a second round adds <= {AGAIN_MIB:.0f} MiB to the high-water mark"
)
SAMPLE_EVERY_S = 0.1
SETTLE_S = 3.0  # after the last stream: the log writer flushes its rows, the pools go idle


# --- the client (runs in its own process on the client core) ---


async def _hold_streams(url: str, key: str, body: bytes, streams: int, ramp_s: float, timeout_s: float) -> dict:
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=30)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # one connection per stream, none pooled

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int) -> dict[str, Any]:
            await asyncio.sleep(ramp_s * index / streams)
            row: dict[str, Any] = {"start": time.time(), "first": None, "status": 0, "chunks": 0, "done": False}
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    row["status"] = response.status
                    async for line in response.content:
                        if not line.startswith(b"data:"):
                            continue
                        if row["first"] is None:
                            row["first"] = time.time()
                        if line.strip() == b"data: [DONE]":
                            row["done"] = True
                        else:
                            row["chunks"] += 1
            except TimeoutError:
                row["error"] = "timeout"
            except aiohttp.ClientError as exc:
                row["error"] = type(exc).__name__
            row["end"] = time.time()
            return row

        rows = await asyncio.gather(*(one(i) for i in range(streams)))
    return _summarize(rows)


def _summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    firsts = [r["first"] for r in rows if r["first"] is not None]
    ends = [r["end"] for r in rows]
    # The most streams delivering at once: +1 at a stream's first chunk, -1 at its end.
    events = sorted([(r["first"], 1) for r in rows if r["first"] is not None] + [(r["end"], -1) for r in rows])
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    waits = sorted(r["first"] - r["start"] for r in rows if r["first"] is not None)
    errors: dict[str, int] = {}
    for r in rows:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
        elif r["status"] != 200:
            errors[f"status {r['status']}"] = errors.get(f"status {r['status']}", 0) + 1
    return {
        "streams": len(rows),
        "completed": sum(1 for r in rows if r["status"] == 200 and r["done"]),
        "errors": errors,
        "most_open_at_once": most,
        "started_at": min(r["start"] for r in rows),
        "all_open_at": max(firsts) if len(firsts) == len(rows) else None,
        "first_end_at": min(ends),
        "ended_at": max(ends),
        "min_chunks": min((r["chunks"] for r in rows), default=0),
        "first_chunk_p50_ms": 1000 * waits[len(waits) // 2] if waits else None,
        "first_chunk_max_ms": 1000 * waits[-1] if waits else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Hold many slow streams open at once (the bench's client).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default=os.environ.get("BENCH_KEY", ""), help="the bearer key ($BENCH_KEY)")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams are opened")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a stream may take in all")
    args = parser.parse_args()
    summary = asyncio.run(
        _hold_streams(args.url, args.key, args.body_file.read_bytes(), args.streams, args.ramp, args.timeout)
    )
    print(MARKER + json.dumps(summary), flush=True)


# --- the bench's side: run the client, sample the worker, judge ---


@dataclass
class Round:
    """One round of N streams: what the client saw and the worker's RSS around it."""

    summary: dict[str, Any]
    before_mib: float
    peak_mib: float
    drift_mib: float  # while all were held: last fifth of the plateau against its first fifth
    after_mib: float

    @property
    def held_at_once(self) -> bool:
        s = self.summary
        return s["all_open_at"] is not None and s["all_open_at"] < s["first_end_at"]

    @property
    def completed(self) -> bool:
        return self.summary["completed"] == self.summary["streams"]


@dataclass
class SlowStreamsResult:
    streams: int
    rounds: list[Round]
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def first(self) -> Round:
        return self.rounds[0]

    @property
    def per_stream_kib(self) -> float:
        return 1024 * (self.first.peak_mib - self.first.before_mib) / max(self.streams, 1)

    @property
    def again_mib(self) -> float:
        """What the next round added on top of the first one's high-water mark."""
        high = max(self.first.peak_mib, self.first.after_mib)
        return max((max(r.peak_mib, r.after_mib) for r in self.rounds[1:]), default=high) - high

    @property
    def flat(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "completed": [r.summary["completed"] for r in self.rounds],
            "most_open_at_once": [r.summary["most_open_at_once"] for r in self.rounds],
            "errors": [r.summary["errors"] for r in self.rounds],
            "rss_idle_mib": round(self.first.before_mib, 1),
            "rss_peak_mib": [round(r.peak_mib, 1) for r in self.rounds],
            "rss_drift_while_held_mib": [round(r.drift_mib, 1) for r in self.rounds],
            "rss_after_mib": [round(r.after_mib, 1) for r in self.rounds],
            "per_stream_kib": round(self.per_stream_kib, 1),
            "next_rounds_added_mib": round(self.again_mib, 1),
            "checks": self.checks,
            "flat": self.flat,
            "client": [r.summary for r in self.rounds],
        }

    def line(self) -> str:
        first = self.first
        done = " and ".join(str(r.summary["completed"]) for r in self.rounds)
        return (
            f"{len(self.rounds)} rounds of {self.streams}: {done} ended with [DONE], "
            f"{first.summary['most_open_at_once']} open at once; RSS {first.before_mib:.1f} MiB idle, "
            f"{first.peak_mib:.1f} peak ({self.per_stream_kib:.0f} KiB/stream), drift {first.drift_mib:+.1f} "
            f"while held, {first.after_mib:.1f} after; next round {self.again_mib:+.1f} MiB"
        )


def _steady_rss(pid: int, seconds: float = 1.0) -> float:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_mib(pid))
        time.sleep(SAMPLE_EVERY_S)
    return statistics.median(samples)


def hold(
    *,
    url: str,
    key: str,
    worker: int,
    streams: int,
    ramp_s: float,
    stream_s: float,
    model: str = "bench-slow",
    rounds: int = ROUNDS,
) -> SlowStreamsResult:
    """Hold `streams` slow streams against the server whose worker is `worker`, `rounds` times one
    after the other, sampling its RSS; judge by the rule in this module's docstring."""
    body_file = STATE / "body-slow.json"
    body = {"model": model, "messages": [{"role": "user", "content": "trickle"}], "stream": True}
    body_file.write_text(json.dumps(body))
    done = [_round(url, key, worker, body_file, streams, ramp_s, stream_s) for _ in range(rounds)]
    return judge(streams, done)


def _round(url: str, key: str, worker: int, body_file: Path, streams: int, ramp_s: float, stream_s: float) -> Round:
    before = _steady_rss(worker)
    timeout = ramp_s + stream_s + 90
    argv = [str(VENV_BIN / "python"), "-m", "tests.bench.slowstreams", "--url", url]
    argv += ["--body-file", str(body_file), "--streams", str(streams), "--ramp", str(ramp_s)]
    argv += ["--timeout", str(timeout)]
    out = STATE / "logs" / "slow-streams-client.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[float, float]] = []
    with out.open("w") as log:
        client = subprocess.Popen(
            pinned(CLIENT_CORE, argv),
            cwd=ROOT,
            env=os.environ | {"BENCH_KEY": key},  # like wrk: not on a command line others can read
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout + 30
        try:
            while client.poll() is None and time.monotonic() < deadline:
                samples.append((time.time(), rss_mib(worker)))
                time.sleep(SAMPLE_EVERY_S)
        finally:
            if client.poll() is None:
                client.kill()
            client.wait(10)
    text = out.read_text(errors="replace")
    summary = next((json.loads(line[len(MARKER) :]) for line in text.splitlines() if line.startswith(MARKER)), None)
    if summary is None:
        raise RuntimeError(f"the slow-streams client printed no result (log: {out}):\n{text[-1500:]}")
    time.sleep(SETTLE_S)
    after = _steady_rss(worker)
    peak = max((rss for _, rss in samples), default=before)
    plateau = [
        rss for at, rss in samples if summary["all_open_at"] and summary["all_open_at"] <= at <= summary["first_end_at"]
    ]
    drift = 0.0
    if len(plateau) >= 5:
        fifth = max(1, len(plateau) // 5)
        drift = statistics.median(plateau[-fifth:]) - statistics.median(plateau[:fifth])
    return Round(summary, before, max(peak, after), drift, after)


def judge(streams: int, rounds: list[Round]) -> SlowStreamsResult:
    """Apply the rule in this module's docstring."""
    result = SlowStreamsResult(streams, rounds)
    first = rounds[0]
    growth = first.peak_mib - first.before_mib
    result.checks = {
        "every stream ended with [DONE]": all(r.completed for r in rounds),
        "all held at once": all(r.held_at_once for r in rounds),
        f"peak <= {PER_STREAM_KIB:.0f} KiB per stream over idle": growth * 1024 <= PER_STREAM_KIB * streams,
        f"drift while held <= max({DRIFT_MIB:.0f} MiB, {DRIFT_SHARE:.0%} of the growth)": all(
            r.drift_mib <= max(DRIFT_MIB, DRIFT_SHARE * growth) for r in rounds
        ),
    }
    if len(rounds) > 1:
        result.checks[f"next round adds <= {AGAIN_MIB:.0f} MiB (nothing leaks)"] = result.again_mib <= AGAIN_MIB
    return result


if __name__ == "__main__":
    main()
