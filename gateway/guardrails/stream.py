"""Scanning a streamed response chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterable

from . import injection
from .denylist import DenyList
from .findings import CATEGORIES, Finding, order_key
from .scanner import scan, wanted_categories

__all__ = ["StreamScanner"]

# characters of a long token still arriving (a key, a JWT, a base64 blob)
_RUN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/=."


class StreamScanner:
    """Finds matches in a stream of text chunks, including matches split across chunks.

    It keeps a sliding window of the last `window` characters (at least the longest token a
    detector looks for) and rescans it with each chunk. A finding is reported once, with offsets
    in the whole stream, as soon as `lookahead` characters after it have arrived (before that it
    might still grow: "4111 1111 1111 1" is not yet the whole card number).

    `safe_end` is how much of the stream may be released to the client: everything before it has
    been scanned with enough context and all findings in it reported. A caller holds back only
    text from `safe_end` on. A finding is always returned by the feed() that moves `safe_end` past
    its start, or earlier, so the caller can still redact it. The window also stretches, up to
    `max_hold` characters, over a long token still arriving (a JWT, a base64 blob) and over a
    private key block whose END line has not come yet, so those are reported whole before any of
    them is released. The window is rescanned once `scan_every` new characters have arrived
    (not for every token), so `safe_end` moves in steps.

        scanner = StreamScanner({"secrets", "pii"})
        streamed, sent = "", 0
        for chunk in upstream:
            streamed += chunk
            for finding in scanner.feed(chunk):
                ...  # block, or redact streamed[finding.start:finding.end]: not sent yet
            send(streamed[sent : scanner.safe_end])
            sent = scanner.safe_end
        for finding in scanner.close():
            ...
        send(streamed[sent:])
    """

    def __init__(
        self,
        categories: Iterable[str] = CATEGORIES,
        *,
        denylist: DenyList | None = None,
        role: str | None = "assistant",
        injection_threshold: float = injection.DEFAULT_THRESHOLD,
        window: int = 256,
        lookahead: int = 32,
        max_hold: int = 8_192,
        context: int = 64,
        scan_every: int = 32,
    ) -> None:
        if window < 2 * lookahead:
            raise ValueError("window must be at least twice the lookahead")
        self._categories = wanted_categories(categories)
        self._denylist = denylist
        self._role = role
        self._threshold = injection_threshold
        self._window = window
        self._lookahead = lookahead
        self._max_hold = max(max_hold, window)
        self._context = context
        self._buf = ""
        self._buf_start = 0  # offset of _buf[0] in the stream
        self._total = 0
        self._safe_end = 0
        self._closed = False
        self._reported: list[Finding] = []  # still near the window: for de-duplication
        self._token_start = 0  # where the run of token characters at the end of the stream starts
        self._scan_every = scan_every
        self._scanned_until = 0

    @property
    def safe_end(self) -> int:
        return self._safe_end

    @property
    def total(self) -> int:
        return self._total

    def feed(self, chunk: str) -> list[Finding]:
        """Add a chunk; return the findings completed by it (offsets in the whole stream)."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        if not chunk:
            return []
        i = len(chunk.rstrip(_RUN_CHARS))  # where the run of token characters at its end starts
        if i > 0:
            self._token_start = self._total + i
        self._buf += chunk
        self._total += len(chunk)
        if self._total - self._scanned_until < self._scan_every:
            return []  # rescanning the window for every token would cost more than it tells
        return self._scan(final=False)

    def close(self) -> list[Finding]:
        """End of stream: report what is left; everything is then safe to release."""
        if self._closed:
            return []
        self._closed = True
        found = self._scan(final=True)
        self._safe_end = self._total
        return found

    def _scan(self, *, final: bool) -> list[Finding]:
        self._scanned_until = self._total
        found = scan(
            self._buf,
            self._categories,
            denylist=self._denylist,
            role=self._role,
            injection_threshold=self._threshold,
        )
        complete_until = self._total if final else self._total - self._lookahead
        # the first `context` characters are only there for the detectors' boundary checks
        blind_until = self._buf_start + self._context if self._buf_start else 0
        new: list[Finding] = []
        hold = self._total
        for f in found:
            f = f.shifted(self._buf_start)
            if f.start < blind_until or self._seen(f):
                continue
            if f.end > complete_until:
                hold = min(hold, f.start)
                continue
            self._reported.append(f)
            new.append(f)
        keep_from = min(self._total - self._window, hold, self._pending_token_start())
        keep_from = max(keep_from, self._total - self._max_hold, self._safe_end)
        self._safe_end = keep_from
        cut = max(self._buf_start, keep_from - self._context)
        self._buf = self._buf[cut - self._buf_start :]
        self._buf_start = cut
        self._reported = [f for f in self._reported if f.end > cut]
        new.sort(key=order_key)
        return new

    def _seen(self, f: Finding) -> bool:
        return any(r.kind == f.kind and r.start < f.end and f.start < r.end for r in self._reported)

    def _pending_token_start(self) -> int:
        """Where an unfinished token or private key block at the end of the buffer starts."""
        start = self._token_start
        begin = self._buf.rfind("-----BEGIN")
        if begin != -1 and self._buf.find("-----END", begin) == -1:
            start = min(start, self._buf_start + begin)
        return start
