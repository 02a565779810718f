"""Guardrail detectors: PII, secrets, prompt injection, deny lists, size caps.

Pure Python (standard library only, no Django), so the proxy can call it on the hot path and
tests can call it alone. Text is normalised before matching (NFKC, invisible characters,
homoglyphs, escapes) and every finding's offsets point into the ORIGINAL text.

    findings = scan(text, {"pii", "secrets"}, denylist=compile_denylist(["project falcon"]))
    redacted, mapping = redact(text, findings)
    ... restore(reply_text, mapping)

The detectors live in `pii`, `credentials`, `injection` and `denylist`; `scan` and
`scan_messages` run the ones asked for; `StreamScanner` does the same over a streamed reply.

Cost: one look at a text (`prefilter`) finds which of the characters the detectors need are in
it ("@", digits, "-" of "sk-", ...), and only the detectors those can feed run, with the same
findings as running them all; a short clean sentence costs a few microseconds. `normalize`
handles plain ASCII, Western European text and already-NFKC text in one pass each.
"""

from .denylist import DenyList, DenyListError, compile_denylist, detect_denylist
from .findings import CATEGORIES, Finding, resolve_overlaps
from .injection import DEFAULT_THRESHOLD as INJECTION_THRESHOLD
from .injection import score as injection_score
from .limits import SizeCheck, approx_tokens, check_size
from .normalize import Normalized, normalize
from .redaction import redact, redact_messages, restore
from .scanner import KINDS, TextPart, iter_text_parts, scan, scan_messages
from .stream import StreamScanner

__all__ = [
    "CATEGORIES",
    "INJECTION_THRESHOLD",
    "KINDS",
    "DenyList",
    "DenyListError",
    "Finding",
    "Normalized",
    "SizeCheck",
    "StreamScanner",
    "TextPart",
    "approx_tokens",
    "check_size",
    "compile_denylist",
    "detect_denylist",
    "injection_score",
    "iter_text_parts",
    "normalize",
    "redact",
    "redact_messages",
    "resolve_overlaps",
    "restore",
    "scan",
    "scan_messages",
]
