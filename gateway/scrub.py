"""Exact-match scrubbing of the secrets the gateway holds, wherever text leaves it.

An upstream can quote back what it received: its own API key (a careless server echoing its
`Authorization` header), or a secret a client pasted into a prompt. Pattern detectors
(gateway/guardrails, the log filter) catch secrets by shape; this module catches the ones the
gateway *knows*, whatever their shape: every configured provider key (a self-hosted server's
"canary-7f3a..." matches no pattern), the gateway's own secrets (SECRET_KEY, the encryption keys,
METRICS_TOKEN, the mail and database passwords) and the virtual key a request presented.

Where it applies:
- every /v1 response body (gateway/proxy/handler.py) and each streamed write (the relays);
- text streamed in pieces (`StreamWindow`): a secret split across chunks is caught, at the cost
  of holding back a piece only while the text seen so far ends in the first `LEAD` or more
  characters of a secret (so ordinary streams are never delayed, and at most `LEAD - 1` leading
  characters of a split secret are ever released);
- request-log rows and their bodies (in the log writer's thread) and telemetry spans.

The set is rebuilt when providers change (the proxy's catalog loads the keys with the models).
Scanning is one C-level substring search per secret (`in` on str or bytes), which measured faster
than a regex alternation for the handful of secrets a gateway holds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson
from django.conf import settings

MIN_LENGTH = 8  # shorter values are not secrets worth the name ("EMPTY", vLLM's placeholder key)
LEAD = 4  # a split secret is held back once this many of its first characters have been seen
REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode()
_MAX_MORE = 4096  # virtual keys remembered with the set (a process serves a bounded number)


class Secrets:
    """An immutable set of secrets, ready to scan text and bytes for."""

    __slots__ = ("_bytes", "_leads", "_more", "_pattern", "longest", "texts")

    def __init__(self, values: Iterable[str]) -> None:
        unique = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH}
        # Longest first: a secret that contains another is replaced whole.
        self.texts: tuple[str, ...] = tuple(sorted(unique, key=lambda v: (-len(v), v)))
        variants: list[bytes] = []
        for text in self.texts:
            variants.append(text.encode())
            escaped = orjson.dumps(text)[1:-1]  # as it appears inside a JSON string we wrote
            if escaped != variants[-1]:
                variants.append(escaped)
        self._bytes: tuple[bytes, ...] = tuple(variants)
        self.longest = len(self.texts[0]) if self.texts else 0
        self._more: dict[str, Secrets] = {}
        # For streamed text (short pieces, where one regex scan beats a search per secret): any
        # secret (longest first), and any secret's first LEAD characters.
        self._pattern = re.compile("|".join(map(re.escape, self.texts))) if self.texts else None
        self._leads = re.compile("|".join({re.escape(t[:LEAD]) for t in self.texts})) if self.texts else None

    def __bool__(self) -> bool:
        return bool(self.texts)

    def plus(self, extra: str | None) -> Secrets:
        """These secrets and one more (a request's own virtual key); remembered per value."""
        if not extra or len(extra) < MIN_LENGTH or extra in self.texts:
            return self
        more = self._more.get(extra)
        if more is None:
            if len(self._more) >= _MAX_MORE:
                self._more.clear()
            more = self._more[extra] = Secrets((*self.texts, extra))
        return more

    def text(self, value: str) -> str:
        for secret in self.texts:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def bytes(self, data: bytes) -> bytes:
        for secret in self._bytes:
            if secret in data:
                data = data.replace(secret, _REDACTED_BYTES)
        return data

    def window(self) -> StreamWindow:
        return StreamWindow(self)


class StreamWindow:
    """Scrubs one channel of streamed text (a choice's content, a tool call's arguments) fed in
    pieces, catching secrets split across pieces.

    It remembers the tail of what it has seen (released or held). A piece is released at once
    unless the text seen ends in `LEAD` or more leading characters of a secret; that part is held
    until the next piece shows whether the secret follows (then it is replaced) or not (then it
    is released). `flush()` releases what is held when the channel ends.
    """

    __slots__ = ("_held", "_secrets", "_seen")

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets
        self._seen = ""  # the tail of the text seen, after redaction
        self._held = 0  # characters at the end of `_seen` not released yet

    def feed(self, text: str) -> str:
        if not text:
            return ""
        secrets = self._secrets
        seen = self._seen + text
        pending = len(self._seen) - self._held  # where the text not yet released starts
        start = max(0, pending - secrets.longest + 1)  # where a secret reaching the unreleased text may begin
        if secrets._leads.search(seen, start) is None:  # type: ignore[union-attr]
            # No secret begins there (and so nothing is held): the common case, released at once.
            self._seen = seen[-secrets.longest :] if len(seen) > secrets.longest else seen
            return text
        found = secrets._pattern.search(seen, start)  # type: ignore[union-attr]
        while found is not None:
            # Only what has not been released can still be replaced.
            cut = max(found.start(), pending)
            seen = seen[:cut] + REDACTED + seen[found.end() :]
            found = secrets._pattern.search(seen, cut + len(REDACTED))  # type: ignore[union-attr]
        end = len(seen)
        hold = 0
        if secrets._leads.search(seen, max(0, end - secrets.longest + 1)) is not None:  # type: ignore[union-attr]
            hold = min(self._partial(seen), end - pending)
        released = seen[pending : end - hold]
        keep = max(secrets.longest, hold)
        self._seen, self._held = (seen[-keep:] if end > keep else seen), hold
        return released

    def flush(self) -> str:
        """What is still held: the channel ended without the secret it might have begun."""
        held, self._held = (self._seen[len(self._seen) - self._held :] if self._held else ""), 0
        return held

    def _partial(self, seen: str) -> int:
        """The length of the longest end of `seen` that begins a secret, if it is LEAD or longer."""
        longest = 0
        end = len(seen)
        for secret in self._secrets.texts:
            lead = secret[:LEAD]
            start = seen.find(lead, max(0, end - len(secret) + 1))
            while start != -1 and end - start > longest:
                if secret.startswith(seen[start:]):
                    longest = end - start
                    break
                start = seen.find(lead, start + 1)
        return longest


# --- the secrets this process knows ---

_lock = threading.Lock()
_providers: tuple[str, ...] = ()
_providers_loaded = False
_current: Secrets | None = None


def current() -> Secrets:
    """The configured secrets and every provider key the catalog has loaded."""
    global _current
    secrets = _current
    if secrets is None:
        with _lock:
            secrets = _current = Secrets((*_configured(), *_providers))
    return secrets


def set_provider_keys(keys: Iterable[str]) -> None:
    """Called whenever the providers are (re)loaded: scrub exactly these from now on."""
    global _providers, _current, _providers_loaded
    keys = tuple(sorted({k for k in keys if k}))
    _providers_loaded = True
    if keys != _providers:
        with _lock:
            _providers, _current = keys, None


def providers_loaded() -> bool:
    """Whether the provider keys were read in this process (the catalog reads them)."""
    return _providers_loaded


def reset() -> None:
    """Forget the provider keys and re-read the settings (tests)."""
    global _providers, _current, _providers_loaded
    with _lock:
        _providers, _current, _providers_loaded = (), None, False


def _configured() -> list[str]:
    values = [settings.SECRET_KEY, *settings.SECRETS_ENCRYPTION_KEYS, settings.METRICS_TOKEN]
    values.append(getattr(settings, "EMAIL_HOST_PASSWORD", ""))
    values.append(settings.DATABASES.get("default", {}).get("PASSWORD") or "")
    if settings.REDIS_URL:
        values.append(urlsplit(settings.REDIS_URL).password or "")
    return [v for v in values if isinstance(v, str)]


def text(value: str) -> str:
    """`value` with every known secret replaced."""
    return current().text(value)
