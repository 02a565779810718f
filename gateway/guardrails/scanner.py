"""The entry points: scan one text, or a list of chat messages."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from . import credentials, injection, pii, prefilter
from .denylist import DenyList, detect_denylist
from .findings import CATEGORIES, DENYLIST, PII, PROMPT_INJECTION, SECRETS, Finding, resolve_overlaps
from .normalize import Normalized, normalize

__all__ = ["KINDS", "TextPart", "iter_text_parts", "scan", "scan_messages", "wanted_categories"]

PII_DETECTORS: dict[str, Callable[[str | Normalized], list[Finding]]] = {
    "email": pii.detect_email,
    "phone": pii.detect_phone,
    "iban": pii.detect_iban,
    "credit_card": pii.detect_credit_card,
    "bsn": pii.detect_bsn,
    "ipv4": pii.detect_ipv4,
    "ipv6": pii.detect_ipv6,
}
# kind -> category, for every kind a caller can ask for by name
KINDS: dict[str, str] = {
    **dict.fromkeys(PII_DETECTORS, PII),
    **dict.fromkeys(credentials.DETECTORS, SECRETS),
}


# What each personal-data detector needs in the text before it can match (see prefilter.py):
# one character of every set listed.
_PII_NEEDS: dict[str, tuple[frozenset[int], ...]] = {
    "email": (prefilter.AT_OR_BRACKET,),
    "phone": (prefilter.ZERO_OR_PLUS,),
    "iban": (prefilter.DIGIT,),
    "credit_card": (prefilter.DIGIT,),
    "bsn": (prefilter.DIGIT,),
    "ipv4": (prefilter.DIGIT, prefilter.DOT),
    "ipv6": (prefilter.DIGIT, prefilter.COLON),
}
_WANTED: dict[object, frozenset[str]] = {}  # hashable `categories` argument -> validated set


def wanted_categories(categories: Iterable[str]) -> frozenset[str]:
    """The category and kind names asked for; ValueError on an unknown one.

    Memoised for the hashable forms callers pass on every request (a policy's tuple of checks,
    a scanner's frozenset), so validating them costs a dictionary lookup."""
    try:
        return _WANTED[categories]
    except (KeyError, TypeError):  # not seen yet, or a list or set
        pass
    wanted = frozenset([categories] if isinstance(categories, str) else categories)
    unknown = wanted - set(CATEGORIES) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown guardrail categories or kinds: {sorted(unknown)}")
    if isinstance(categories, str | tuple | frozenset) and len(_WANTED) < 1_024:
        _WANTED[categories] = wanted
    return wanted


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which detectors one set of wanted categories runs, in the order their findings are listed."""

    pii: prefilter.Gate[Callable[[Normalized], list[Finding]]]
    secrets: bool
    secret_kinds: frozenset[str] | None  # None: every kind
    injection: bool
    denylist: bool


@lru_cache(maxsize=256)
def _plan(wanted: frozenset[str]) -> _Plan:
    all_pii = PII in wanted
    secret_kinds = None if SECRETS in wanted else frozenset(wanted & credentials.DETECTORS.keys())
    return _Plan(
        pii=prefilter.Gate(
            [(detect, _PII_NEEDS[kind]) for kind, detect in PII_DETECTORS.items() if all_pii or kind in wanted]
        ),
        secrets=secret_kinds is None or bool(secret_kinds),
        secret_kinds=secret_kinds,
        injection=PROMPT_INJECTION in wanted,
        denylist=DENYLIST in wanted,
    )


def scan(
    text: str,
    categories: Iterable[str] = CATEGORIES,
    *,
    denylist: DenyList | None = None,
    role: str | None = None,
    injection_threshold: float = injection.DEFAULT_THRESHOLD,
) -> list[Finding]:
    """Findings in `text`, sorted by offset, offsets in `text`.

    `categories` holds category names ("pii", "secrets", "prompt_injection", "denylist") and/or
    single kinds ("email", "openai_key", ...). Within a category, overlapping findings are
    settled (the longer wins); across categories both are kept. `role` is the chat role the text
    came from ("tool" weighs injection phrases more).
    """
    wanted = wanted_categories(categories)
    return resolve_overlaps(
        _detect(normalize(text), wanted, denylist=denylist, role=role, threshold=injection_threshold)
    )


def _detect(
    doc: Normalized,
    wanted: frozenset[str],
    *,
    denylist: DenyList | None,
    role: str | None,
    threshold: float,
) -> list[Finding]:
    """The wanted detectors on one text, each skipped when the pre-filter shows it cannot match."""
    plan = _plan(wanted)
    findings: list[Finding] = []
    if plan.pii:
        for detect in plan.pii.armed(prefilter.present(doc)):
            findings.extend(detect(doc))
    if plan.secrets:
        findings.extend(credentials.detect_secrets(doc, kinds=plan.secret_kinds))
    if plan.injection:
        findings.extend(injection.detect(doc, role=role, threshold=threshold))
    if plan.denylist and denylist:
        findings.extend(detect_denylist(doc, denylist))
    return findings


# --- chat messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    """One string inside a message: its path from the messages list, and the role it speaks in."""

    location: tuple[object, ...]  # (message index, key or index, ...)
    role: str | None
    text: str


# Keys whose string values are structure, identifiers or binary payloads, not text.
_SKIP_KEYS = frozenset(
    {"role", "type", "id", "tool_call_id", "tool_use_id", "name", "media_type", "cache_control",
     "image_url", "source", "signature", "model", "index", "detail", "format"}
)  # fmt: skip


def iter_text_parts(messages: Sequence[Mapping[str, object]]) -> Iterator[TextPart]:
    """Every text string in OpenAI- or Anthropic-style messages: contents, content blocks,
    tool-call arguments (the raw JSON string), tool_use inputs, tool results. A part inside an
    Anthropic tool_result block speaks with role "tool"."""
    for index, message in enumerate(messages):
        role = message.get("role")
        role = role if isinstance(role, str) else None
        if type(message) is not dict:
            yield from _walk(message, (index,), role)
            continue
        # _walk(message, ...) unrolled one level: most messages are a role and a string
        if message.get("type") == "tool_result":
            role = "tool"
        for key, item in message.items():
            if key in _SKIP_KEYS:
                continue
            if isinstance(item, str):
                if item:
                    yield TextPart((index, key), role, item)
            elif item is not None:
                yield from _walk(item, (index, key), role)


def _walk(value: object, path: tuple[object, ...], role: str | None) -> Iterator[TextPart]:
    if isinstance(value, str):
        if value:
            yield TextPart(path, role, value)
    elif isinstance(value, Mapping):
        if value.get("type") == "tool_result":
            role = "tool"
        for key, item in value.items():
            if key not in _SKIP_KEYS:
                yield from _walk(item, (*path, key), role)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i), role)


# Kinds looked for across part boundaries (a secret or a checksummed number split over two
# messages): specific enough that joining two unrelated strings will not make one by accident.
_CROSS_PART_KINDS = frozenset(credentials.DETECTORS) | {"email", "iban", "credit_card"}


def scan_messages(
    messages: Sequence[Mapping[str, object]],
    categories: Iterable[str] = CATEGORIES,
    *,
    denylist: DenyList | None = None,
    injection_threshold: float = injection.DEFAULT_THRESHOLD,
) -> list[Finding]:
    """Findings in a chat request's messages; each finding's `location` is the path of the
    string it is in (see `iter_text_parts`) and its offsets are in that string.

    Each part is scanned on its own (with its role for prompt injection); then all parts are
    scanned joined end to end, for secrets, e-mail addresses, IBANs and card numbers split over
    parts. Such a split match is reported once per part it touches, clipped to the part, with
    detail "split".
    """
    wanted = wanted_categories(categories)
    parts = list(iter_text_parts(messages))
    findings: list[Finding] = []
    for part in parts:
        found = _detect(normalize(part.text), wanted, denylist=denylist, role=part.role, threshold=injection_threshold)
        if found:
            findings.extend(replace(f, location=part.location) for f in found)
    cross = _cross_part_kinds(wanted)
    if len(parts) > 1 and cross:
        findings.extend(_split_findings(parts, cross, findings))
    return resolve_overlaps(findings) if findings else findings


@lru_cache(maxsize=256)
def _cross_part_kinds(wanted: frozenset[str]) -> frozenset[str]:
    return frozenset(kind for kind in _CROSS_PART_KINDS if kind in wanted or KINDS[kind] in wanted)


def _split_findings(parts: list[TextPart], kinds: frozenset[str], found: list[Finding]) -> list[Finding]:
    """Matches that only exist across part boundaries. A match that merely runs on past the end
    of a part already holding a whole one of its category ("a@example.nl" + "again" read as
    "a@example.nlagain") is not one: it is dropped, every piece of it."""
    starts = []
    pos = 0
    for part in parts:
        starts.append(pos)
        pos += len(part.text)
    joined = "".join(part.text for part in parts)
    out = []
    for f in _detect(normalize(joined), kinds, denylist=None, role=None, threshold=1.0):
        first = bisect_right(starts, f.start) - 1
        last = bisect_right(starts, f.end - 1) - 1
        if first == last:
            continue  # inside one part: the per-part scan has it
        pieces = []
        for i in range(first, last + 1):
            start = max(f.start, starts[i]) - starts[i]
            end = min(f.end, starts[i] + len(parts[i].text)) - starts[i]
            if end > start:
                pieces.append(replace(f, start=start, end=end, detail="split", location=parts[i].location))
        if not any(_overlaps_one_of(piece, found) for piece in pieces):
            out.extend(pieces)
    return out


def _overlaps_one_of(piece: Finding, found: list[Finding]) -> bool:
    return any(
        f.location == piece.location and f.category == piece.category and f.start < piece.end and piece.start < f.end
        for f in found
    )
