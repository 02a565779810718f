"""Replace findings with stable placeholders, and put the originals back."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence

from .findings import Finding, resolve_overlaps
from .normalize import normalize

__all__ = ["placeholder_name", "redact", "redact_messages", "restore"]

_PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
_NUMERIC_KINDS = frozenset({"phone", "iban", "credit_card", "bsn"})
_CASELESS_KINDS = frozenset({"email", "iban", "denylist"})


def placeholder_name(kind: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", kind.upper())


def _canonical(kind: str, value: str) -> str:
    """What makes two matches "the same value": the normalised text, without separators for
    numbers, case-folded where case does not matter."""
    text = normalize(value).text
    if kind in _NUMERIC_KINDS:
        text = "".join(c for c in text if c.isalnum() or c == "+")
    if kind in _CASELESS_KINDS:
        text = text.casefold()
    return text


def redact(
    text: str, findings: Iterable[Finding], *, mapping: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """Replace each finding in `text` with a placeholder like <EMAIL_1>, <IBAN_2>, <OPENAI_KEY_1>.

    The same value gets the same placeholder (a zero-width-split copy of an address included).
    Returns the redacted text and a mapping placeholder -> original text, for `restore`. Pass the
    mapping of an earlier call (another message of the same request) to keep numbering and
    placeholders consistent across calls; it is not modified. `findings` are this text's
    (from `scan`, or the ones `scan_messages` reports for one location); overlapping ones are
    settled first, across categories (the longer wins).
    """
    out_mapping = dict(mapping or {})
    by_value: dict[tuple[str, str], str] = {}
    counters: dict[str, int] = {}
    for placeholder, value in out_mapping.items():
        m = _PLACEHOLDER_RE.fullmatch(placeholder)
        if m is None:
            continue
        name, number = m.group(1), int(m.group(2))
        counters[name] = max(counters.get(name, 0), number)
        by_value.setdefault((name, _canonical(name.lower(), value)), placeholder)

    chosen = resolve_overlaps(findings, across_categories=True)
    replacements: list[tuple[int, int, str]] = []
    for f in chosen:  # in text order, so numbering follows the text
        if not (0 <= f.start < f.end <= len(text)):
            raise ValueError(f"finding {f.kind} at {f.start}:{f.end} is outside the text")
        value = text[f.start : f.end]
        name = placeholder_name(f.kind)
        key = (name, _canonical(f.kind, value))
        placeholder = by_value.get(key)
        if placeholder is None:
            counters[name] = counters.get(name, 0) + 1
            placeholder = f"<{name}_{counters[name]}>"
            by_value[key] = placeholder
            out_mapping[placeholder] = value
        replacements.append((f.start, f.end, placeholder))

    pieces = []
    pos = 0
    for start, end, placeholder in replacements:
        pieces.append(text[pos:start])
        pieces.append(placeholder)
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces), out_mapping


def redact_messages(
    messages: Sequence[Mapping[str, object]],
    findings: Iterable[Finding],
    *,
    mapping: Mapping[str, str] | None = None,
) -> tuple[list[Mapping[str, object]], dict[str, str]]:
    """`redact` for the findings of `scan_messages`: a deep copy of `messages` with each string
    that has findings redacted, and one mapping for the whole request (numbered in message
    order). Placeholders hold no quotes or backslashes, so JSON tool-call arguments stay JSON."""
    out = copy.deepcopy(list(messages))
    out_mapping = dict(mapping or {})
    by_location: dict[tuple[object, ...], list[Finding]] = {}
    for f in findings:
        by_location.setdefault(f.location, []).append(f)
    for location in sorted(by_location, key=lambda loc: tuple((isinstance(p, str), p) for p in loc)):
        *path, last = location
        container: object = out
        for step in path:
            container = container[step]  # type: ignore[index]
        text = container[last]  # type: ignore[index]
        redacted, out_mapping = redact(text, by_location[location], mapping=out_mapping)
        container[last] = redacted  # type: ignore[index]
    return out, out_mapping


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Put the original values back where placeholders from `mapping` occur in `text`."""
    if not mapping:
        return text
    return _PLACEHOLDER_RE.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
