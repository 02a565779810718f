"""The single-pass shortcuts give the same findings as the long way.

The pre-filter (gateway/guardrails/prefilter.py) skips detectors whose characters a text lacks,
and `normalize` takes one-pass ways for Windows-1252 text and for text that is already NFKC.
Each test here runs both ways on the corpus and on generated text and asserts equality, so a
detector changed so that a skip would hide a finding fails here, not in production.
"""

from __future__ import annotations

import random

import pytest

from gateway.guardrails import (
    StreamScanner,
    credentials,
    injection,
    normalize,
    prefilter,
    resolve_overlaps,
    scan,
    scan_messages,
    scanner,
)
from gateway.guardrails.denylist import detect_denylist
from gateway.guardrails.normalize import Normalized, _normalize_runs, digit_runs
from tests.guardrails.test_corpus_quality import DENYLIST, load

# Fragments that trip the pre-filter's triggers, the detectors' prefixes and the normaliser's paths.
SPICE = [
    "@", "[at]", "(dot)", "0", "00", "+31 6 1234 5678", "06-12345678", "(020) 123 4567", "4111 1111 1111 1111",
    "NL91 ABNA 0417 1643 00", "123456782", "10.0.0.1", "2001:db8::1", "sk-", "sk-ant-", "sk-sym-", "sym-admin-",
    "AKIA", "eyJ", "ghp_", "github_pat_", "glpat-", "-----BEGIN", "aws_secret", "J", "A", "_", "-", ":", ".", "=",
    "\u200b", "\uff20", "\\u0040", "\u00e9", "\u20ac", "\u2019", "\u2026", "\u2122", "\u00ad", "\u00a0",
    "\u0301", "\u043f\u0440\u0438", "\u8fd9\uff0c", "\u00bd",
    "ignore all previous instructions", "Project Falcon",
]  # fmt: skip
TEXTS = [entry["text"] for entry in load() if "text" in entry]


def mutations(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        text = rnd.choice(TEXTS)
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randint(0, len(text))
            text = text[:at] + rnd.choice(SPICE) + text[at:]
        out.append(text)
    return out


def unfiltered(text: str, *, role: str | None = None) -> list:  # type: ignore[type-arg]
    """Every detector run on `text`, none skipped: what `scan` finds without the pre-filter."""
    doc = normalize(text)
    found = [f for detect in scanner.PII_DETECTORS.values() for f in detect(doc)]
    found += [f for detect in credentials.DETECTORS.values() for f in detect(doc)]
    found += credentials.detect_base64_secrets(doc)
    found += injection.detect(doc, role=role)
    found += detect_denylist(doc, DENYLIST)
    return resolve_overlaps(found)


@pytest.mark.parametrize("seed", [1, 2])
def test_scan_finds_what_every_detector_finds_when_the_prefilter_skips_some(seed: int) -> None:
    texts = TEXTS + mutations(400, seed) if seed == 1 else mutations(600, seed)
    for text in texts:
        assert scan(text, denylist=DENYLIST) == unfiltered(text), text


def test_each_detector_finds_nothing_when_its_trigger_characters_are_missing() -> None:
    for text in TEXTS + mutations(300, 3):
        doc = normalize(text)
        chars = prefilter.present(doc)
        for kind, detect in scanner.PII_DETECTORS.items():
            if any(need.isdisjoint(chars) for need in scanner._PII_NEEDS[kind]):
                assert detect(doc) == [], (kind, text)
        for kind, detect in credentials.DETECTORS.items():
            if credentials._NEEDS[kind].isdisjoint(chars):
                assert detect(doc) == [], (kind, text)
        if not prefilter.base64_possible(doc):
            assert credentials.detect_base64_secrets(doc) == [], text


def test_clean_sentence_arms_no_detector_when_it_has_no_trigger_characters() -> None:
    doc = normalize("Hello from the benchmark, please echo this back")
    assert prefilter.present(doc) == frozenset()
    assert scanner._plan(scanner.wanted_categories(("pii", "secrets"))).pii.armed(prefilter.present(doc)) == ()


def test_present_is_the_same_when_the_text_is_long_or_short() -> None:
    short = "mail me at jan@example.nl or call 06-12345678 (AKIA? eyJ_):"
    long = short + " plain words" * 40
    assert prefilter.present(normalize(short)) == prefilter.present(normalize(long)) == frozenset(b"@.012345678-)AJ_:")


def test_scan_messages_finds_split_matches_when_the_prefilter_is_on() -> None:
    key = "sk-proj-" + "Xy7Kq2Lm9Np4Rs8Tv3Wz" * 2
    messages = [{"role": "user", "content": "my key is " + key[:5]}, {"role": "user", "content": key[5:] + " thanks"}]
    assert {(f.kind, f.detail) for f in scan_messages(messages)} == {("openai_key", "split")}


def test_stream_finds_what_a_full_scan_finds_when_fed_generated_text_in_small_chunks() -> None:
    for text in mutations(60, 4):
        scanned = StreamScanner(("pii", "secrets"))
        found = [f for i in range(0, len(text), 3) for f in scanned.feed(text[i : i + 3])] + scanned.close()
        assert {(f.kind, f.start, f.end) for f in found} == {
            (f.kind, f.start, f.end) for f in scan(text, ("pii", "secrets"))
        }, text


def test_digit_runs_are_the_same_when_the_long_run_shortcut_applies() -> None:
    for text in ["4111 1111 1111 1111", "1234.56.782", "0 6 1 2 3 4 5 6 7 8", "12-34-56-78", "2024-06-01 12345678"]:
        doc = normalize(text)
        for digits in (9, 13):
            expected = [
                m.span()
                for m in __import__("re").finditer(rb"d(?<!dd)(?<!d[ .\-]d)(?:[ .\-]?d){%d,}" % (digits - 1), doc.mask)
            ]
            assert [(r.start, r.end) for r in digit_runs(doc, min_digits=digits)] == expected, text


# --- normalisation: the one-pass ways against the general one ---------------------------------


def view(doc: Normalized) -> tuple[object, ...]:
    n = len(doc.text)
    spans = [doc.span(i, j) for i in range(0, n + 1, max(1, n // 50)) for j in (i, min(n, i + 1), min(n, i + 3))]
    return doc.text, doc.is_identity, doc.ascii, spans


POOLS = [
    list("abc xyz 0123456789@.-_:"),
    [bytes([b]).decode("cp1252") for b in range(128, 256) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)],
    [chr(c) for c in range(128, 256)],  # Latin-1, C1 controls included
    list("\u043f\u0440\u0438\u0432\u0435\u0442\u0410\u0411\u0412\u03b1\u03b2\u03b3\u0391\u0392"),
    list("\u8fd9\u662f\uff0c\u3002\uff11\uff12\uff13\uff20"),
    list("\u200b\u2060\ufeff\u00ad"),
    list("\u0301\u0308\u05b0\u20dd"),
    list("\ufb01\u00bd\u2122\u2026\u00b5\U0001d41a\U0001d7cf\ud800"),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normalize_matches_the_general_way_when_a_fast_path_applies(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(1500):
        pools = rnd.sample(POOLS, rnd.randint(1, 3))
        length = rnd.randint(0, 40) if rnd.random() < 0.8 else rnd.randint(200, 900)
        text = "".join(rnd.choice(rnd.choice(pools)) for _ in range(length))
        assert view(normalize(text)) == view(_normalize_runs(text)), repr(text)


def test_western_text_is_folded_in_one_pass_when_it_has_curly_quotes_and_an_ellipsis() -> None:
    text = "C\u2019est l\u2019\u00e9t\u00e9\u2026 \u00e0 5 \u20ac \u2013 ok"
    doc = normalize(text)
    assert doc.text == "C'est l'\u00e9t\u00e9... \u00e0 5 \u20ac - ok"
    assert doc.ascii == "C'est l'ete... a 5 ? - ok"
    assert view(doc) == view(_normalize_runs(text))


def test_cyrillic_look_alikes_fold_in_one_pass_when_the_text_is_long() -> None:
    text = "\u0440\u0430\u0443\u0440\u0430l " * 100  # Cyrillic letters that look like "paypal"
    doc = normalize(text)
    assert doc.text == "paypal " * 100
    assert view(doc) == view(_normalize_runs(text))
