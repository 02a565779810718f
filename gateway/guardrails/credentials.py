"""Secret detectors: provider API keys, cloud and forge tokens, private keys, JWTs, our own keys.

Each `detect_*(text) -> list[Finding]` takes a string or a `Normalized` view. Prefixed tokens are
located with `str.find` on their literal prefix (far faster than a regex scan in CPython) and
then matched in place. `detect_base64_secrets` decodes plausible base64 runs and runs the other
detectors on the decoded text; what it finds is reported over the whole encoded run, with
detail "base64".

The Azure OpenAI key rule (a key is 32 hex characters, like an MD5 sum or a dash-less UUID):
a 32-hex token, not part of a longer token, with both letters and digits, is a key when
- a key word ("azure", "api-key", "api_key", "apikey", "api key", "subscription-key",
  "openai") occurs in the 80 characters before it (score 0.9), or
- a secret word ("key", "token", "secret", "password", "credential", "sleutel", "wachtwoord")
  occurs in the 40 characters before it (score 0.7: "my key is ..."), or
- it stands alone on its line, quotes and punctuation aside (score 0.6),
and in neither case when a hash word ("md5", "sha", "hash", "checksum", "digest", "etag",
"uuid", "guid", "commit", "fingerprint", "nonce", "trace", "request id", "correlation", and
keys that are identifiers: "cache key", "idempotency", "primary key", "partition key", ...)
occurs on its line before it or in the 32 characters before it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from functools import lru_cache

from . import prefilter
from .findings import SECRETS, Finding
from .normalize import Normalized, as_normalized, normalize

__all__ = [
    "DETECTORS",
    "detect_anthropic_key",
    "detect_aws_access_key_id",
    "detect_aws_secret_access_key",
    "detect_azure_openai_key",
    "detect_base64_secrets",
    "detect_github_token",
    "detect_gitlab_token",
    "detect_jwt",
    "detect_openai_key",
    "detect_private_key",
    "detect_secrets",
    "detect_symbiosis_admin_token",
    "detect_symbiosis_key",
]

_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _finding(doc: Normalized, kind: str, start: int, end: int, score: float = 1.0) -> Finding:
    ostart, oend = doc.span(start, end)
    return Finding(kind, SECRETS, ostart, oend, score)


def _prefixed(
    doc: Normalized,
    kind: str,
    prefixes: tuple[str, ...],
    regex: re.Pattern[str],
    score: Callable[[str], float | None],
    boundary: frozenset[str] = _TOKEN,
) -> list[Finding]:
    """Tokens starting with one of `prefixes` (not glued to a token before), matched by `regex`
    at that spot; `score` returns None to reject a match."""
    source = doc.ascii
    findings = []
    for prefix in prefixes:
        taken_until = -1
        for pos in _find_all(doc, prefix):
            if pos < taken_until or (pos and source[pos - 1] in boundary):
                continue
            m = regex.match(source, pos)
            if m is not None and (s := score(m.group())) is not None:
                findings.append(_finding(doc, kind, pos, m.end(), s))
                taken_until = m.end()
    return findings


def _find_all(doc: Normalized, prefix: str) -> list[int]:
    """Every offset of `prefix`; "sk-ant-" and "sk-sym-" are picked from the offsets of "sk-",
    which the OpenAI detector finds anyway (one search of a long text instead of three)."""
    if prefix.startswith("sk-") and prefix != "sk-":
        source = doc.ascii
        return [pos for pos in doc.find_all("sk-") if source.startswith(prefix, pos)]
    return doc.find_all(prefix)


def _random_looking(body: str) -> bool:
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def _mixed(body: str) -> bool:
    """Digits, or upper and lower case: what a random token has and a word or slug does not."""
    return any(c.isdigit() for c in body) or (any(c.isupper() for c in body) and any(c.islower() for c in body))


# --- provider keys and our own ---------------------------------------------------------------

_SK_RE = re.compile(r"sk-[A-Za-z0-9_\-]{20,}", re.ASCII)
_OPENAI_SCOPES = ("proj-", "svcacct-", "admin-", "None-")


def _openai_score(token: str) -> float | None:
    if token.startswith(("sk-ant-", "sk-sym-")):
        return None
    body = token[3:]
    for scope in _OPENAI_SCOPES:
        if body.startswith(scope):
            body = body[len(scope) :]
            break
    if len(body) < 20 or not _random_looking(body):
        return None
    if not any(c.isupper() for c in body) and len(body) < 32:
        return None
    return 1.0


def detect_openai_key(text: str | Normalized) -> list[Finding]:
    """sk-..., sk-proj-..., sk-svcacct-..., sk-admin-... (not sk-ant-, not our sk-sym-)."""
    return _prefixed(as_normalized(text), "openai_key", ("sk-",), _SK_RE, _openai_score)


_SK_ANT_RE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}", re.ASCII)


def detect_anthropic_key(text: str | Normalized) -> list[Finding]:
    """sk-ant-api03-..., sk-ant-admin01-..., any sk-ant- with 20+ token characters."""
    return _prefixed(
        as_normalized(text),
        "anthropic_key",
        ("sk-ant-",),
        _SK_ANT_RE,
        lambda t: 1.0 if _mixed(t[7:]) else None,
    )


_SK_SYM_RE = re.compile(r"sk-sym-[A-Za-z0-9_\-]{20,}", re.ASCII)
_SYM_ADMIN_RE = re.compile(r"sym-admin-[A-Za-z0-9_\-]{20,}", re.ASCII)


def detect_symbiosis_key(text: str | Normalized) -> list[Finding]:
    """Our virtual keys: sk-sym- and 43 url-safe characters (score 0.8 for other lengths)."""
    return _prefixed(
        as_normalized(text), "symbiosis_key", ("sk-sym-",), _SK_SYM_RE, lambda t: 1.0 if len(t) == 50 else 0.8
    )


def detect_symbiosis_admin_token(text: str | Normalized) -> list[Finding]:
    """Our admin tokens: sym-admin- and 43 url-safe characters (score 0.8 for other lengths)."""
    return _prefixed(
        as_normalized(text),
        "symbiosis_admin_token",
        ("sym-admin-",),
        _SYM_ADMIN_RE,
        lambda t: 1.0 if len(t) == 53 else 0.8,
    )


# --- cloud and forge tokens -------------------------------------------------------------------

_AWS_KEY_ID_RE = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])", re.ASCII)
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def detect_aws_access_key_id(text: str | Normalized) -> list[Finding]:
    """AKIA... (long-term) and ASIA... (temporary) access key ids: the prefix and 16 more."""
    return _prefixed(as_normalized(text), "aws_access_key_id", ("AKIA", "ASIA"), _AWS_KEY_ID_RE, lambda t: 1.0, _ALNUM)


_AWS_SECRET_CONTEXT_RE = re.compile(r"aws.{0,3}secret|secret.{0,3}access.{0,3}key", re.ASCII)
_AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", re.ASCII)


def detect_aws_secret_access_key(text: str | Normalized) -> list[Finding]:
    """40 base64 characters within 100 characters after "aws_secret..." / "secret access key"."""
    doc = as_normalized(text)
    if "secret" not in doc.ascii_lower:
        return []
    source = doc.ascii
    findings = []
    for ctx in _AWS_SECRET_CONTEXT_RE.finditer(doc.ascii_lower):
        m = _AWS_SECRET_RE.search(source, ctx.end(), min(len(source), ctx.end() + 100))
        if m is None or (m.end() < len(source) and source[m.end()] in _ALNUM):
            continue
        value = m.group()
        if any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value):
            findings.append(_finding(doc, "aws_secret_access_key", m.start(), m.end(), 0.9))
    return findings


_GITHUB_RE = re.compile(r"gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])|github_pat_[A-Za-z0-9_]{22,255}", re.ASCII)


def detect_github_token(text: str | Normalized) -> list[Finding]:
    """Classic (ghp_, gho_, ghu_, ghs_, ghr_ + 36) and fine-grained (github_pat_) tokens."""
    return _prefixed(
        as_normalized(text),
        "github_token",
        ("gh", "github_pat_"),  # one search for the classic tokens' shared prefix
        _GITHUB_RE,
        lambda t: 1.0 if _mixed(t.split("_", 1)[1]) else None,
    )


_GITLAB_RE = re.compile(r"glpat-[A-Za-z0-9_\-]{20,}(?:\.[A-Za-z0-9_\-]+)*", re.ASCII)


def detect_gitlab_token(text: str | Normalized) -> list[Finding]:
    """GitLab personal access tokens: glpat- and 20+ characters."""
    return _prefixed(
        as_normalized(text),
        "gitlab_token",
        ("glpat-",),
        _GITLAB_RE,
        lambda t: 1.0 if _mixed(t[6:]) else None,
    )


# --- private keys and JWTs ------------------------------------------------------------------

_PEM_BEGIN_RE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----", re.ASCII)
_PEM_END_RE = re.compile(r"-----END (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----", re.ASCII)
_PEM_BODY_LINE_RE = re.compile(r"[ \t]*(?:[A-Za-z0-9+/=]+|[A-Za-z\-]+:.*)?[ \t]*\r?$", re.ASCII)
_PEM_MAX = 16_384


def detect_private_key(text: str | Normalized) -> list[Finding]:
    """A PEM private key block, header to footer; without a footer, the header and the body
    lines that follow it (a truncated paste is still a leaked key)."""
    doc = as_normalized(text)
    source = doc.ascii
    findings = []
    pos = source.find("-----BEGIN")
    while pos != -1:
        m = _PEM_BEGIN_RE.match(source, pos)
        if m is None:
            pos = source.find("-----BEGIN", pos + 1)
            continue
        end = m.end()
        next_header = source.find("-----BEGIN", end, end + _PEM_MAX)
        footer = source.find("-----END", end, end + _PEM_MAX if next_header == -1 else next_header)
        closing = _PEM_END_RE.match(source, footer) if footer != -1 else None
        if closing is not None:
            end = closing.end()
        else:
            line_start = end
            while line_start < len(source) and end - m.end() < _PEM_MAX:
                if source[line_start] == "\n":
                    line_start += 1
                line_end = source.find("\n", line_start)
                line_end = len(source) if line_end == -1 else line_end
                if line_end == line_start or not _PEM_BODY_LINE_RE.match(source[line_start:line_end]):
                    break
                end = line_start = line_end
        findings.append(_finding(doc, "private_key", pos, end))
        pos = source.find("-----BEGIN", end)
    return findings


_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*", re.ASCII)


def _b64url_json(part: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _jwt_score(token: str) -> float | None:
    header = _b64url_json(token.split(".", 1)[0])
    return 1.0 if isinstance(header, dict) and "alg" in header else None


def detect_jwt(text: str | Normalized) -> list[Finding]:
    """header.payload.signature in base64url, the header decoding to JSON with "alg"."""
    return _prefixed(as_normalized(text), "jwt", ("eyJ",), _JWT_RE, _jwt_score, _TOKEN | {"."})


# --- Azure OpenAI keys (see the module docstring for the rule) --------------------------------

_HEX_TABLE = bytes(
    ord("h") if chr(i) in "0123456789abcdefABCDEF" else ord("t") if chr(i) in _TOKEN else ord(" ") for i in range(256)
)
_HEX32 = b"h" * 32
_AZURE_WORDS = ("azure", "api-key", "api_key", "apikey", "api key", "subscription-key", "openai")
_KEY_WORDS = ("key", "token", "secret", "password", "credential", "sleutel", "wachtwoord")
_HASH_WORDS = (
    "md5", "sha", "hash", "checksum", "digest", "etag", "uuid", "guid", "commit", "fingerprint",
    "nonce", "trace", "request id", "request-id", "correlation", "cache key", "cache-key", "idempotency",
    "primary key", "foreign key", "partition key", "sort key", "row key", "object key", "session",
)  # fmt: skip
_LINE_PUNCT = " \t\"'`,;"


def detect_azure_openai_key(text: str | Normalized) -> list[Finding]:
    doc = as_normalized(text)
    mask = doc.ascii_bytes.translate(_HEX_TABLE)
    findings = []
    pos = mask.find(_HEX32)
    while pos != -1:
        end = pos + 32
        while end < len(mask) and mask[end] == ord("h"):
            end += 1
        nxt = mask.find(_HEX32, end)
        if end - pos == 32 and (pos == 0 or mask[pos - 1] != ord("t")) and (end == len(mask) or mask[end] != ord("t")):
            score = _azure_score(doc, pos, end)
            if score is not None:
                findings.append(_finding(doc, "azure_openai_key", pos, end, score))
        pos = nxt
    return findings


def _azure_score(doc: Normalized, start: int, end: int) -> float | None:
    token = doc.ascii[start:end]
    if token.isdigit() or token.isalpha():
        return None
    low = doc.ascii_lower
    line_start = low.rfind("\n", 0, start) + 1
    line_end = low.find("\n", end)
    line_end = len(low) if line_end == -1 else line_end
    before_on_line = low[line_start:start]
    near = low[max(0, start - 32) : start]
    if any(w in near or w in before_on_line for w in _HASH_WORDS):
        return None
    if any(w in low[max(0, start - 80) : start] for w in _AZURE_WORDS):
        return 0.9
    if any(w in low[max(0, start - 40) : start] for w in _KEY_WORDS):
        return 0.7
    if not before_on_line.strip(_LINE_PUNCT) and not low[end:line_end].strip(_LINE_PUNCT):
        return 0.6
    return None


# --- secrets inside base64 ------------------------------------------------------------------

_B64_TABLE = bytes(
    ord("b") if chr(i).isascii() and (chr(i).isalnum() or chr(i) in "+/_-") else ord("=") if chr(i) == "=" else ord(" ")
    for i in range(256)
)
_B64_MIN = b"b" * 24  # 18 decoded bytes: shorter than any token we look for
_B64_RUN_RE = re.compile(rb"b+={0,2}")
_B64_MAX_RUN = 16_384
_B64_MAX_TOTAL = 65_536
_B64_MAX_DEPTH = 2
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _b64decode_text(run: str) -> str | None:
    body = run.rstrip("=")
    # Base64 of text mixes upper and lower case; identifiers, hex hashes and UUIDs rarely do.
    if body.lower() == body or body.upper() == body:
        return None
    if "-" in body or "_" in body:
        if "+" in body or "/" in body:
            return None
        body = body.replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        body = body[:-1]
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if len(_CONTROL_RE.findall(decoded)) > len(decoded) // 20:
        return None
    return decoded


def detect_base64_secrets(text: str | Normalized, *, _depth: int = 0) -> list[Finding]:
    doc = as_normalized(text)
    source = doc.ascii
    mask = doc.ascii_bytes.translate(_B64_TABLE)
    findings = []
    budget = _B64_MAX_TOTAL
    pos = mask.find(_B64_MIN)
    while pos != -1 and budget > 0:
        m = _B64_RUN_RE.match(mask, pos)
        end = m.end() if m else pos + len(_B64_MIN)
        if end - pos <= _B64_MAX_RUN:
            budget -= end - pos
            decoded = _b64decode_text(source[pos:end])
            if decoded is not None:
                inner = detect_secrets(normalize(decoded), _depth=_depth + 1)
                kinds = dict.fromkeys(f.kind for f in inner)
                for kind in kinds:
                    ostart, oend = doc.span(pos, end)
                    findings.append(Finding(kind, SECRETS, ostart, oend, 1.0, "base64"))
        pos = mask.find(_B64_MIN, end)
    return findings


# --- all of them ----------------------------------------------------------------------------

DETECTORS: dict[str, Callable[[str | Normalized], list[Finding]]] = {
    "openai_key": detect_openai_key,
    "anthropic_key": detect_anthropic_key,
    "azure_openai_key": detect_azure_openai_key,
    "aws_access_key_id": detect_aws_access_key_id,
    "aws_secret_access_key": detect_aws_secret_access_key,
    "github_token": detect_github_token,
    "gitlab_token": detect_gitlab_token,
    "private_key": detect_private_key,
    "jwt": detect_jwt,
    "symbiosis_key": detect_symbiosis_key,
    "symbiosis_admin_token": detect_symbiosis_admin_token,
}


# What each detector needs in the text before it can match (see prefilter.py): its prefix's
# "-", "_", "A" or "J"; a digit for the Azure key (a 32-hex token of letters alone is rejected)
# and for the AWS secret (it must mix upper case, lower case and digits).
_NEEDS: dict[str, frozenset[int]] = {
    "openai_key": prefilter.DASH,
    "anthropic_key": prefilter.DASH,
    "azure_openai_key": prefilter.DIGIT,
    "aws_access_key_id": prefilter.UPPER_A,
    "aws_secret_access_key": prefilter.DIGIT,
    "github_token": prefilter.UNDERSCORE,
    "gitlab_token": prefilter.DASH,
    "private_key": prefilter.DASH,
    "jwt": prefilter.UPPER_J,
    "symbiosis_key": prefilter.DASH,
    "symbiosis_admin_token": prefilter.DASH,
}


@lru_cache(maxsize=64)
def _gate(kinds: frozenset[str] | None) -> prefilter.Gate[Callable[[Normalized], list[Finding]]]:
    return prefilter.Gate(
        [(detect, (_NEEDS[kind],)) for kind, detect in DETECTORS.items() if kinds is None or kind in kinds]
    )


def detect_secrets(text: str | Normalized, *, kinds: frozenset[str] | None = None, _depth: int = 0) -> list[Finding]:
    """All secret detectors (or those in `kinds`), base64-wrapped secrets included; a detector
    whose characters the text lacks (prefilter.py) is not called."""
    doc = as_normalized(text)
    findings = []
    for detect in _gate(kinds).armed(prefilter.present(doc)):
        findings.extend(detect(doc))
    if _depth < _B64_MAX_DEPTH and prefilter.base64_possible(doc):
        inner = detect_base64_secrets(doc, _depth=_depth)
        findings.extend(f for f in inner if kinds is None or f.kind in kinds)
    return findings
