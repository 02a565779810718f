"""Personal data detectors: e-mail, phone, IBAN, payment card, Dutch BSN, IPv4 and IPv6.

Each `detect_*(text) -> list[Finding]` takes a string or a `Normalized` view and reports
spans in the original text. Numbers are validated where a check exists (IBAN mod-97, card
Luhn and issuer prefix, BSN 11-test), which is what keeps order numbers, timestamps and hashes
out. Scores: 1.0 when a checksum or structure proves the match, lower for shape-only matches.
"""

from __future__ import annotations

import ipaddress
import re

from .findings import PII, Finding
from .normalize import DigitRun, Normalized, as_normalized, digit_runs

__all__ = [
    "IBAN_LENGTHS",
    "bsn_valid",
    "detect_bsn",
    "detect_credit_card",
    "detect_email",
    "detect_iban",
    "detect_ipv4",
    "detect_ipv6",
    "detect_phone",
    "iban_valid",
    "luhn_valid",
]


def _finding(doc: Normalized, kind: str, start: int, end: int, score: float = 1.0) -> Finding:
    ostart, oend = doc.span(start, end)
    return Finding(kind, PII, ostart, oend, score)


_WORD_RE = re.compile(r"[a-z]+|#")


def _context(doc: Normalized, start: int, width: int, prefixes: tuple[str, ...], *, exact: bool = False) -> bool:
    """Whether a word in the `width` characters before `start` begins with (or, if `exact`, is)
    one of `prefixes` (so "order" matches "ordernummer", and "ref" does not match "preferred")."""
    window = doc.ascii_lower[max(0, start - width) : start]
    words = _WORD_RE.findall(window)
    if exact:
        return any(word in prefixes for word in words)
    return any(word.startswith(prefixes) for word in words)


# --- e-mail ---------------------------------------------------------------------------------

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})+", re.ASCII)
# "jan [at] example [dot] com", "jan(at)example.com", "jan {at} example (punt) nl"
_OBFUSCATED_DOMAIN_RE = re.compile(
    r"[A-Za-z0-9\-]{1,63}(?:(?:\s?[\[({<]\s?(?:dot|punt)\s?[\])}>]\s?|\.)[A-Za-z0-9\-]{1,63})+",
    re.ASCII | re.IGNORECASE,
)
_AT_GATE_RE = re.compile(r"at\s?[\])}>]")  # starts with a literal: fast to search for
_DOT_WORD_RE = re.compile(r"\s?[\[({<]\s?(?:dot|punt)\s?[\])}>]\s?", re.ASCII | re.IGNORECASE)
_DOT_SPLIT_RE = re.compile(r"(\s?[\[({<]\s?(?:dot|punt)\s?[\])}>]\s?)", re.ASCII | re.IGNORECASE)


def _local_part_start(text: str, at: int) -> int:
    i = at
    low = max(0, at - 64)
    while i > low and text[i - 1] in _LOCAL_CHARS:
        i -= 1
    while i < at and text[i] == ".":
        i += 1
    return i


def _domain_end(domain: str) -> int:
    """Length of the valid part of `domain` (it must end in an alphabetic TLD), 0 if none."""
    labels = domain.split(".")
    while len(labels) >= 2:
        tld = labels[-1]
        if 2 <= len(tld) <= 24 and tld.isalpha():
            return len(".".join(labels))
        labels.pop()
    return 0


def detect_email(text: str | Normalized) -> list[Finding]:
    doc = as_normalized(text)
    source = doc.ascii
    findings: list[Finding] = []
    at = source.find("@")
    while at != -1:
        start = _local_part_start(source, at)
        m = _DOMAIN_RE.match(source, at + 1)
        if start < at and m and any(c.isalnum() for c in source[start:at]):
            length = _domain_end(m.group())
            if length:
                end = at + 1 + length
                if end >= len(source) or (source[end] not in "-_" and not source[end].isalnum()):
                    findings.append(_finding(doc, "email", start, end))
                    at = source.find("@", end)
                    continue
        at = source.find("@", at + 1)
    findings.extend(_obfuscated_emails(doc))
    return findings


def _obfuscated_emails(doc: Normalized) -> list[Finding]:
    source = doc.ascii
    low = doc.ascii_lower
    findings: list[Finding] = []
    for gate in _AT_GATE_RE.finditer(low):
        # an opening bracket before "at", optionally with a space in between
        bracket = gate.start() - 1
        if bracket >= 0 and low[bracket] == " ":
            bracket -= 1
        if bracket < 0 or low[bracket] not in "[({<":
            continue
        at_start = bracket - 1 if bracket > 0 and low[bracket - 1].isspace() else bracket
        start = _local_part_start(source, at_start)
        d = _OBFUSCATED_DOMAIN_RE.match(source, gate.end() + (gate.end() < len(low) and low[gate.end()] == " "))
        if start >= at_start or not d:
            continue
        labels = _DOT_WORD_RE.sub(".", d.group())
        length = _domain_end(labels)
        if not length:
            continue
        # walk the original domain text until `length` normalised characters are covered
        consumed = 0
        end = d.start()
        for piece in _DOT_SPLIT_RE.split(d.group()):
            if consumed >= length:
                break
            is_dot = bool(_DOT_WORD_RE.fullmatch(piece))
            take = 1 if is_dot else min(len(piece), length - consumed)
            consumed += take
            end += len(piece) if is_dot else take
        findings.append(_finding(doc, "email", start, end, 0.9))
    return findings


# --- phone numbers ----------------------------------------------------------------------------

# International: + or 00, a country code, 7 to 14 more digits with single separators, an
# optional "(0)" trunk prefix and parentheses around area codes. National (NL/BE): a leading 0,
# 9 or 10 digits in all, or "(020) 123 4567". The patterns start with a literal, so the engine
# skips ahead quickly; no digit may follow (after a separator) the match.
_SEP = r"(?: ?[.\-/] ?| )?"  # one separator: a space, or a dot, dash or slash with optional spaces around
_PHONE_INTL_RE = re.compile(rf"\+[1-9](?:{_SEP}(?:\(0\){_SEP})?\(?\d\)?){{6,14}}(?!{_SEP}\d)", re.ASCII)
_PHONE_00_RE = re.compile(rf"00[1-9](?:{_SEP}(?:\(0\){_SEP})?\(?\d\)?){{6,14}}(?!{_SEP}\d)", re.ASCII)
_PHONE_NATIONAL_RE = re.compile(rf"0[ \-]?[1-9](?:{_SEP}\d){{7,8}}(?!{_SEP}\d)", re.ASCII)
_PHONE_PAREN_RE = re.compile(rf"\(0\d{{1,3}}\){_SEP}\d(?:{_SEP}\d){{5,7}}(?!{_SEP}\d)", re.ASCII)
_NOT_PHONE_CONTEXT = ("ref", "order", "invoice", "factuur", "booking", "ticket", "bestel", "isbn", "#")
_PHONE_BLOCKED_BEFORE = frozenset("+-./_")
# digits that continue an IBAN-shaped code ("NL12 ABCD 0123 4567 89") are not a phone number
_IBANISH_BEFORE_RE = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]{4})*[ \-]?\Z", re.ASCII)


# Every character a phone pattern allows between its digits (separators, "(0)", parentheses).
_PHONE_BETWEEN_DIGITS = b" .-/()"


def detect_phone(text: str | Normalized) -> list[Finding]:
    doc = as_normalized(text)
    source = doc.ascii
    findings: list[Finding] = []
    # A number is accepted with 8 digits or more (international, "(020) ..."), 9 or more for the
    # "00" and national forms: with everything allowed between digits dropped from the mask,
    # those digits stand in a row. Without such a row, no pattern needs to be tried.
    joined = doc.mask.translate(None, _PHONE_BETWEEN_DIGITS)
    if b"dddddddd" not in joined:
        return findings
    nine = b"ddddddddd" in joined
    taken_until = -1
    candidates = []
    for regex, international, possible in (
        (_PHONE_INTL_RE, True, "+" in source),
        (_PHONE_00_RE, True, nine),
        (_PHONE_NATIONAL_RE, False, nine),
        (_PHONE_PAREN_RE, False, True),
    ):
        if not possible:
            continue
        candidates.extend((m.start(), m.end(), international) for m in _search_all(regex, source))
    for start, end, international in sorted(candidates):
        if start < taken_until:
            continue
        before = source[start - 1] if start else " "
        after = source[end] if end < len(source) else " "
        if before.isalnum() or before in _PHONE_BLOCKED_BEFORE or after.isalnum() or after == "_":
            continue
        raw = source[start:end]
        digits = sum(c.isdigit() for c in raw.replace("(0)", ""))
        if international:
            if raw.startswith("00"):
                digits -= 2
            if not 8 <= digits <= 15:
                continue
        elif digits == 9:
            # Belgian landline; written with separators, else it is just a 9-digit number
            if raw.isdigit():
                continue
        elif digits != 10:
            continue
        if _context(doc, start, 16, _NOT_PHONE_CONTEXT) or _IBANISH_BEFORE_RE.search(source, max(0, start - 40), start):
            continue
        findings.append(_finding(doc, "phone", start, end, 0.8))
        taken_until = end
    return findings


def _search_all(regex: re.Pattern[str], text: str):  # type: ignore[no-untyped-def]
    """Like finditer, but after a match also tries the positions inside it (they may hold a better one)."""
    pos = 0
    while (m := regex.search(text, pos)) is not None:
        yield m
        pos = m.start() + 1


# --- IBAN -----------------------------------------------------------------------------------

# ISO 13616 registry: country -> IBAN length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# BBAN structure for the countries we see most (a = letter, n = digit, c = either); others are
# checked on length and mod-97 only.
_BBAN_RE = {
    cc: re.compile(pattern, re.ASCII)
    for cc, pattern in {
        "NL": r"[A-Z]{4}\d{10}",
        "BE": r"\d{12}",
        "DE": r"\d{18}",
        "LU": r"\d{3}[A-Z0-9]{13}",
        "FR": r"\d{10}[A-Z0-9]{11}\d{2}",
        "GB": r"[A-Z]{4}\d{14}",
        "IE": r"[A-Z]{4}\d{14}",
        "ES": r"\d{20}",
        "IT": r"[A-Z]\d{10}[A-Z0-9]{12}",
        "AT": r"\d{16}",
        "CH": r"\d{5}[A-Z0-9]{12}",
        "PL": r"\d{24}",
        "PT": r"\d{21}",
        "DK": r"\d{14}",
        "SE": r"\d{20}",
        "FI": r"\d{14}",
        "NO": r"\d{11}",
    }.items()
}
# Where an IBAN can start, on the mask: two letters and two digits, maybe with a space between,
# not right after another letter or digit. Searched for in the REVERSED mask, where the pattern
# begins with the rare literal "dd" (the regex engine skips ahead to it at C speed); forwards,
# it would begin with "aa", which a mask of prose holds at nearly every position.
_IBAN_START_REVERSED_RE = re.compile(rb"dd ?aa(?![ad])")


def iban_valid(iban: str) -> bool:
    """`iban`: upper case, no separators."""
    length = IBAN_LENGTHS.get(iban[:2])
    if length is None or len(iban) != length or not iban.isalnum() or not iban.isascii():
        return False
    bban = _BBAN_RE.get(iban[:2])
    if bban is not None and not bban.fullmatch(iban[4:]):
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def detect_iban(text: str | Normalized) -> list[Finding]:
    doc = as_normalized(text)
    source = doc.ascii
    mask = doc.mask
    findings: list[Finding] = []
    n = len(mask)
    starts = sorted(n - m.end() for m in _IBAN_START_REVERSED_RE.finditer(mask[::-1]))
    for start in starts:
        length = IBAN_LENGTHS.get(source[start : start + 2].upper())
        if length is None:
            continue
        chars: list[str] = []
        i, n = start, len(source)
        while i < n and len(chars) < length:
            c = source[i]
            if c.isascii() and c.isalnum():
                chars.append(c)
                i += 1
            elif c in " -" and i + 1 < n and source[i + 1].isascii() and source[i + 1].isalnum():
                i += 1
            else:
                break
        if len(chars) != length:
            continue
        # a BBAN is largely digits; a walk through ordinary words ("is 12 items in the box") is not
        if sum(c.isdigit() for c in chars[4:]) * 4 < length - 4:
            continue
        # the IBAN must end here: no letter or digit glued on, no "-" continuing it (UUIDs)
        if i < n and (
            (source[i].isascii() and source[i].isalnum())
            or (source[i] == "-" and i + 1 < n and source[i + 1].isalnum())
        ):
            continue
        if iban_valid("".join(chars).upper()):
            findings.append(_finding(doc, "iban", start, i))
    return findings


# --- payment cards and BSN ------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer_ok(d: str) -> bool:
    n = len(d)
    p2, p3, p4 = int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if p2 == 62:  # UnionPay
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58, 63, 67):  # Maestro
        return 13 <= n <= 19
    return False


def bsn_valid(digits: str) -> bool:
    """The Dutch "elfproef" for a 9-digit citizen service number."""
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - int(digits[8])
    return total % 11 == 0


def _glued(source: str, start: int, end: int) -> bool:
    """A run with a letter or digit right against it is part of a code, not a number on its own."""
    return (start > 0 and source[start - 1].isalnum()) or (end < len(source) and source[end].isalnum())


_IPV4_SHAPE_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}", re.ASCII)


def _candidates(run: DigitRun, lengths: range) -> list[tuple[int, int, str]]:
    """The whole run if its length fits, then leading and trailing groups split off at a space
    ("4111 1111 1111 1111 123" with the CVC after it, "bsn 12 123456782"). Only prefixes and
    suffixes up to the longest length are tried, so a huge run costs no more than a short one."""
    out = [(run.start, run.end, run.digits)] if len(run.digits) in lengths else []
    groups = run.groups()
    longest = lengths.stop - 1
    count = 0
    for i in range(len(groups) - 1):  # leading groups 0..i
        count += groups[i][1] - groups[i][0]
        if count > longest:
            break
        if groups[i + 1][2] == " " and count in lengths:
            out.append((groups[0][0], groups[i][1], run.digits[:count]))
    count = 0
    for j in range(len(groups) - 1, 0, -1):  # trailing groups j..end
        count += groups[j][1] - groups[j][0]
        if count > longest:
            break
        if groups[j][2] == " " and count in lengths:
            out.append((groups[j][0], groups[-1][1], run.digits[-count:]))
    return out


def detect_credit_card(text: str | Normalized) -> list[Finding]:
    doc = as_normalized(text)
    source = doc.ascii
    findings = []
    for run in digit_runs(doc, min_digits=9):  # one pass shared with the BSN detector
        if len(run.digits) < 13 or _glued(source, run.start, run.end):
            continue
        for start, end, digits in _candidates(run, range(13, 20)):
            if _card_issuer_ok(digits) and luhn_valid(digits):
                findings.append(_finding(doc, "credit_card", start, end))
                break
    return findings


_BSN_CONTEXT = ("bsn", "burgerservice", "sofi")
_NOT_BSN_CONTEXT = (
    "order", "invoice", "factuur", "tracking", "ticket", "ref", "klant", "bestel", "artikel", "article",
    "sku", "phone", "tel", "bel", "call", "account", "rekening", "#",
)  # fmt: skip
_AMOUNT_RE = re.compile(r"\d{1,3}(?:\.\d{3})+", re.ASCII)


def detect_bsn(text: str | Normalized) -> list[Finding]:
    """9 digits that pass the 11-test, not inside a longer number or glued to letters.

    Plain 9-digit numbers pass the test one time in eleven, so context counts: "BSN" or
    "burgerservicenummer" in the 40 characters before gives score 1.0; "order", "invoice", "#"
    and the like just before the number (and no "BSN" there) suppress it; otherwise 0.7.
    """
    doc = as_normalized(text)
    source = doc.ascii
    findings = []
    for run in digit_runs(doc, min_digits=9):
        if _glued(source, run.start, run.end):
            continue
        for start, end, digits in _candidates(run, range(9, 10)):
            raw = source[start:end]
            if _IPV4_SHAPE_RE.fullmatch(raw) or not bsn_valid(digits):
                continue
            context = _context(doc, start, 40, _BSN_CONTEXT)
            if _context(doc, start, 16, _NOT_BSN_CONTEXT) and not _context(doc, start, 16, _BSN_CONTEXT):
                continue
            if not context and _AMOUNT_RE.fullmatch(raw):  # 123.456.789 is an amount
                continue
            findings.append(_finding(doc, "bsn", start, end, 1.0 if context else 0.7))
            break
    return findings


# --- IP addresses ---------------------------------------------------------------------------

# On the mask: a digit not preceded by a letter, digit or dot, four dotted groups of 1-3
# digits, nothing glued after and no fifth group (version strings like 1.2.3.4.5, OIDs).
_IPV4_RE = re.compile(rb"d(?<![ad.]d)d{0,2}\.d{1,3}\.d{1,3}\.d{1,3}(?![ad]|\.d)")
_VERSION_WORDS = ("version", "versions", "versie", "ver", "release", "build", "firmware", "v")


def detect_ipv4(text: str | Normalized) -> list[Finding]:
    """Valid dotted quads, except loopback, 0.0.0.0, broadcast and netmasks, and version strings."""
    doc = as_normalized(text)
    source = doc.ascii
    findings = []
    for m in _IPV4_RE.finditer(doc.mask):
        start, end = m.span()
        parts = source[start:end].split(".")
        if any(len(p) > 1 and p[0] == "0" for p in parts):
            continue
        octets = [int(p) for p in parts]
        if max(octets) > 255 or octets[0] in (0, 127, 255):
            continue
        if _context(doc, start, 12, _VERSION_WORDS, exact=True):
            continue
        findings.append(_finding(doc, "ipv4", start, end, 0.9))
    return findings


_IPV6_HINT_RE = re.compile(r":(?:[0-9A-Fa-f]{1,4}:|:[0-9A-Fa-f])", re.ASCII)
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_IPV6_CANDIDATE_RE = re.compile(r"[0-9A-Fa-f:]+(?:\.\d{1,3}){0,3}", re.ASCII)


def detect_ipv6(text: str | Normalized) -> list[Finding]:
    """Addresses `ipaddress` accepts, with a digit in them and either three groups or a full
    first group (so "abc::def", "a[1::2]" and C++ "std::cout" are not addresses); loopback and
    the unspecified address are left alone."""
    doc = as_normalized(text)
    source = doc.ascii
    findings = []
    pos = 0
    n = len(source)
    while (hint := _IPV6_HINT_RE.search(source, pos)) is not None:
        start = hint.start()
        while start > 0 and hint.start() - start < 39 and source[start - 1] in _IPV6_CHARS:
            start -= 1
        m = _IPV6_CANDIDATE_RE.match(source, start)
        end = m.end() if m else hint.end()
        pos = max(end, hint.start() + 1)
        if m is None:
            continue
        candidate = m.group().rstrip(".")
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]
        end = start + len(candidate)
        before = source[start - 1] if start else " "
        after = source[end] if end < n else " "
        if before.isalnum() or before in "_:." or after.isalnum() or after == "_":
            continue
        if not any(c.isdigit() for c in candidate):
            continue
        groups = [g for g in candidate.replace("::", ":").split(":") if g]
        if groups and "." in groups[-1]:  # ::ffff:192.0.2.1, an IPv4 address is two groups
            groups.append("")
        if len(groups) < 3 and len(candidate.split(":")[0]) != 4:
            continue
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if address.is_loopback or address.is_unspecified:
            continue
        findings.append(_finding(doc, "ipv6", start, end, 0.9))
    return findings
