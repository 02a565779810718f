"""`make bench`: one run, one load, the targets of issue 13.

- direct: the mock upstream (tests/mock_upstream.py) called directly, the limit;
- forwarder: a bare Django + django-ninja forwarder (tests/bench/forwarder.py), the framework's ceiling;
- gateway: gunicorn + 1 uvicorn worker, production settings (Postgres, Redis, DEBUG=0);
- gateway-governed: the same with a hard budget and RPM/TPM limits far above the load;
- litellm: LiteLLM's proxy with one worker, installed into .bench/litellm-venv (the peer);
- gateway-granian (optional, `--targets ...,gateway-granian`): the gateway served by granian, a
  Rust HTTP server, instead of gunicorn + uvicorn, to compare the two servers in one run.

The servers run on core 0 (one at a time under load); wrk and the mock share core 1, so figures
are per core. The targets other than LiteLLM are started side by side, each with its own database
and Redis index, and each scenario (non-streaming at c=1 and c=32, streaming at c=1 and c=32) is
measured in interleaved rounds (`--rounds`, 4): every target in turn for a quarter of the
duration, after a short warm-up, so that a shared machine's drift in speed moves all of them
alike and the ratios between them hold. LiteLLM follows alone. After the scenarios a server's
worker RSS is read; the gateway then holds
1,000 slow streams at once while its RSS is sampled (tests/bench/slowstreams.py), and a short
check shows that the server runs the lifespan shutdown that flushes the request log. Results,
ratios and the targets (PASS/MISS, tests/bench/goals.py) are printed and written to
.bench/results.json (BENCH_STATE_DIR moves them).

`--profile` instead runs the gateway under py-spy during c=32 non-streaming load and prints
where its time goes (`--profile-target` and `--profile-scenario` pick others).

Every process started here is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from tests.bench import peer, pyspy, servers, slowstreams
from tests.bench.goals import NOISY_PCT, Run, evaluate, noisy_runs, print_evaluation
from tests.bench.load import Load, LoadResult, ensure_wrk, run_load
from tests.bench.procs import (
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    STATE,
    VENV_BIN,
    CpuMeter,
    Proc,
    free_port,
    pinned,
    pinning_available,
    raise_open_files_limit,
    rss_mib,
    run,
    set_niceness,
    wait_for_port,
)

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/symbiosis_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
MODEL = "bench-model"
PROMPT = "Hello from the benchmark, please echo this back"
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "system", "content": "You are a benchmark."}, {"role": "user", "content": PROMPT}],
    "max_tokens": 32,
    "temperature": 0,
}
# `gateway-governed`: the same gateway with a hard budget (prices set), and RPM/TPM limits on the
# key and the project, all far above the load: the cost of the governance on the hot path.
TARGETS = ("direct", "forwarder", "gateway", "gateway-governed", "litellm")
ALL_TARGETS = (*TARGETS, "forwarder-stock", "gateway-granian")
GATEWAY_SERVERS = {"gateway": "uvicorn", "gateway-granian": "granian"}  # also checked for the lifespan flush
GATEWAY_SLOTS = {(False, "uvicorn"): 0, (True, "uvicorn"): 1, (False, "granian"): 2}  # database and Redis index
# Targets measured one after another, not in the interleaved rounds: LiteLLM's requests take up to
# a second at c=32, too long for rounds of a few seconds (the ramp-up at each start would count against it).
ALONE = frozenset({"litellm"})
ROUND_WARMUP_S = 0.5  # warm-up before each later round: wrk opens its connections anew each time


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    concurrency: int


SCENARIOS = (
    Scenario("non-stream c=1", stream=False, concurrency=1),
    Scenario("non-stream c=32", stream=False, concurrency=32),
    Scenario("stream c=1", stream=True, concurrency=1),
    Scenario("stream c=32", stream=True, concurrency=32),
)


@dataclass
class Endpoint:
    """A running target: where to send chat completions and with which key (and, for a gateway,
    the environment it runs with, so that a second server can be started on the same database)."""

    url: str
    key: str
    env: dict[str, str] | None = None


class Skip(Exception):
    """A target that cannot be measured this run; the reason is printed and recorded."""


# --- the targets ---


def start_mock() -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        "mock", pinned(CLIENT_CORE, [str(VENV_BIN / "python"), "-m", "tests.mock_upstream", "--port", str(port)])
    )
    wait_for_port(port, timeout=30, proc=proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def start_forwarder(upstream: str, *, handler: str = "lean") -> tuple[Proc, Endpoint]:
    port = free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "tests.bench.forwarder_settings",
        "BENCH_UPSTREAM": upstream,
        "BENCH_FORWARDER_HANDLER": handler,
    }
    name = "forwarder" if handler == "lean" else f"forwarder-{handler}"
    proc = servers.serve(name, "tests.bench.forwarder:application", port=port, env=env)
    wait_for_port(port, timeout=60, proc=proc)
    return proc, Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", "sk-bench")


def gateway_env(slot: int = 0) -> dict[str, str]:
    """The environment of one gateway target; each slot has its own database, Redis index and data
    directory, so that the gateways can run side by side for the interleaved rounds."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY_"))}
    suffix = f"_{slot}" if slot else ""
    base, index = REDIS_URL.rsplit("/", 1)
    return env | {
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "DATABASE_URL": DATABASE_URL + suffix,
        "REDIS_URL": f"{base}/{int(index) + slot}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECRETS_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DEBUG": "0",
        "DATA_DIR": str(STATE / f"gateway-data{suffix}"),
        # Bodies in the request log: `metadata` (the foundation's figures) unless asked for.
        "LOG_BODIES": os.environ.get("LOG_BODIES", "metadata"),
        "UPSTREAM_ALLOW_PRIVATE_NETWORKS": "true",  # the mock upstream listens on 127.0.0.1
    }


def prepare_gateway(env: dict[str, str], upstream: str, *, governed: bool = False, slow_model: str = "") -> str:
    """A fresh database and Redis index, migrated and seeded through gateway.services; returns the key."""
    import psycopg
    import redis

    database_url, redis_url = env["DATABASE_URL"], env["REDIS_URL"]
    name = database_url.rsplit("/", 1)[1]
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise Skip(f"unexpected database name {name!r}")
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
            client.flushdb()
    except (psycopg.Error, redis.RedisError) as exc:
        raise Skip(f"Postgres or Redis is not usable ({type(exc).__name__}: {exc})") from None
    python = str(VENV_BIN / "python")
    run([python, "manage.py", "migrate", "--noinput", "-v0"], timeout=300, env=env)
    seed = [python, "-m", "tests.bench.seed", "--upstream", upstream, *(["--governed"] if governed else [])]
    if slow_model:
        seed += ["--slow-upstream-model", slow_model]
    output = run(seed, timeout=120, env=env).stdout
    for line in output.splitlines():
        if line.startswith("BENCH_KEY "):
            return line.split(" ", 1)[1].strip()
    raise RuntimeError(f"tests.bench.seed printed no key:\n{output[-2000:]}")


def start_gateway(
    upstream: str, *, governed: bool = False, server: str = "uvicorn", slow_model: str = ""
) -> tuple[Proc, Endpoint]:
    env = gateway_env(GATEWAY_SLOTS[governed, server])
    key = prepare_gateway(env, upstream, governed=governed, slow_model=slow_model)
    port = free_port()
    name = "gateway-governed" if governed else ("gateway" if server == "uvicorn" else f"gateway-{server}")
    proc = servers.serve(name, "gateway.asgi:application", port=port, env=env, server=server)
    wait_for_port(port, timeout=60, proc=proc)
    return proc, Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", key, env)


def start_litellm(upstream: str) -> tuple[Proc, Endpoint]:
    try:
        executable = peer.ensure_installed()
    except (RuntimeError, OSError) as exc:
        raise Skip(f"cannot install litellm[proxy]=={peer.LITELLM_VERSION}: {exc}") from None
    port = free_port()
    proc, key = peer.start(executable=executable, upstream=upstream, port=port)
    try:
        wait_for_port(port, timeout=180, proc=proc)
    except RuntimeError as exc:
        proc.stop()
        raise Skip(f"did not start: {str(exc).splitlines()[0]} (log: {proc.log})") from None
    return proc, Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", key)


# --- checking and measuring ---


def body_file(stream: bool) -> Path:
    path = STATE / ("body-stream.json" if stream else "body.json")
    path.write_text(json.dumps(BODY | {"stream": True} if stream else BODY))
    return path


def check(endpoint: Endpoint, *, stream: bool, attempts_s: float = 30.0) -> None:
    """One real request must succeed with the right shape before we measure (retried while starting)."""
    if not endpoint.url.startswith("http://127.0.0.1:"):
        raise RuntimeError(f"the benchmark only talks to loopback, not {endpoint.url}")
    request = urllib.request.Request(  # noqa: S310 - an http://127.0.0.1 URL, checked above
        endpoint.url,
        data=body_file(stream).read_bytes(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {endpoint.key}"},
    )
    deadline = time.monotonic() + attempts_s
    problem = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                payload = response.read()
            if stream:
                events = [line for line in payload.split(b"\n") if line.startswith(b"data:")]
                if len(events) < 3 or events[-1].strip() != b"data: [DONE]" or b"echo" not in payload:
                    raise ValueError(f"not an OpenAI event stream: {payload[:200]!r}")
            else:
                reply = json.loads(payload)
                if "echo" not in reply["choices"][0]["message"]["content"]:
                    raise ValueError(f"unexpected reply: {payload[:200]!r}")
            return
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}: {exc.read()[:300]!r}"
            if exc.code < 500:
                break
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise RuntimeError(f"a {'streaming' if stream else 'non-streaming'} check request failed: {problem}")


class Quiet:
    """Before each run, wait a little (bounded per run and in total) for other processes to calm down.

    Shared machines run other people's tests; a run that starts during such a burst is disturbed.
    """

    def __init__(self, *, per_run: float, total: float) -> None:
        self.per_run, self.left = per_run, total

    def wait(self, *, server: Proc | None, mock: Proc | None) -> None:
        deadline = time.monotonic() + min(self.per_run, self.left)
        announced = False
        while time.monotonic() < deadline:
            started = time.monotonic()
            meter = CpuMeter(server=server, mock=None if mock is server else mock)
            time.sleep(0.5)
            other = meter.stop()["other_cpu_pct"]
            self.left -= time.monotonic() - started
            if other < NOISY_PCT / 2:
                return
            if not announced:
                print(f"  (other processes use {other:.0f}% of a core; waiting up to {self.per_run:.0f} s)", flush=True)
                announced = True


def measure(
    endpoint: Endpoint,
    scenario: Scenario,
    *,
    wrk: str | None,
    duration: float,
    warmup: float,
    server: Proc | None,
    mock: Proc | None,
    quiet: Quiet | None = None,
) -> LoadResult:
    def load(seconds: float) -> Load:
        return Load(endpoint.url, body_file(scenario.stream), endpoint.key, scenario.concurrency, seconds)

    if quiet is not None:
        quiet.wait(server=server, mock=mock)
    if warmup > 0:
        run_load(load(warmup), wrk=wrk)
    meter = CpuMeter(server=server, mock=None if mock is server else mock)
    result = run_load(load(duration), wrk=wrk)
    result.cpu = meter.stop()
    return result


# --- reporting ---


def fmt_errors(result: LoadResult) -> str:
    if not result.error_count:
        return "0"
    parts = ", ".join(f"{kind} {n}" for kind, n in result.errors.items() if n)
    return f"{result.error_count} ({parts})"


def fmt_cpu(result: LoadResult) -> str:
    cpu = result.cpu
    if not cpu:
        return ""
    per_request = result.server_ms_per_request
    server, mock, other = cpu["server_cpu_pct"], cpu["mock_cpu_pct"], cpu["other_cpu_pct"]
    services = cpu.get("services_cpu_pct", 0.0)
    return f"{server:>5.0f}% {per_request or 0:>7.3f} {mock:>5.0f}% {services:>5.0f}% {other:>6.0f}%"


def print_table(results: dict[str, dict[str, LoadResult]], skipped: dict[str, str]) -> None:
    print()
    header = (
        f"{'target':<16} {'scenario':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'srv cpu':>6} {'ms/req':>7} {'mock':>6} {'pg+rd':>6} {'other':>7}  errors"
    )
    print(header)
    print("-" * (len(header) + 4))
    for target, by_scenario in results.items():
        for scenario, result in by_scenario.items():
            print(
                f"{target:<16} {scenario:<16} {result.rps:>8.1f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} "
                f"{fmt_cpu(result)}  {fmt_errors(result)}"
            )
    for target, reason in skipped.items():
        print(f"{target:<16} skipped: {reason}")
    print(
        "srv cpu: the server's CPU (100% = its whole core); ms/req: its CPU time per request; "
        "mock: the mock's CPU;\npg+rd: Postgres and Redis (the gateway's log rows and counters); "
        "other: CPU used by processes that are not part of the bench\n(noise: above a few % the figures "
        "are disturbed). Targets other than LiteLLM are measured in interleaved rounds (--rounds)."
    )


def meta(args: argparse.Namespace, wrk: str | None, wrk_note: str) -> dict[str, Any]:
    import django

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version()},
        "pinning": f"server core {SERVER_CORE}, load generator and mock core {CLIENT_CORE}"
        if pinning_available()
        else "none (needs taskset and 2 cores)",
        "load_generator": "wrk" if wrk else f"python aiohttp fallback ({wrk_note})",
        "priority": args.priority,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "body": BODY,
        "django": django.get_version(),
        "litellm": peer.LITELLM_VERSION,
        "granian": servers.granian_version() if "gateway-granian" in args.targets else None,
        "slow_streams": {
            "streams": args.slow_streams,
            "chunk_every_s": args.slow_every,
            "stream_s": args.slow_seconds,
            "ramp_s": args.slow_ramp,
            "flat_rule": slowstreams.RULE,
        },
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# --- the two modes ---


def start_target(target: str, upstream: str, args: argparse.Namespace) -> tuple[Proc, Endpoint]:
    slow_model = f"mock-drip={args.slow_every:g},{args.slow_seconds:g}"
    if target == "forwarder":
        return start_forwarder(upstream)
    if target == "forwarder-stock":
        return start_forwarder(upstream, handler="stock")
    if target == "gateway":
        return start_gateway(upstream, slow_model=slow_model)
    if target == "gateway-governed":
        return start_gateway(upstream, governed=True, slow_model=slow_model)
    if target == "gateway-granian":
        try:
            servers.ensure_granian()
        except RuntimeError as exc:
            raise Skip(f"cannot install granian=={servers.GRANIAN_VERSION}: {str(exc).splitlines()[0]}") from None
        return start_gateway(upstream, server="granian", slow_model=slow_model)
    if target == "litellm":
        return start_litellm(upstream)
    raise ValueError(f"unknown target {target!r}")


@dataclass
class Extras:
    """What is measured besides the load: worker memory, slow streams, the lifespan flush."""

    rss_mib: dict[str, float]
    slow: dict[str, slowstreams.SlowStreamsResult]
    slow_skipped: dict[str, str]
    lifespan: dict[str, servers.LifespanCheck | str]


def after_scenarios(target: str, proc: Proc, endpoint: Endpoint, args: argparse.Namespace, extras: Extras) -> None:
    """A server's worker RSS at the end of its scenarios, then (gateways) the slow streams."""
    worker = proc.worker_pid()
    extras.rss_mib[target] = round(rss_mib(worker), 1)
    print(f"[{target}] worker RSS after its scenarios: {extras.rss_mib[target]:.1f} MiB", flush=True)
    if target not in args.slow_targets:
        return
    if args.slow_streams <= 0:
        extras.slow_skipped[target] = "off (--slow-streams 0)"
        return
    if args.open_files < 2 * args.slow_streams + 512:  # a socket to the client and one upstream per stream
        extras.slow_skipped[target] = f"the open-files limit ({args.open_files}) is too low; raise `ulimit -n`"
        print(f"[{target}] slow streams skipped: {extras.slow_skipped[target]}", flush=True)
        return
    print(
        f"[{target}] holding {args.slow_streams} slow streams (a chunk every {args.slow_every:g} s "
        f"for {args.slow_seconds:g} s, opened over {args.slow_ramp:g} s) ...",
        flush=True,
    )
    try:
        result = slowstreams.hold(
            url=endpoint.url,
            key=endpoint.key,
            worker=worker,
            streams=args.slow_streams,
            ramp_s=args.slow_ramp,
            stream_s=args.slow_seconds,
        )
    except RuntimeError as exc:
        extras.slow_skipped[target] = f"failed: {exc}"
        print(f"[{target}] slow streams FAILED: {exc}", flush=True)
        return
    extras.slow[target] = result
    print(f"[{target}] slow streams: {result.line()}", flush=True)
    if not proc.alive():
        raise RuntimeError(f"{target} died while holding slow streams:\n{proc.tail()}")


def check_lifespan(target: str, endpoint: Endpoint, extras: Extras) -> None:
    """Does this server run the lifespan shutdown (the gateway's final log flush)? On its own database."""
    server = GATEWAY_SERVERS[target]
    assert endpoint.env is not None
    try:
        result = servers.lifespan_check(
            server=server,
            env=endpoint.env,
            database_url=endpoint.env["DATABASE_URL"],
            url_path="/v1/chat/completions",
            key=endpoint.key,
            body=body_file(stream=False).read_bytes(),
        )
    except (RuntimeError, OSError) as exc:
        extras.lifespan[target] = f"failed: {exc}"
        print(f"[{target}] lifespan check FAILED: {exc}", flush=True)
        return
    extras.lifespan[target] = result
    print(f"[{target}] lifespan: {result.line()}", flush=True)


@dataclass
class Bench:
    """One run: the targets started, measured scenario by scenario, and what was found."""

    args: argparse.Namespace
    scenarios: list[Scenario]
    wrk: str | None
    mock: Proc
    upstream: str
    quiet: Quiet | None
    results: dict[str, dict[str, LoadResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    extras: Extras = field(default_factory=lambda: Extras(rss_mib={}, slow={}, slow_skipped={}, lifespan={}))
    failed: bool = False

    def measure_group(self, targets: list[str], *, rounds: int) -> None:
        """Start the targets side by side, then measure each scenario in `rounds` rounds that visit
        every target in turn for duration/rounds seconds: a machine that speeds up or slows down
        during the run (a shared VM does, by tens of per cent within a minute) moves every
        target's figures alike, so the ratios between them hold. Then memory, slow streams and
        the lifespan check per target, and the targets are stopped."""
        running: dict[str, tuple[Proc | None, Endpoint]] = {}
        started = time.monotonic()
        try:
            for target in targets:
                if started_target := self._start(target):
                    running[target] = started_target
            slice_s = self.args.duration / rounds
            for scenario in self.scenarios:
                parts: dict[str, list[LoadResult]] = {t: [] for t in running}
                for round_ in range(rounds):
                    for target in list(running):
                        proc, endpoint = running[target]
                        warmup = self.args.warmup if round_ == 0 else min(self.args.warmup, ROUND_WARMUP_S)
                        try:
                            parts[target].append(self._measure(target, proc, endpoint, scenario, slice_s, warmup))
                        except RuntimeError as exc:
                            self._fail(target, exc)
                            if proc is not None:
                                proc.stop()
                            del running[target]
                for target in running:
                    result = LoadResult.combine(parts[target])
                    self.results[target][scenario.name] = result
                    print(
                        f"[{target}] {scenario.name:<16} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms"
                        f"  p99 {result.p99_ms:7.2f} ms  errors {fmt_errors(result)}"
                        + (f"  ({rounds} rounds)" if rounds > 1 else ""),
                        flush=True,
                    )
            for target, (proc, endpoint) in running.items():
                if proc is None:
                    continue
                try:
                    after_scenarios(target, proc, endpoint, self.args, self.extras)
                except RuntimeError as exc:
                    self._fail(target, exc)
                proc.stop()
                if target in GATEWAY_SERVERS and self.args.lifespan_check:
                    check_lifespan(target, endpoint, self.extras)
        finally:
            for proc, _endpoint in running.values():
                if proc is not None:
                    proc.stop()
        print(f"[{', '.join(targets)}] done in {time.monotonic() - started:.0f} s", flush=True)

    def _start(self, target: str) -> tuple[Proc | None, Endpoint] | None:
        proc: Proc | None = None
        try:
            if target == "direct":
                endpoint = Endpoint(self.upstream + "/chat/completions", "sk-bench")
            else:
                print(f"[{target}] starting ...", flush=True)
                proc, endpoint = start_target(target, self.upstream, self.args)
            for stream in sorted({s.stream for s in self.scenarios}):
                check(endpoint, stream=stream)
        except Skip as exc:
            self.skipped[target] = str(exc)
            print(f"{'LiteLLM' if target == 'litellm' else target} skipped: {exc}", flush=True)
        except RuntimeError as exc:
            self._fail(target, exc)
        else:
            self.results[target] = {}
            return proc, endpoint
        if proc is not None:
            proc.stop()
        return None

    def _measure(
        self, target: str, proc: Proc | None, endpoint: Endpoint, scenario: Scenario, seconds: float, warmup: float
    ) -> LoadResult:
        result = measure(
            endpoint,
            scenario,
            wrk=self.wrk,
            duration=seconds,
            warmup=warmup,
            server=proc or self.mock,
            mock=self.mock,
            quiet=self.quiet,
        )
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{target} died during the run:\n{proc.tail()}")
        return result

    def _fail(self, target: str, exc: RuntimeError) -> None:
        self.skipped[target] = f"failed: {exc}"  # scenarios measured before the failure stay in the results
        print(f"[{target}] FAILED: {exc}", flush=True)
        self.failed = self.failed or target in ("direct", "gateway")
        if target == "litellm":
            print(f"LiteLLM skipped: {str(exc).splitlines()[0]}")


def bench(args: argparse.Namespace) -> int:
    wrk, wrk_note = ensure_wrk()
    if wrk:
        print(f"load generator: wrk ({wrk})")
    else:
        print(f"load generator: wrk unavailable ({wrk_note}); using the Python aiohttp fallback (tests/bench/load.py)")
    if not pinning_available():
        print("warning: no CPU pinning (needs taskset and 2 cores); figures are not per core")
    args.open_files = raise_open_files_limit()
    print(f"servers, mock and load generator run with {args.priority}; open files: {args.open_files}")
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    mock, upstream = start_mock()
    quiet = Quiet(per_run=args.quiet_wait, total=args.quiet_wait * 6) if args.quiet_wait > 0 else None
    run = Bench(args, scenarios, wrk, mock, upstream, quiet)
    together = [t for t in args.targets if t not in ALONE]
    run.measure_group(together, rounds=args.rounds)
    for target in args.targets:
        if target in ALONE:
            run.measure_group([target], rounds=1)
    mock.stop()
    results, skipped, extras, failed = run.results, run.skipped, run.extras, run.failed

    print_table(results, skipped)
    print_servers(results, extras)
    ratios, goals = evaluate(Run(results, skipped, extras.rss_mib, extras.slow, extras.slow_skipped))
    noisy = noisy_runs(results)
    print_evaluation(ratios, goals, noisy)
    output = STATE / "results.json"
    output.write_text(
        json.dumps(
            {
                "meta": meta(args, wrk, wrk_note),
                "results": [
                    {"target": t, "scenario": s} | r.as_dict() for t, by_s in results.items() for s, r in by_s.items()
                ],
                "skipped": skipped,
                "worker_rss_mib": extras.rss_mib,
                "slow_streams": {t: r.as_dict() for t, r in extras.slow.items()} | extras.slow_skipped,
                "lifespan": {t: r if isinstance(r, str) else r.as_dict() for t, r in extras.lifespan.items()},
                "ratios": {k: round(v, 4) for k, v in ratios.items()},
                "targets": goals,
                "disturbed_runs": noisy,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {shown(output)}")
    if failed:
        return 1
    if args.strict and any(g["verdict"] == "MISS" for g in goals):
        return 2
    return 0


def print_servers(results: dict[str, dict[str, LoadResult]], extras: Extras) -> None:
    """Worker memory, the slow streams, and granian against gunicorn + uvicorn when both ran."""
    if extras.rss_mib:
        print("\nworker RSS after its scenarios: " + ", ".join(f"{t} {m:.1f} MiB" for t, m in extras.rss_mib.items()))
    for target, slow in extras.slow.items():
        print(f"slow streams, {target}: {slow.line()}")
        for check_name, passed in slow.checks.items():
            print(f"  {'ok  ' if passed else 'FAIL'} {check_name}")
    for target, reason in extras.slow_skipped.items():
        print(f"slow streams, {target}: {reason}")
    for target, lifespan in extras.lifespan.items():
        print(f"lifespan, {target}: {lifespan if isinstance(lifespan, str) else lifespan.line()}")
    uvicorn, granian = results.get("gateway", {}), results.get("gateway-granian", {})
    if uvicorn and granian:
        print(f"\ngranian {servers.granian_version()} against gunicorn + uvicorn (the gateway, same run):")
        for scenario, ours in granian.items():
            if (theirs := uvicorn.get(scenario)) and theirs.rps:
                cpu = ""
                if ours.server_ms_per_request and theirs.server_ms_per_request:
                    cpu = f", CPU/request {ours.server_ms_per_request:.3f} vs {theirs.server_ms_per_request:.3f} ms"
                print(
                    f"  {scenario:<16} {ours.rps / theirs.rps:5.2f}x req/s, p50 {ours.p50_ms:.2f} vs "
                    f"{theirs.p50_ms:.2f} ms{cpu}"
                )


def shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def profile(args: argparse.Namespace) -> int:
    py_spy = pyspy.ensure_installed()
    wrk, wrk_note = ensure_wrk()
    if not wrk:
        print(f"wrk unavailable ({wrk_note}); using the Python aiohttp fallback")
    mock, upstream = start_mock()
    target = args.profile_target
    print(f"[{target}] starting ...", flush=True)
    proc, endpoint = start_target(target, upstream, args)
    try:
        scenario = next(s for s in SCENARIOS if s.name == args.profile_scenario)
        check(endpoint, stream=scenario.stream)
        unprofiled = measure(
            endpoint, scenario, wrk=wrk, duration=args.duration, warmup=args.warmup, server=proc, mock=mock
        )
        print(
            f"[{target}] {scenario.name}, without py-spy: {unprofiled.rps:.1f} req/s, "
            f"p50 {unprofiled.p50_ms:.2f} ms, {unprofiled.server_ms_per_request or 0:.3f} ms CPU/request"
        )
        worker = proc.worker_pid()  # gunicorn's or granian's one worker; LiteLLM serves in its own process
        slug = f"{target}-{scenario.name.replace(' ', '-').replace('=', '')}"
        raw = STATE / f"profile-{slug}.txt"
        seconds = args.profile_seconds
        # py-spy shares core 1 with wrk and the mock; it pauses the worker briefly at each sample.
        spy_argv = [
            py_spy,
            "record",
            "--pid",
            str(worker),
            "--duration",
            str(round(seconds)),
            "--rate",
            "200",
            "--gil",
        ]
        spy_argv += ["--format", "raw", "--output", str(raw)]
        spy = Proc("py-spy", pinned(CLIENT_CORE, spy_argv))
        time.sleep(1.0)  # py-spy attaches
        load = Load(endpoint.url, body_file(scenario.stream), endpoint.key, scenario.concurrency, seconds - 1.0)
        profiled = run_load(load, wrk=wrk)
        deadline = time.monotonic() + seconds + 30
        while spy.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        spy.stop()
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote no profile:\n{spy.tail()}")
        print(
            f"[{target}] under py-spy:   {profiled.rps:.1f} req/s, p50 {profiled.p50_ms:.2f} ms, "
            f"errors {fmt_errors(profiled)}"
        )
        summary = pyspy.summarize(raw, top=args.top)
        print(summary.text)
        (STATE / f"profile-{slug}-summary.txt").write_text(summary.text)
        measured = {"without_pyspy": unprofiled.as_dict(), "under_pyspy": profiled.as_dict()}
        top = {"target": target, "scenario": scenario.name} | measured | summary.as_dict()
        (STATE / f"profile-{slug}.json").write_text(json.dumps(top, indent=2))
        print(f"written: {shown(raw)} (collapsed stacks: speedscope.app or flamegraph.pl read it)")
        print(f"written: {shown(STATE / f'profile-{slug}.json')} (the top entries, for notes)")
    finally:
        proc.stop()
        mock.stop()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per scenario (8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per scenario (2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="interleaved rounds per scenario, each target in turn for duration/rounds seconds (4; 1: one run each)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated, in order, from {', '.join(ALL_TARGETS)} (default: {','.join(TARGETS)})",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated scenario names (default: all four)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=8.0,
        help="seconds to wait, at most, before each run for other processes to calm down (8; 6x that in all)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="niceness of the servers, the mock and wrk (-10: they win the CPU from other work; 0: off)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target from the issue is missed")
    parser.add_argument("--profile", action="store_true", help="profile the gateway under py-spy instead")
    parser.add_argument(
        "--slow-streams",
        type=int,
        default=1000,
        help="slow streams the gateway holds at once after its scenarios (1000; 0: off)",
    )
    parser.add_argument("--slow-every", type=float, default=0.5, help="seconds between a slow stream's chunks (0.5)")
    parser.add_argument("--slow-seconds", type=float, default=15.0, help="how long each slow stream lasts (15)")
    parser.add_argument("--slow-ramp", type=float, default=2.0, help="seconds over which they are opened (2)")
    parser.add_argument(
        "--slow-targets",
        default="gateway",
        help="comma-separated targets that hold the slow streams (gateway; also gateway-governed, gateway-granian)",
    )
    parser.add_argument(
        "--no-lifespan-check",
        dest="lifespan_check",
        action="store_false",
        help="skip the check that the server flushes the request log on shutdown (gateway, gateway-granian)",
    )
    parser.add_argument(
        "--profile-target",
        choices=("gateway", "gateway-governed", "gateway-granian", "forwarder", "litellm"),
        default="gateway",
    )
    parser.add_argument(
        "--profile-scenario", choices=[s.name for s in SCENARIOS], default="non-stream c=32", help="(non-stream c=32)"
    )
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25, help="functions to list in the profile summary")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := [t for t in args.targets if t not in ALL_TARGETS]:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    args.slow_targets = [t.strip() for t in args.slow_targets.split(",") if t.strip()]
    if unknown := [t for t in args.slow_targets if not t.startswith("gateway") or t not in ALL_TARGETS]:
        parser.error(f"slow streams need a gateway target, not {', '.join(unknown)}")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := [s for s in args.scenarios if s not in {sc.name for sc in SCENARIOS}]:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    return args


def _terminate(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that stop our processes


def main() -> None:
    args = parse_args()
    STATE.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    atexit.register(Proc.stop_all)
    if shutil.which("taskset") is None:
        print("warning: taskset not found; processes are not pinned to cores")
    args.priority = set_niceness(args.nice)
    started = time.monotonic()
    try:
        code = profile(args) if args.profile else bench(args)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what we started")
        code = 130
    except SystemExit as exc:  # SIGTERM or SIGHUP (see _terminate)
        print(f"\nstopped by a signal; stopping what we started (exit {exc.code})", flush=True)
        code = int(exc.code or 1)
    finally:
        Proc.stop_all()
    print(f"bench took {time.monotonic() - started:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
