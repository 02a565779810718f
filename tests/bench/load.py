"""The load generator: Debian's wrk with tests/bench/wrk.lua, or a small aiohttp one when wrk is missing.

Both print one line, `BENCH_RESULT {json}`, with the request count, latency percentiles (µs) and
wrk's error counters. Run the fallback alone with
`python -m tests.bench.load --url http://127.0.0.1:9100/v1/chat/completions --body-file body.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.procs import CLIENT_CORE, ROOT, VENV_BIN, percentages, pinned

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
MARKER = "BENCH_RESULT "
REQUEST_TIMEOUT_S = 10


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, status (non-2xx), timeout
    cpu: dict[str, float] = field(default_factory=dict)  # filled in by the caller (procs.CpuMeter)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def server_ms_per_request(self) -> float | None:
        """The server's CPU time per request: the figure least disturbed by wake-ups and other load."""
        if "server_cpu_s" not in self.cpu or not self.requests:
            return None
        return 1000 * self.cpu["server_cpu_s"] / self.requests

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "rps": round(self.rps, 1),
            "error_count": self.error_count,
            "server_cpu_ms_per_request": self.server_ms_per_request,
        }

    @classmethod
    def combine(cls, parts: Sequence[LoadResult]) -> LoadResult:
        """One result from a scenario's interleaved rounds: requests, seconds, errors and CPU time
        added up; p50 the rounds' median, the other percentiles and the maximum their worst."""
        if not parts:
            raise ValueError("nothing to combine")
        requests = sum(p.requests for p in parts)
        cpu: dict[str, float] = {}
        if all(p.cpu for p in parts):
            seconds = {k: sum(p.cpu[k] for p in parts) for k in parts[0].cpu if k.endswith("_s")}
            names = {k.removesuffix("_cpu_s"): v for k, v in seconds.items() if k.endswith("_cpu_s")}
            cpu = seconds | percentages(seconds["elapsed_s"], **names)
        return cls(
            requests=requests,
            duration_s=sum(p.duration_s for p in parts),
            p50_ms=statistics.median(p.p50_ms for p in parts),
            p90_ms=max(p.p90_ms for p in parts),
            p99_ms=max(p.p99_ms for p in parts),
            max_ms=max(p.max_ms for p in parts),
            mean_ms=sum(p.mean_ms * p.requests for p in parts) / requests if requests else 0.0,
            errors={k: sum(p.errors.get(k, 0) for p in parts) for k in parts[0].errors},
            cpu=cpu,
        )

    @classmethod
    def parse(cls, output: str) -> LoadResult:
        for line in output.splitlines():
            if line.startswith(MARKER):
                raw = json.loads(line.removeprefix(MARKER))
                errors = {k: int(raw[k]) for k in ("connect", "read", "write", "status", "timeout")}
                return cls(
                    requests=int(raw["requests"]),
                    duration_s=raw["duration_us"] / 1e6,
                    p50_ms=raw["p50_us"] / 1000,
                    p90_ms=raw["p90_us"] / 1000,
                    p99_ms=raw["p99_us"] / 1000,
                    max_ms=raw["max_us"] / 1000,
                    mean_ms=raw["mean_us"] / 1000,
                    errors=errors,
                )
        raise RuntimeError(f"the load generator printed no result:\n{output[-2000:]}")


def ensure_wrk() -> tuple[str | None, str]:
    """wrk's path (installing Debian's package if needed), or None and why not."""
    if path := shutil.which("wrk"):
        return path, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "wrk is not installed and apt-get is not usable here (not root or not Debian)"
    print("installing wrk (apt-get install -y wrk) ...", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return None, f"{' '.join(argv)} took longer than 300 s"
        if result.returncode != 0:
            return None, f"{' '.join(argv)} failed: {(result.stdout + result.stderr).strip()[-300:]}"
    path = shutil.which("wrk")
    return (path, "") if path else (None, "apt-get install wrk succeeded but no wrk on PATH")


@dataclass(frozen=True)
class Load:
    """One scenario's load: where, what body, which key, how many connections, for how long."""

    url: str
    body_file: Path
    key: str
    concurrency: int
    duration_s: float


def run_load(load: Load, *, wrk: str | None) -> LoadResult:
    env = os.environ | {"BENCH_BODY_FILE": str(load.body_file), "BENCH_KEY": load.key}
    if wrk:
        argv = [
            wrk,
            "-t1",  # one core for the client: one thread
            f"-c{load.concurrency}",
            f"-d{max(1, round(load.duration_s))}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "-s",
            str(WRK_SCRIPT),
            load.url,
        ]
    else:
        argv = [
            str(VENV_BIN / "python"),
            "-m",
            "tests.bench.load",
            "--url",
            load.url,
            "--body-file",
            str(load.body_file),
            "--key",
            load.key,
            "--concurrency",
            str(load.concurrency),
            "--duration",
            str(load.duration_s),
        ]
    result = subprocess.run(
        pinned(CLIENT_CORE, argv),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=load.duration_s + REQUEST_TIMEOUT_S + 30,
        stdin=subprocess.DEVNULL,
    )
    return LoadResult.parse(result.stdout + result.stderr)


# --- the fallback load generator (used when wrk cannot be installed) ---


async def _python_load(load: Load) -> dict[str, Any]:
    import aiohttp

    body = load.body_file.read_bytes()
    headers = {"Content-Type": "application/json"}
    if load.key:
        headers["Authorization"] = f"Bearer {load.key}"
    latencies: list[float] = []
    errors = dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
    received = 0
    started = time.monotonic()
    deadline = started + load.duration_s
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=load.concurrency, force_close=False)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal received
            while time.monotonic() < deadline:
                begin = time.perf_counter()
                try:
                    async with session.post(load.url, data=body, headers=headers) as response:
                        payload = await response.read()
                        if response.status >= 400:
                            errors["status"] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                    continue
                except aiohttp.ClientConnectorError:
                    errors["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
                except aiohttp.ClientError:
                    errors["read"] += 1
                    continue
                latencies.append(time.perf_counter() - begin)
                received += len(payload)

        await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1e6 if latencies else 0.0

    return {
        "requests": len(latencies),  # completed, non-2xx included (as wrk counts)
        "duration_us": elapsed * 1e6,
        "bytes": received,
        **errors,
        "p50_us": percentile(50),
        "p90_us": percentile(90),
        "p99_us": percentile(99),
        "max_us": latencies[-1] * 1e6 if latencies else 0.0,
        "mean_us": sum(latencies) / len(latencies) * 1e6 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="The benchmark's fallback load generator (aiohttp).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    load = Load(args.url, args.body_file, args.key, args.concurrency, args.duration)
    print(MARKER + json.dumps(asyncio.run(_python_load(load))), flush=True)


if __name__ == "__main__":
    main()
