"""Normalisation before matching, with a map from normalised offsets back to the original text.

Detectors match on `Normalized.text` and report spans in the original string through
`Normalized.span()`, so redaction replaces what the user actually sent (a zero-width-split
e-mail address is redacted whole, invisible characters included).

What normalisation does, in one left-to-right pass:

- JSON/C-style escapes are decoded (`\\u0040` -> `@`, `\\n` -> newline), so tool-call arguments
  and escaped payloads are read as the model would read them.
- Unicode NFKC (fullwidth and mathematical letters, ligatures, odd spaces, the fullwidth at sign),
- zero-width, bidi-control and other invisible characters are removed, as are combining
  marks left over after NFKC (strike-through and "zalgo" overlays),
- common homoglyphs are folded to ASCII (Cyrillic and Greek look-alikes of Latin letters,
  digits of other scripts, typographic dashes and quotes).

ASCII text without a backslash, the common case, is returned as is with an identity map.

`digit_runs()` gives numeric detectors their view: digits separated by single spaces, dots or
dashes ("4111 1111 1111 1111", "1234.56.782", "0 6 1 2 3 4 5 6 7 8") joined into one number,
with the offsets of each group kept.
"""

from __future__ import annotations

import codecs
import re
import threading
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

__all__ = ["DigitRun", "Normalized", "as_normalized", "digit_runs", "normalize"]

# Invisible characters: zero-width spaces and joiners, bidi controls and isolates, soft hyphen,
# word joiner and invisible operators, BOM, variation selectors, Mongolian vowel separator,
# Hangul fillers, and the Unicode "tag" block used for ASCII smuggling.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")

# Look-alikes folded to ASCII after NFKC, written as escapes (the glyphs themselves would be
# the very confusion this undoes). Compact on purpose: letters that render like Latin ones in
# common fonts, plus dashes and quotes. One character maps to one character, so runs that need
# nothing but this table keep their length (and a linear offset map).
_HOMOGLYPHS = {
    # Cyrillic
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u043a": "k", "\u043c": "m", "\u043d": "h", "\u043e": "o",
    "\u0440": "p", "\u0441": "c", "\u0442": "t", "\u0443": "y", "\u0445": "x", "\u0455": "s", "\u0456": "i",
    "\u0458": "j", "\u0501": "d", "\u04bb": "h", "\u051b": "q", "\u051d": "w", "\u04cf": "l", "\u0451": "e",
    "\u0457": "i", "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u041a": "K", "\u041c": "M", "\u041d": "H",
    "\u041e": "O", "\u0420": "P", "\u0421": "C", "\u0422": "T", "\u0423": "Y", "\u0425": "X", "\u0405": "S",
    "\u0406": "I", "\u0408": "J", "\u051a": "Q", "\u051c": "W", "\u04c0": "I", "\u0417": "3", "\u042c": "b",
    # Greek
    "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b9": "i", "\u03ba": "k", "\u03bd": "v", "\u03bf": "o",
    "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x", "\u03c9": "w", "\u0391": "A", "\u0392": "B",
    "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I", "\u039a": "K", "\u039c": "M", "\u039d": "N",
    "\u039f": "O", "\u03a1": "P", "\u03a4": "T", "\u03a5": "Y", "\u03a7": "X",
    # Latin look-alikes
    "\u0131": "i", "\u0237": "j", "\u0251": "a", "\u0261": "g", "\u0269": "i", "\u0280": "R", "\ua4f2": "I",
    # dashes, quotes and full stops
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\ufe63": "-", "\u2043": "-", "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u3002": ".", "\u066b": ".",
}  # fmt: skip


# The zero of each run of ten decimal digits outside ASCII (Unicode category Nd): Arabic-Indic,
# Devanagari, Bengali, Thai, Myanmar, fullwidth, mathematical, ... (fullwidth and mathematical
# digits NFKC folds already).
_DIGIT_ZEROS = (
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
)  # fmt: skip


def _fold_table() -> dict[int, str]:
    table = {ord(k): v for k, v in _HOMOGLYPHS.items()}
    for zero in _DIGIT_ZEROS:
        for value in range(10):
            table[zero + value] = str(value)
    return table


_FOLD = _fold_table()
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "/": "/", "\\": "\\", "'": "'"}
_ESCAPE_RE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|[nrt\"/\\'])")  # starts with a literal: fast to search

# Runs of non-ASCII characters, found at C speed: the ASCII encoder calls this error handler
# once per run of characters it cannot encode.
_local = threading.local()


def _record_run(exc: UnicodeEncodeError) -> tuple[str, int]:
    _local.runs.append((exc.start, exc.end))
    return "?" * (exc.end - exc.start), exc.end


codecs.register_error("gateway.guardrails.non_ascii_runs", _record_run)


def _non_ascii_runs(text: str) -> list[tuple[int, int]]:
    _local.runs = runs = []
    text.encode("ascii", "gateway.guardrails.non_ascii_runs")
    _local.runs = None
    return runs


_COMBINING_RE = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


class _Segment(NamedTuple):  # a tuple: texts with many runs make thousands of them
    norm_start: int
    orig_start: int
    orig_end: int
    linear: bool  # True: offsets map one to one; False: any offset inside maps to the whole span


class _memoised:  # a decorator, named like the one it stands in for
    """`functools.cached_property` without its lock: Python 3.11's takes an RLock on every first
    access, which costs more than most of the views it guards. Computed once, then read
    straight from the instance dict (this is a non-data descriptor)."""

    def __init__(self, fn):  # type: ignore[no-untyped-def]
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj, owner=None):  # type: ignore[no-untyped-def]
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


class Normalized:
    """A normalised view of `original` and the map back to it."""

    __slots__ = ("__dict__", "_norm_starts", "_segments", "original", "text")

    def __init__(self, original: str, text: str, segments: list[_Segment] | None = None) -> None:
        self.original = original
        self.text = text
        self._segments = segments  # None: identity
        self._norm_starts = [s.norm_start for s in segments] if segments else []

    @property
    def is_identity(self) -> bool:
        return self._segments is None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a half-open span of `text` to the span of `original` it came from."""
        if self._segments is None:
            return start, end
        return self._to_original_start(start), self._to_original_end(end, start)

    def _to_original_start(self, pos: int) -> int:
        if pos >= len(self.text):
            return len(self.original)
        seg = self._segments[bisect_right(self._norm_starts, pos) - 1]  # type: ignore[index]
        return seg.orig_start + (pos - seg.norm_start) if seg.linear else seg.orig_start

    def _to_original_end(self, pos: int, start: int) -> int:
        if pos <= start:
            return self._to_original_start(start)
        seg = self._segments[bisect_right(self._norm_starts, pos - 1) - 1]  # type: ignore[index]
        return seg.orig_start + (pos - seg.norm_start) if seg.linear else seg.orig_end

    @_memoised
    def lower(self) -> str:
        """`text` in lower case, same length (characters whose lower case is longer stay as they are)."""
        low = self.text.lower()
        if len(low) == len(self.text):
            return low
        return "".join(c if len(lc := c.lower()) != 1 else lc for c in self.text)

    @_memoised
    def ascii(self) -> str:
        """`text` in ASCII, same length and offsets: accented Latin letters lose their accent
        ("é" -> "e"), anything else outside ASCII becomes "?".

        The PII, secret and prompt-injection detectors look for ASCII shapes (and unaccented
        words), and CPython's regex engine and string methods are about twice as fast on a
        one-byte string: one stray "€" in a prompt would otherwise slow every pass down.
        """
        if self.text.isascii():
            return self.text
        return self.text.encode("latin-1", "replace").translate(_ASCII_FOLD).decode("ascii")

    @_memoised
    def ascii_lower(self) -> str:
        return self.ascii.lower()

    @_memoised
    def ascii_bytes(self) -> bytes:
        """`ascii` as bytes, one per character: for fast byte masks with the same offsets."""
        return self.ascii.encode("ascii")

    @_memoised
    def mask(self) -> bytes:
        """`ascii_bytes` with every digit as b"d" and every letter as b"a" (see MASK_TABLE)."""
        return self.ascii_bytes.translate(MASK_TABLE)

    def find_all(self, needle: str) -> list[int]:
        """Every offset of `needle` in `text` (memoised: "sk-" serves three detectors)."""
        cache: dict[str, list[int]] = self.__dict__.setdefault("_found", {})
        found = cache.get(needle)
        if found is None:
            found = []
            source = self.ascii if needle.isascii() else self.text
            pos = source.find(needle)
            while pos != -1:
                found.append(pos)
                pos = source.find(needle, pos + 1)
            cache[needle] = found
        return found

    def has(self, needle: str) -> bool:
        """Whether the lower-cased text contains `needle` (memoised: detectors share context words)."""
        cache: dict[str, bool] = self.__dict__.setdefault("_has", {})
        found = cache.get(needle)
        if found is None:
            found = cache[needle] = needle in self.lower
        return found


def normalize(text: str) -> Normalized:
    """The normalised view of `text` (see the module docstring). Plain ASCII is returned as is;
    text without escapes that Windows-1252 encodes, or that is already NFKC, takes a one-pass
    way (`_normalize_single_byte`, `_normalize_whole`) that gives the same result as the general
    one, `_normalize_runs`, at C speed."""
    if text.isascii() and "\\" not in text:
        doc = Normalized(text, text)
        doc.__dict__["ascii"] = text  # what the `ascii` view would compute, without the call
        return doc
    if "\\" not in text:
        # bytes past one per character in UTF-8: about how many characters are not ASCII
        extra = len(text.encode("utf-8", "surrogatepass")) - len(text)
        if extra * _RUN_COST > len(text):  # more runs than a pass over the whole text costs
            if (doc := _normalize_single_byte(text)) is not None:
                return doc
            if extra >= _MANY_NON_ASCII and (doc := _normalize_whole(text)) is not None:
                return doc
    return _normalize_runs(text)


def _normalize_runs(text: str) -> Normalized:
    """The general way: escapes decoded, then each run of non-ASCII characters folded."""
    pieces = _Pieces()
    emit = pieces.emit
    events: list[tuple[int, int, bool]] = []  # (start, end, is_escape)
    if "\\" in text:
        events.extend((m.start(), m.end(), True) for m in _ESCAPE_RE.finditer(text))
    if not text.isascii():
        events.extend((start, end, False) for start, end in _non_ascii_runs(text))
        events.sort()
    pos = 0
    for start, end, is_escape in events:
        if start < pos:
            continue
        if is_escape:
            emit(text[pos:start], pos, start)
            code = text[start + 2 : end]
            if text[start + 1] != "u":
                emit(_ESCAPES[text[start + 1]], start, end)
            elif 0xD800 <= int(code, 16) <= 0xDFFF:
                emit(text[start:end], start, end)  # a lone surrogate half is left as written
            else:
                emit(_fold_cluster(chr(int(code, 16))), start, end)
        else:
            # a combining mark composes with the ASCII letter before it
            if start > pos and unicodedata.combining(text[start]) and text[start - 1].isalnum():
                start -= 1
            emit(text[pos:start], pos, start)
            _fold_run(text[start:end], start, emit)
        pos = end
    emit(text[pos:], pos, len(text))
    return pieces.result(text)


# One run of non-ASCII characters costs the general way about as much as a pass over this many
# characters costs the one-pass ways (measured: ~2.5 us against ~5 ns per character).
_RUN_COST = 512
_MANY_NON_ASCII = 256  # extra UTF-8 bytes, before `_normalize_whole` is worth its regex passes


def _normalize_whole(text: str) -> Normalized | None:
    """`normalize` in one pass for text with many non-ASCII characters (Cyrillic, Greek) that
    is already NFKC with nothing invisible or combining in it; None for anything else.

    Each run of such text (a substring of an NFKC text between ASCII characters is NFKC too)
    would take `_fold_run`'s fast way, the look-alike table character by character; doing that
    once for the whole text is the same, without a thousand runs' worth of calls.
    """
    if _INVISIBLE_RE.search(text) or _COMBINING_RE.search(text) or not unicodedata.is_normalized("NFKC", text):
        return None
    folded = text.translate(_FOLD)
    if folded == text:
        return Normalized(text, text)
    return Normalized(text, folded, [_Segment(0, 0, len(text), True)])


class _Pieces:
    """The normalised text, built piece by piece, and its map back to the original.

    A piece is "linear" when it is as long as the original text it stands for; consecutive
    linear pieces share one segment, which is kept open (a list) while it grows, so a text of
    many short runs does not allocate a segment per piece. An empty piece is a dropped span.
    """

    __slots__ = ("_open", "norm_len", "out", "segments")

    def __init__(self) -> None:
        self.out: list[str] = []
        self.segments: list[_Segment] = []
        self.norm_len = 0
        self._open: list[int] | None = None  # [norm_start, orig_start, orig_end] of a growing linear segment

    def emit(self, piece: str, orig_start: int, orig_end: int) -> None:
        if not piece:
            return  # dropped: a gap in the original offsets
        size = len(piece)
        if size == orig_end - orig_start:
            current = self._open
            if current is not None and current[2] == orig_start:
                current[2] = orig_end
            else:
                self._close()
                self._open = [self.norm_len, orig_start, orig_end]
        else:
            self._close()
            self.segments.append(_Segment(self.norm_len, orig_start, orig_end, False))
        self.out.append(piece)
        self.norm_len += size

    def _close(self) -> None:
        if self._open is not None:
            norm_start, orig_start, orig_end = self._open
            self.segments.append(_Segment(norm_start, orig_start, orig_end, True))
            self._open = None

    def result(self, text: str) -> Normalized:
        self._close()
        normalised = "".join(self.out)
        if normalised == text:
            return Normalized(text, text)
        return Normalized(text, normalised, self.segments)


def _normalize_single_byte(text: str) -> Normalized | None:
    """`normalize` at C speed for text that Latin-1 or Windows-1252 encodes (Western European
    languages, the euro sign, typographic quotes and dashes): None for any other text.

    No character of those code pages is a combining mark, so normalising such text maps each
    character on its own (`_SingleByte` tables, built at import with the general code below).
    Characters that map to one character are translated as bytes; the few that do not (an
    ellipsis becomes "...", a soft hyphen disappears) are emitted one by one.
    """
    for page in _SINGLE_BYTE_PAGES:  # Latin-1 first: encoding it is a copy
        try:
            data = text.encode(page.codec)
        except UnicodeEncodeError:
            continue
        return page.normalize(text, data)
    return None


class _SingleByte:
    """How each byte of a single-byte code page normalises (see `_normalize_single_byte`)."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        fold, to_ascii = bytearray(range(256)), bytearray(range(256))
        self.irregular: dict[int, str] = {}  # byte -> what its character becomes, when not one character of the page
        for byte in range(128, 256):
            try:
                char = bytes([byte]).decode(codec)
            except UnicodeDecodeError:
                continue  # unassigned: no text encodes to it
            folded = _fold_char(char)
            # Character by character is exact only if no character of the page combines with
            # another, and each folds alike inside a run that takes the slow way (`_fold_cluster`).
            if unicodedata.combining(char) or folded != _fold_cluster(char):
                raise RuntimeError(f"normalize: U+{ord(char):04X} breaks the {codec} fast path")
            if len(folded) == 1 and (folded == char or folded.isascii()):
                fold[byte] = folded.encode(codec)[0]
                view = folded if folded.isascii() else chr(_ASCII_FOLD[ord(folded)]) if ord(folded) < 256 else "?"
                to_ascii[byte] = ord(view)
            else:
                self.irregular[byte] = folded
        self.fold, self.to_ascii = bytes(fold), bytes(to_ascii)
        self.regular = bytes(b for b in range(256) if b not in self.irregular)

    def normalize(self, text: str, data: bytes) -> Normalized:
        irregular = data.translate(None, self.regular)
        if not irregular:
            folded = data.translate(self.fold)
            if folded == data:
                doc = Normalized(text, text)
            else:  # one character for one: a single linear segment
                doc = Normalized(text, folded.decode(self.codec), [_Segment(0, 0, len(text), True)])
            doc.__dict__["ascii"] = data.translate(self.to_ascii).decode("ascii")
            return doc
        positions: list[int] = []
        for byte in set(irregular):
            pos = data.find(byte)
            while pos != -1:
                positions.append(pos)
                pos = data.find(byte, pos + 1)
        positions.sort()
        pieces = _Pieces()
        pos = 0
        for at in positions:
            pieces.emit(data[pos:at].translate(self.fold).decode(self.codec), pos, at)
            pieces.emit(self.irregular[data[at]], at, at + 1)
            pos = at + 1
        pieces.emit(data[pos:].translate(self.fold).decode(self.codec), pos, len(text))
        return pieces.result(text)


def _fold_run(run: str, offset: int, emit) -> None:  # type: ignore[no-untyped-def]
    """Normalise a run of mostly non-ASCII characters; fast when NFKC leaves it alone."""
    if not _INVISIBLE_RE.search(run) and not _COMBINING_RE.search(run) and unicodedata.is_normalized("NFKC", run):
        emit(run.translate(_FOLD), offset, offset + len(run))
        return
    # Cluster by starter: a base character and the combining marks after it.
    i = 0
    n = len(run)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(run[j]):
            j += 1
        emit(_fold_cluster(run[i:j]), offset + i, offset + j)
        i = j


@lru_cache(maxsize=4_096)
def _fold_cluster(cluster: str) -> str:
    folded = unicodedata.normalize("NFKC", _INVISIBLE_RE.sub("", cluster))
    if not folded.isascii():
        folded = "".join(c for c in folded if unicodedata.category(c) not in ("Mn", "Me"))
        folded = _INVISIBLE_RE.sub("", folded).translate(_FOLD)
    return folded


def _fold_char(char: str) -> str:
    """What `_fold_run` makes of one character standing alone."""
    pieces = _Pieces()
    _fold_run(char, 0, pieces.emit)
    return "".join(pieces.out)


def as_normalized(text: str | Normalized) -> Normalized:
    return text if isinstance(text, Normalized) else normalize(text)


# --- byte masks and the numeric view -----------------------------------------------------------


# Python's regex engine is fast only where a pattern starts with a literal: then it skips ahead
# with a plain character search. So detectors that look for classes of characters (digits,
# letters, hex, base64) search a one-byte-per-character mask of the text instead, in which every
# digit is "d" and every letter "a", and start their patterns with those literals.
def _mask_table() -> bytes:
    table = bytearray(range(256))
    for i in range(128):
        if chr(i).isdigit():
            table[i] = ord("d")
        elif chr(i).isalpha():
            table[i] = ord("a")
    return bytes(table)


MASK_TABLE = _mask_table()


def _ascii_fold_table() -> bytes:
    """Latin-1 byte -> ASCII byte: a letter's base letter ("é" -> "e"), else "?"."""
    table = bytearray(range(256))
    for i in range(128, 256):
        base = unicodedata.normalize("NFKD", chr(i))[:1]
        table[i] = ord(base) if base.isascii() and base.isalpha() else ord("?")
    return bytes(table)


_ASCII_FOLD = _ascii_fold_table()
_SEP_RE = re.compile(r"[ .\-]")
_RUN_RES: dict[int, re.Pattern[bytes]] = {}


def _run_re(min_digits: int) -> re.Pattern[bytes]:
    # A digit that does not continue an earlier run, then digits each after at most one
    # separator (space, dot or dash); at least `min_digits` digits in all.
    if min_digits not in _RUN_RES:
        _RUN_RES[min_digits] = re.compile(rb"d(?<!dd)(?<!d[ .\-]d)(?:[ .\-]?d){%d,}" % max(min_digits - 1, 0))
    return _RUN_RES[min_digits]


@dataclass(frozen=True, slots=True)
class DigitRun:
    """Digits joined across single separators; offsets are in the normalised text."""

    start: int
    end: int
    digits: str
    raw: str  # the text of the run, separators included

    def groups(self) -> list[tuple[int, int, str]]:
        """(start, end, separator before it) of each separator-delimited group, in text offsets."""
        out: list[tuple[int, int, str]] = []
        pos = self.start
        sep = ""
        for m in _SEP_RE.finditer(self.raw):
            out.append((pos, self.start + m.start(), sep))
            sep = m.group()
            pos = self.start + m.end()
        out.append((pos, self.end, sep))
        return out


def _joined_digits(doc: Normalized) -> bytes:
    """The mask with every separator (space, dot, dash) dropped: a run of n digits joined across
    separators is n "d"s in a row here, found with one fast search (memoised)."""
    joined = doc.__dict__.get("_joined_digits")
    if joined is None:
        joined = doc.__dict__["_joined_digits"] = doc.mask.translate(None, b" .-")
    return joined


def digit_runs(text: str | Normalized, *, min_digits: int = 1) -> list[DigitRun]:
    """Runs of digits in the normalised text, separators joined, with at least `min_digits` digits.

    Memoised on the `Normalized` object, so the card, BSN and phone detectors share one pass.
    """
    doc = as_normalized(text)
    cache: dict[int, list[DigitRun]] = doc.__dict__.setdefault("_runs", {})
    if min_digits not in cache:
        runs = []
        source = doc.ascii
        mask = doc.mask
        if min_digits > 1 and b"d" * min_digits not in _joined_digits(doc):
            cache[min_digits] = runs  # no run that long even with every separator dropped
            return runs
        for m in _run_re(min_digits).finditer(mask):
            start, end = m.span()
            raw = source[start:end]
            runs.append(DigitRun(start, end, _SEP_RE.sub("", raw), raw))
        cache[min_digits] = runs
    return cache[min_digits]


_SINGLE_BYTE_PAGES = (_SingleByte("latin-1"), _SingleByte("cp1252"))
