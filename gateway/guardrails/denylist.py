"""Per-project deny lists: terms and `re:` regular expressions.

Terms match case-insensitively, on normalised text (so "Project Falcon" written with a fullwidth
P and a Cyrillic e matches "project falcon"), at word boundaries where the term begins or ends with a
letter or digit, and with any run of whitespace where the term has a space. All terms compile
into one trie-shaped regex, so a list of thousands costs about as much as a list of ten.

`re:` entries are Python regular expressions, compiled once, case-insensitive. Python's engine
has no time limit, so `compile_denylist` rejects what could run away: patterns that do not
compile, that are longer than `MAX_PATTERN_LENGTH`, that match the empty string, that nest an
unbounded quantifier (or an alternation of overlapping branches) inside another (`(a+)+`,
`(\\w+\\s?)*`, `(a|aa)+`) unless it is possessive or atomic (`(?:\\d++\\.)+`), or that use
backreferences. Patterns then scan at most `max_scan_chars`
characters, in overlapping windows of `WINDOW` characters, which also bounds any polynomial
blow-up; a match longer than `OVERLAP` characters may be cut at a window edge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .findings import DENYLIST, Finding
from .normalize import Normalized, as_normalized, normalize

__all__ = ["DenyList", "DenyListError", "compile_denylist", "detect_denylist"]

MAX_PATTERN_LENGTH = 500
MAX_SCAN_CHARS = 65_536
WINDOW = 1_024
OVERLAP = 128
_PATTERN_FLAGS = re.IGNORECASE


class DenyListError(ValueError):
    """One or more entries cannot be used; `problems` lists (entry, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{entry!r}: {reason}" for entry, reason in problems))


@dataclass(frozen=True, slots=True)
class DenyList:
    terms: tuple[str, ...]  # normalised, lower case
    # (entry as configured, compiled, literals every match contains)
    patterns: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...]
    term_regex: re.Pattern[str] | None
    max_scan_chars: int = MAX_SCAN_CHARS

    def __bool__(self) -> bool:
        return bool(self.terms or self.patterns)


def compile_denylist(entries: Iterable[str], *, max_scan_chars: int = MAX_SCAN_CHARS) -> DenyList:
    """Compile a project's deny list; raises DenyListError naming every unusable entry."""
    terms: dict[str, None] = {}
    patterns: list[tuple[str, re.Pattern[str], tuple[str, ...]]] = []
    problems: list[tuple[str, str]] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if entry.startswith("re:"):
            source = entry[3:]
            try:
                patterns.append((entry, *_compile_pattern(source)))
            except ValueError as exc:
                problems.append((entry, str(exc)))
        else:
            term = " ".join(normalize(entry).text.lower().split())
            if term:
                terms[term] = None
    if problems:
        raise DenyListError(problems)
    return DenyList(tuple(terms), tuple(patterns), _term_regex(list(terms)), max_scan_chars)


def _compile_pattern(source: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    if len(source) > MAX_PATTERN_LENGTH:
        raise ValueError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = re.compile(source, _PATTERN_FLAGS)
        parsed = re._parser.parse(source, _PATTERN_FLAGS)  # type: ignore[attr-defined]
    except re.error as exc:
        raise ValueError(f"does not compile: {exc}") from None
    if compiled.search("") is not None:
        raise ValueError("matches the empty string")
    _check_backtracking(parsed)
    if _count_broad_unbounded(parsed) > 1:
        raise ValueError("more than one unbounded quantifier over a broad class (such as .* or \\S+)")
    return compiled, _required_literals(parsed)


def _required_literals(pattern) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    """Runs of two or more literal characters at the top level: every match contains each (lower case)."""
    runs = []
    current = ""
    for op, av in [*pattern, (None, None)]:
        if op is _c.LITERAL:
            current += chr(av).lower()
            continue
        if len(current) >= 2:
            runs.append(current)
        current = ""
    return tuple(runs)


_c = re._constants  # type: ignore[attr-defined]
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}


def _check_backtracking(pattern, inside_unbounded: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Reject the shapes that backtrack exponentially: an unbounded quantifier (or an alternation
    whose branches do not start with distinct literals) inside an unbounded quantifier."""
    for op, av in pattern:
        if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
            raise ValueError("backreferences are not allowed")
        if op in _REPEATS:
            _, high, sub = av
            unbounded = high is _c.MAXREPEAT or high > 100
            if unbounded and inside_unbounded:
                raise ValueError("nested unbounded quantifiers can backtrack catastrophically")
            _check_backtracking(sub, inside_unbounded or (unbounded and _can_vary(sub)))
        elif op is _c.SUBPATTERN:
            _check_backtracking(av[-1], inside_unbounded)
        elif op is _c.BRANCH:
            if inside_unbounded and not _distinct_literal_starts(av[1]):
                raise ValueError("an alternation inside an unbounded quantifier can backtrack catastrophically")
            for branch in av[1]:
                _check_backtracking(branch, inside_unbounded)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            _check_backtracking(av[1], inside_unbounded)
        elif op is _c.ATOMIC_GROUP:
            _check_backtracking(av, False)  # never backtracked into as a whole
        elif op is _c.POSSESSIVE_REPEAT:
            _check_backtracking(av[2], False)


def _count_broad_unbounded(pattern) -> int:  # type: ignore[no-untyped-def]
    """Unbounded repeats of '.', negated sets or word classes: each multiplies the worst case by
    the window length, so a pattern may have one."""
    count = 0
    for op, av in pattern:
        if op in _REPEATS or op is _c.POSSESSIVE_REPEAT:
            _, high, sub = av
            if (high is _c.MAXREPEAT or high > 100) and op is not _c.POSSESSIVE_REPEAT and _broad(sub):
                count += 1
            count += _count_broad_unbounded(sub)
        elif op is _c.SUBPATTERN:
            count += _count_broad_unbounded(av[-1])
        elif op is _c.ATOMIC_GROUP:
            count += _count_broad_unbounded(av)
        elif op is _c.BRANCH:
            count += max(_count_broad_unbounded(b) for b in av[1])
    return count


_NARROW_CATEGORIES = {_c.CATEGORY_DIGIT, _c.CATEGORY_SPACE, _c.CATEGORY_UNI_DIGIT, _c.CATEGORY_UNI_SPACE}


def _broad(sub) -> bool:  # type: ignore[no-untyped-def]
    if len(sub.data) != 1:
        return False
    op, av = sub.data[0]
    if op is _c.ANY:
        return True
    if op is _c.IN:
        return any(o is _c.NEGATE or (o is _c.CATEGORY and a not in _NARROW_CATEGORIES) for o, a in av)
    return False


def _can_vary(pattern) -> bool:  # type: ignore[no-untyped-def]
    """Whether a sub-pattern can match strings of different lengths (a+, a|bc, a?)."""
    low, high = pattern.getwidth()
    return low != high


def _distinct_literal_starts(branches) -> bool:  # type: ignore[no-untyped-def]
    firsts = []
    for branch in branches:
        if not branch.data or branch.data[0][0] is not _c.LITERAL:
            return False
        firsts.append(branch.data[0][1])
    return len(set(firsts)) == len(firsts)


def _term_regex(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    trie: dict[str, dict] = {}
    for term in terms:
        node = trie
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}
    return re.compile(_trie_pattern(trie))


def _trie_pattern(node: dict[str, dict]) -> str:
    ends_here = "" in node
    branches = []
    for char in sorted(k for k in node if k):
        piece = r"\s+" if char == " " else re.escape(char)
        branches.append(piece + _trie_pattern(node[char]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends_here:
        return f"(?:{body})?"
    return body


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


def detect_denylist(text: str | Normalized, denylist: DenyList) -> list[Finding]:
    doc = as_normalized(text)
    findings: list[Finding] = []
    if denylist.term_regex is not None:
        findings.extend(_term_findings(doc, denylist.term_regex))
    if denylist.patterns:
        findings.extend(_pattern_findings(doc, denylist))
    return findings


def _term_findings(doc: Normalized, regex: re.Pattern[str]) -> list[Finding]:
    low = doc.lower
    n = len(low)
    findings = []
    pos = 0
    while (m := regex.search(low, pos)) is not None:
        start, end = m.span()
        term = m.group()
        # word boundaries where the term itself begins or ends with a word character
        if (_word(term[0]) and start > 0 and _word(low[start - 1])) or (
            _word(term[-1]) and end < n and _word(low[end])
        ):
            pos = start + 1
            continue
        ostart, oend = doc.span(start, end)
        findings.append(Finding("denylist", DENYLIST, ostart, oend, 1.0, " ".join(term.split())))
        pos = end
    return findings


def _pattern_findings(doc: Normalized, denylist: DenyList) -> list[Finding]:
    text = doc.text[: denylist.max_scan_chars]
    seen: set[tuple[int, int, str]] = set()
    findings = []
    step = WINDOW - OVERLAP
    for window_start in range(0, max(len(text), 1), step):
        window_end = min(len(text), window_start + WINDOW)
        for entry, regex, literals in denylist.patterns:
            if not all(doc.has(literal) for literal in literals):
                continue  # every match contains them: cheap to rule out
            for m in regex.finditer(text, window_start, window_end):
                if m.end() == m.start() or (m.start(), m.end(), entry) in seen:
                    continue
                seen.add((m.start(), m.end(), entry))
                ostart, oend = doc.span(m.start(), m.end())
                findings.append(Finding("denylist", DENYLIST, ostart, oend, 1.0, entry))
        if window_end >= len(text):
            break
    return findings
