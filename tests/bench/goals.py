"""The issue's targets, judged on one run's figures: ratios, then PASS, MISS or n/a for each.

Every target compares figures taken in the same run on the same machine, so a slower or noisier
machine moves both sides. A throughput ratio is shown with the same ratio by CPU per request of
the server next to it: when other processes disturb a run, the CPU ratio holds up best.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.bench.load import LoadResult
from tests.bench.slowstreams import SlowStreamsResult

# Issue 13, "The hot path, second design".
GOAL_VS_FORWARDER = 0.70  # gateway / bare forwarder throughput at c=32, non-streaming and streaming
GOAL_GOVERNED_VS_GATEWAY = 0.85  # gateway-governed / gateway throughput at c=32, both
GOAL_GOVERNANCE_P50_MS = 0.5  # gateway-governed p50 - gateway p50 at c=1, non-streaming
GOAL_VS_LITELLM = 15.0  # gateway-governed / LiteLLM throughput per core at c=32, both
GOAL_RSS_MIB = 150.0  # a gateway worker's RSS at the end of its scenarios
GOAL_SLOW_STREAMS = 1000  # concurrent slow streams one worker holds with flat memory
NOISY_PCT = 10  # % of a core used by processes outside the bench during a measured run

GATEWAYS = ("gateway", "gateway-governed", "gateway-granian")
C32 = ("non-stream c=32", "stream c=32")


@dataclass
class Run:
    """What one `make bench` run measured."""

    results: dict[str, dict[str, LoadResult]]
    skipped: dict[str, str]
    rss_mib: dict[str, float] = field(default_factory=dict)  # target -> its worker's RSS after its scenarios
    slow: dict[str, SlowStreamsResult] = field(default_factory=dict)  # target -> the slow-streams scenario
    slow_skipped: dict[str, str] = field(default_factory=dict)

    def get(self, target: str, scenario: str) -> LoadResult | None:
        return self.results.get(target, {}).get(scenario)


def ratios_of(run: Run) -> dict[str, float]:
    """Every ratio the run allows (printed, and written to results.json)."""
    ratios: dict[str, float] = {}
    get = run.get
    for scenario, result in run.results.get("gateway", {}).items():
        if (direct := get("direct", scenario)) and direct.rps:
            ratios[f"gateway/direct throughput, {scenario}"] = result.rps / direct.rps
    for scenario in ("non-stream c=1", "stream c=1"):
        for name in ("gateway", "gateway-governed", "gateway-granian", "forwarder"):
            if (r := get(name, scenario)) and (direct := get("direct", scenario)):
                ratios[f"{name} added p50 ms over direct, {scenario}"] = r.p50_ms - direct.p50_ms
        if (governed := get("gateway-governed", scenario)) and (plain := get("gateway", scenario)):
            ratios[f"budgets and rate limits added p50 ms, {scenario}"] = governed.p50_ms - plain.p50_ms
    pairs = (
        ("gateway", "forwarder"),
        ("gateway", "forwarder-stock"),
        ("gateway-governed", "gateway"),
        ("gateway", "litellm"),
        ("gateway-governed", "litellm"),
        ("gateway-granian", "gateway"),
    )
    for mine, other_name in pairs:
        for scenario in C32:
            if (a := get(mine, scenario)) and (b := get(other_name, scenario)) and b.rps:
                ratios[f"{mine}/{_label(other_name)} throughput, {scenario}"] = a.rps / b.rps
                # The same comparison by CPU per request: barely moved by other load on the machine.
                if a.server_ms_per_request and b.server_ms_per_request:
                    ratios[f"{mine}/{_label(other_name)} by CPU per request, {scenario}"] = (
                        b.server_ms_per_request / a.server_ms_per_request
                    )
    return ratios


def _label(target: str) -> str:
    return "LiteLLM" if target == "litellm" else target


def evaluate(run: Run) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The ratios and the issue's targets (each PASS, MISS or n/a with the reason)."""
    ratios = ratios_of(run)
    goals: list[dict[str, Any]] = []

    def goal(name: str, value: float | None, passed: bool, shown: str, why_not: str, notes: list[str]) -> None:
        if value is None:
            goals.append({"goal": name, "value": None, "verdict": "n/a", "note": why_not})
            return
        # Errors of a gateway target make its figure worthless; a peer's errors are only noted.
        failed = any(n.startswith("gateway") and "errors" in n for n in notes)
        verdict = "PASS" if passed and not failed else "MISS"
        goals.append(
            {"goal": name, "value": round(value, 4), "shown": shown, "verdict": verdict, "note": "; ".join(notes)}
        )

    def notes(*pairs: tuple[str, str]) -> list[str]:
        found = [
            f"{target} had {r.error_count} errors in {scenario}"
            for target, scenario in pairs
            if (r := run.get(target, scenario)) and r.error_count
        ]
        return found + [
            f"disturbed: {target} {scenario} ran with {other:.0f}% other load"
            for target, scenario in pairs
            if (r := run.get(target, scenario)) and (other := r.cpu.get("other_cpu_pct", 0)) > NOISY_PCT
        ]

    def missing(*targets: str) -> str:
        gone = [t for t in targets if t not in run.results or t in run.skipped]
        return ", ".join(f"{t} {'skipped: ' + run.skipped[t] if t in run.skipped else 'not run'}" for t in gone)

    def throughput(mine: str, other: str, scenario: str, minimum: float, title: str, as_times: bool) -> None:
        key = f"{mine}/{_label(other)}"
        value = ratios.get(f"{key} throughput, {scenario}")
        by_cpu = ratios.get(f"{key} by CPU per request, {scenario}")

        def show(v: float) -> str:
            return f"{v:.1f}x" if as_times else f"{v:.0%}"

        shown = ""
        if value is not None:
            shown = show(value) + (f" (by CPU/request {show(by_cpu)})" if by_cpu is not None else "")
        goal(
            title,
            value,
            value is not None and value >= minimum,
            shown,
            missing(mine, other),
            notes((mine, scenario), (other, scenario)),
        )

    for scenario in C32:
        kind = scenario.split()[0]
        throughput(
            "gateway",
            "forwarder",
            scenario,
            GOAL_VS_FORWARDER,
            f"gateway >= {GOAL_VS_FORWARDER:.0%} of the bare forwarder's req/s, c=32 {kind}",
            as_times=False,
        )
    for scenario in C32:
        kind = scenario.split()[0]
        throughput(
            "gateway-governed",
            "gateway",
            scenario,
            GOAL_GOVERNED_VS_GATEWAY,
            f"gateway-governed >= {GOAL_GOVERNED_VS_GATEWAY:.0%} of the gateway's req/s, c=32 {kind}",
            as_times=False,
        )
    governance = ratios.get("budgets and rate limits added p50 ms, non-stream c=1")
    goal(
        f"budgets + limits add <= {GOAL_GOVERNANCE_P50_MS} ms p50 (governed - gateway, c=1 non-stream)",
        governance,
        governance is not None and governance <= GOAL_GOVERNANCE_P50_MS,
        f"{governance:+.2f} ms" if governance is not None else "",
        missing("gateway", "gateway-governed"),
        notes(("gateway", "non-stream c=1"), ("gateway-governed", "non-stream c=1")),
    )
    for scenario in C32:
        kind = scenario.split()[0]
        throughput(
            "gateway-governed",
            "litellm",
            scenario,
            GOAL_VS_LITELLM,
            f"gateway-governed >= {GOAL_VS_LITELLM:.0f}x LiteLLM's req/s per core, c=32 {kind}",
            as_times=True,
        )
    _rss_goal(run, goal)
    _slow_goal(run, goals)
    return ratios, goals


def _rss_goal(run: Run, goal: Any) -> None:
    measured = {t: mib for t, mib in run.rss_mib.items() if t in GATEWAYS}
    worst = max(measured.values(), default=None)
    goal(
        f"RSS per gateway worker <= {GOAL_RSS_MIB:.0f} MiB after its scenarios",
        worst,
        worst is not None and worst <= GOAL_RSS_MIB,
        ", ".join(f"{t} {mib:.0f} MiB" for t, mib in measured.items()),
        "no gateway target ran",
        [],
    )


def _slow_goal(run: Run, goals: list[dict[str, Any]]) -> None:
    name = f"{GOAL_SLOW_STREAMS:,} concurrent slow streams held by one worker, memory flat"
    slow = run.slow.get("gateway") or next(iter(run.slow.values()), None)
    if slow is None:
        reason = run.slow_skipped.get("gateway") or "; ".join(run.slow_skipped.values()) or "not run"
        goals.append({"goal": name, "value": None, "verdict": "n/a", "note": reason})
        return
    target = next(t for t, r in run.slow.items() if r is slow)
    failed = [check for check, passed in slow.checks.items() if not passed]
    if slow.streams < GOAL_SLOW_STREAMS:
        verdict, note = "n/a", f"ran {slow.streams} streams, the target needs {GOAL_SLOW_STREAMS:,}"
    else:
        verdict, note = ("PASS", "") if slow.flat else ("MISS", "failed: " + "; ".join(failed))
    if verdict == "n/a" and failed:
        note += "; failed: " + "; ".join(failed)
    goals.append(
        {
            "goal": name,
            "value": round(slow.per_stream_kib, 1),
            "shown": f"{target}: {slow.line()}",
            "verdict": verdict,
            "note": note,
        }
    )


def noisy_runs(results: Mapping[str, Mapping[str, LoadResult]]) -> list[str]:
    return [
        f"{target} {scenario}"
        for target, by_scenario in results.items()
        for scenario, r in by_scenario.items()
        if r.cpu.get("other_cpu_pct", 0) > NOISY_PCT
    ]


def print_evaluation(ratios: dict[str, float], goals: list[dict[str, Any]], noisy: list[str]) -> None:
    print("\nratios (\"by CPU per request\": the other's server CPU per request over the first's)")
    for name, value in ratios.items():
        if "added p50" in name:
            print(f"  {name:<60} {value:+.2f} ms")
        else:
            print(f"  {name:<60} {value:.2f}x ({value:.0%})")
    print("\ntargets (issue 13; each ratio within this run)")
    for g in goals:
        shown = g.get("shown") or "-"
        note = f"  [{g['note']}]" if g.get("note") else ""
        print(f"  {g['verdict']:<5} {g['goal']:<78} {shown}{note}")
    if noisy:
        print(
            f"\nwarning: other processes used over {NOISY_PCT}% of a core during {len(noisy)} run(s) "
            f"({', '.join(noisy[:4])}{', ...' if len(noisy) > 4 else ''}); those figures are disturbed. "
            "The CPU-per-request ratios hold up best; rerun on a quiet machine for the rest."
        )
