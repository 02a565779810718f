"""The pre-filter: which detectors could find anything in a text, judged by the characters in it.

Nearly every detector needs some character before it can match anything at all: an e-mail
address needs "@" (or a closing bracket, for "jan [at] example [dot] nl"), every number an ASCII
digit, a phone number a "0" or a "+", an IP address a "." or a ":", the prefixed keys a "-"
("sk-", "glpat-", "-----BEGIN"), an "_" ("ghp_", "github_pat_"), an "A" ("AKIA", "ASIA") or a
"J" ("eyJ"). `present()` looks for those few characters once per text (one C-speed byte
search each, memoised on the `Normalized` view), and the scanner runs a detector only when the
characters it needs are there. A sentence with none of them costs about a microsecond instead
of twenty detector calls, and a long text is spared the passes of the detectors it cannot feed.

Each condition is a necessary one, read off its detector, never a guess: skipping a detector
here gives exactly the findings it would have returned (none). tests/guardrails/test_prefilter.py
checks every gated detector against text without its characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from .normalize import Normalized

T = TypeVar("T")

__all__ = [
    "AT_OR_BRACKET",
    "COLON",
    "DASH",
    "DIGIT",
    "DOT",
    "UNDERSCORE",
    "UPPER_A",
    "UPPER_J",
    "ZERO_OR_PLUS",
    "Gate",
    "base64_possible",
    "present",
]

# The characters one of the detectors needs (byte values, as `present` returns them).
DIGIT = frozenset(b"0123456789")
AT_OR_BRACKET = frozenset(b"@)]}>")  # "@", or the closing bracket of "[at]", "(at)", "{at}", "<at>"
ZERO_OR_PLUS = frozenset(b"0+")  # every phone pattern starts with "+", "00", "0" or "(0"
DOT = frozenset(b".")
COLON = frozenset(b":")
DASH = frozenset(b"-")
UNDERSCORE = frozenset(b"_")
UPPER_A = frozenset(b"A")
UPPER_J = frozenset(b"J")

_TRIGGERS = bytes(sorted(DIGIT | AT_OR_BRACKET | ZERO_OR_PLUS | DOT | COLON | DASH | UNDERSCORE | UPPER_A | UPPER_J))
_NOT_TRIGGERS = bytes(b for b in range(256) if b not in _TRIGGERS)
_SHORT = 256  # below this, deleting the other bytes and taking a set is cheaper than a search per byte


def present(doc: Normalized) -> frozenset[int]:
    """The trigger characters (byte values) in the text the detectors read (`doc.ascii`)."""
    found = doc.__dict__.get("_present")
    if found is None:
        data = doc.ascii_bytes
        if len(data) < _SHORT:
            found = frozenset(data.translate(None, _NOT_TRIGGERS))
        else:
            found = frozenset(c for c in _TRIGGERS if c in data)  # memchr per byte value
        doc.__dict__["_present"] = found
    return found


def base64_possible(doc: Normalized) -> bool:
    """Whether a base64 run could hide a secret: one is at least 24 characters long and mixes
    upper and lower case (credentials._b64decode_text rejects any other)."""
    text = doc.ascii
    return len(text) >= 24 and not text.islower() and not text.isupper()


class Gate(Generic[T]):
    """Detectors in the order their findings are listed, each with the character sets it needs
    (one character of each). `armed(chars)` is the detectors a text with those characters can
    feed, memoised per set: texts have few distinct sets, so choosing costs a dict lookup."""

    _MAX_MEMO = 512

    def __init__(self, steps: Sequence[tuple[T, tuple[frozenset[int], ...]]]) -> None:
        self.steps = tuple(steps)
        self._memo: dict[frozenset[int], tuple[T, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.steps)

    def armed(self, chars: frozenset[int]) -> tuple[T, ...]:
        found = self._memo.get(chars)
        if found is None:
            found = tuple(item for item, needs in self.steps if all(not need.isdisjoint(chars) for need in needs))
            if len(self._memo) >= self._MAX_MEMO:  # many odd mixes of characters: start over
                self._memo.clear()
            self._memo[chars] = found
        return found
