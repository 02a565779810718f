"""How long all built-in detectors take on an 8 KB prompt. Printed (run with -s), not asserted:
a timing assertion would flake on a busy CI machine. The target is under 1 ms at p50."""

from __future__ import annotations

import statistics
import time

from gateway.guardrails import StreamScanner, scan

PROSE_EN = """We are migrating the billing service to the new event pipeline. The old cron job ran every
night at 02:00 and recomputed the invoices for all customers, which took about 45 minutes on a busy day.
The new design listens to usage events and updates a running total per project, so the monthly invoice is
a sum instead of a recomputation. Please review the plan below and tell me what could go wrong, in
particular around retries, duplicate events and the switch-over weekend. Version 2.4.1 of the client
library is already deployed; the server runs 3.11.7. Questions go to the team lead.
"""
PROSE_NL = """Hoi team, de migratie staat gepland voor zaterdag 14 juni. We verwachten ongeveer 3 uur
downtime voor de facturatie, de rest van het platform blijft gewoon beschikbaar. Graag voor donderdag
een reactie als je bezwaar hebt tegen het tijdstip. De kosten zijn begroot op € 12.500,00 excl. btw.
"""
CODE = '''def settle(usage_events, ledger, *, now=None):
    """Fold usage events into ledger entries, once per idempotency key."""
    now = now or datetime.now(tz=UTC)
    seen = set()
    for event in sorted(usage_events, key=lambda e: (e.project_id, e.created_at)):
        if event.idempotency_key in seen:
            continue
        seen.add(event.idempotency_key)
        amount = Decimal(event.tokens_in) * PRICE_IN / 1_000_000 + Decimal(event.tokens_out) * PRICE_OUT / 1_000_000
        ledger.append(Entry(project=event.project_id, amount=-amount.quantize(Decimal("0.000001")), at=now))
    return ledger

# request id 7f9c2ba4-e88f-11ee-a2b1-0242ac120002, commit 3f786850e387550fdab836ed7e6dc881de23001b
SELECT project_id, sum(amount) FROM ledger_entry WHERE created_at >= '2024-06-01' GROUP BY project_id;
'''


def prompt(size: int = 8_192, *, ascii_only: bool = False) -> str:
    dutch = PROSE_NL.replace("€", "EUR") if ascii_only else PROSE_NL
    text = ""
    while len(text) < size:
        text += PROSE_EN + "\n" + CODE + "\n" + dutch + "\n"
    return text[:size]


def percentiles(fn, runs: int = 300) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """p50 and p90 wall-clock time, and p50 CPU time (less disturbed by a busy machine), in us."""
    for _ in range(20):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    wall.sort()
    return statistics.median(wall) * 1e6, wall[int(len(wall) * 0.9)] * 1e6, statistics.median(cpu) * 1e6


def test_scan_time_is_printed_when_prompt_is_8_kb() -> None:
    print()
    for label, text in (("8 KB, ASCII", prompt(ascii_only=True)), ("8 KB, with non-ASCII", prompt())):
        assert len(text) == 8_192
        assert scan(text) == []  # the benchmark prompt is benign
        p50, p90, cpu = percentiles(lambda text=text: scan(text))
        print(f"scan(all built-in detectors), {label}: p50 {p50:.0f} us, p90 {p90:.0f} us (CPU p50 {cpu:.0f} us)")


def test_stream_chunk_time_is_printed_when_tokens_arrive_one_by_one() -> None:
    text = prompt(4_096, ascii_only=True)
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]

    def run() -> None:
        scanner = StreamScanner(["pii", "secrets"])
        for chunk in chunks:
            scanner.feed(chunk)
        scanner.close()

    p50, _, _ = percentiles(run, runs=10)
    print(f"\nStreamScanner(pii, secrets), 4-character chunks: {p50 / len(chunks):.0f} us per chunk")


def test_input_check_time_is_printed_when_the_request_is_the_benchmarks() -> None:
    from gateway.guardrail_policy import DEFAULT_FLOOR, Rules
    from gateway.proxy.guard import check_input

    rules = Rules.of(DEFAULT_FLOOR, name="default")
    messages = [
        {"role": "system", "content": "You are a benchmark."},
        {"role": "user", "content": "Hello from the benchmark, please echo this back"},
    ]
    assert check_input(rules, messages).verdicts == []
    p50, _, cpu = percentiles(lambda: check_input(rules, messages), runs=2_000)
    print(f"\ncheck_input(default policy), the benchmark's two messages: p50 {p50:.1f} us (CPU p50 {cpu:.1f} us)")


def test_scan_time_is_printed_when_prose_is_western_european() -> None:
    sentence = "C\u2019est l\u2019\u00e9t\u00e9 \u00e0 K\u00f6ln \u2014 \u00abd\u00e9j\u00e0 vu\u00bb, "
    text = ((sentence + "cr\u00e8me br\u00fbl\u00e9e\u2026 ") * 150)[:8_192]
    assert scan(text) == []
    p50, _, cpu = percentiles(lambda: scan(text), runs=100)
    print(f"\nscan(all built-in detectors), 8 KB French: p50 {p50:.0f} us (CPU p50 {cpu:.0f} us)")
