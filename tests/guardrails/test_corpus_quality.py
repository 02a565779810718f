"""Recall and false positives of every detector over the corpus in tests/guardrails/corpus.

Positives come from generated.jsonl (valid numbers and fake secrets, plain and with evasions:
zero-width characters, look-alike letters, fullwidth forms, spaced digits, base64, JSON escapes,
splits across stream chunks and across messages, tool-call arguments) and from the hand-written
files. Negatives are every entry that expects nothing: the benign corpus (prose in English and
Dutch, code, logs, base64 blobs, UUIDs, git SHAs, order numbers, dates, versions, prices) and the
hard negatives (a wrong check digit, a security question that quotes an attack).

Run with -s to see the table.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gateway.guardrails import KINDS, Finding, StreamScanner, compile_denylist, scan, scan_messages
from gateway.guardrails.findings import PROMPT_INJECTION
from tests.guardrails import make_corpus

CORPUS = Path(__file__).parent / "corpus"
DENYLIST = compile_denylist(
    ["Project Falcon", "codename bluebird", "vertrouwelijk", r"re:\bPRJ-\d{4}\b", r"re:\binternal[-_ ]only\b"]
)
DETECTORS = [*KINDS, "prompt_injection", "denylist"]
MIN_RECALL = 0.95
MAX_FALSE_POSITIVE_RATE = 0.02


def load() -> list[dict]:
    entries = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                entry = json.loads(line)
                entry["source"] = f"{path.name}:{number}"
                entries.append(entry)
    return entries


def detector(f: Finding) -> str:
    return "prompt_injection" if f.category == PROMPT_INJECTION else f.kind


def run(entry: dict) -> list[Finding]:
    mode = entry.get("mode", "text")
    if mode == "text":
        return scan(entry["text"], denylist=DENYLIST, role=entry.get("role"))
    if mode == "messages":
        return scan_messages(entry["messages"], denylist=DENYLIST)
    assert mode == "stream", entry["id"]
    text, size = entry["text"], entry["chunk"]
    scanner = StreamScanner(denylist=DENYLIST)
    found = []
    for i in range(0, len(text), size):
        held_from = scanner.safe_end
        # a finding only counts if its text was still held back when it was reported
        found.extend(f for f in scanner.feed(text[i : i + size]) if f.start >= held_from)
    held_from = scanner.safe_end
    found.extend(f for f in scanner.close() if f.start >= held_from)
    return found


def found_expected(entry: dict, expected: dict, findings: list[Finding]) -> bool:
    candidates = [f for f in findings if detector(f) == expected["kind"]]
    if "text" not in expected or entry.get("mode") == "messages":
        return bool(candidates)
    start = entry["text"].index(expected["text"])
    end = start + len(expected["text"])
    return any(f.start == start and f.end == end for f in candidates)


@pytest.fixture(scope="module")
def results() -> list[tuple[dict, list[Finding]]]:
    return [(entry, run(entry)) for entry in load()]


def test_generated_corpus_is_up_to_date_when_generator_runs() -> None:
    committed = (CORPUS / "generated.jsonl").read_text(encoding="utf-8")
    assert committed == make_corpus.render(make_corpus.build()), "run: .venv/bin/python -m tests.guardrails.make_corpus"


def test_corpus_has_a_few_hundred_entries_when_loaded() -> None:
    entries = load()
    assert len(entries) >= 300
    assert len({e["id"] for e in entries}) == len(entries), "ids are unique"


def test_every_detector_meets_recall_and_false_positive_targets_when_run_on_corpus(results) -> None:  # type: ignore[no-untyped-def]
    positives: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    misses: dict[str, list[str]] = {}
    negatives = [(e, fs) for e, fs in results if not e["expect"]]
    false_positives: Counter[str] = Counter()
    fp_examples: dict[str, list[str]] = {}
    extra: Counter[str] = Counter()

    for entry, findings in results:
        expected_kinds = {x["kind"] for x in entry["expect"]}
        for expected in entry["expect"]:
            positives[expected["kind"]] += 1
            if found_expected(entry, expected, findings):
                hits[expected["kind"]] += 1
            else:
                misses.setdefault(expected["kind"], []).append(f"{entry['id']} ({entry['note']})")
        fired = {detector(f) for f in findings}
        if not entry["expect"]:
            for name in fired:
                false_positives[name] += 1
                fp_examples.setdefault(name, []).append(f"{entry['id']} ({entry['note']})")
        else:
            for name in fired - expected_kinds:
                extra[name] += 1

    print(f"\nGuardrail corpus: {len(results)} entries, {len(negatives)} negatives")
    print(f"{'detector':24} {'positives':>9} {'recall':>8} {'false pos':>9} {'FP rate':>8} {'extra':>6}")
    failures = []
    for name in DETECTORS:
        recall = hits[name] / positives[name] if positives[name] else float("nan")
        fp_rate = false_positives[name] / len(negatives)
        print(
            f"{name:24} {positives[name]:>9} {recall:>8.1%} {false_positives[name]:>9} {fp_rate:>8.2%} {extra[name]:>6}"
        )
        if not positives[name]:
            failures.append(f"{name}: no positives in the corpus")
        elif recall < MIN_RECALL:
            failures.append(f"{name}: recall {recall:.1%}, missed {misses.get(name)}")
        if fp_rate > MAX_FALSE_POSITIVE_RATE:
            failures.append(f"{name}: false positives {fp_rate:.2%} on {fp_examples[name]}")
    print("('extra': findings of that detector in positive entries that did not expect it)")
    for name, examples in sorted(misses.items()):
        print(f"missed {name}: {examples}")
    for name, examples in sorted(fp_examples.items()):
        print(f"false positive {name}: {examples}")
    assert not failures, "\n".join(failures)
