"""What an audit event may hold: JSON-ready values with every secret masked.

A value is masked when its field's name says it is a secret (api_key, key_hash, token_hash,
password, client_secret, ..., anything `*_encrypted`), when it looks like one whatever its name
(a virtual key, an admin token, a Fernet token as gateway/crypto.py writes them), and when it is
one the gateway knows (a configured provider key, gateway/scrub.py). A masked value says only
whether it was set: "[set]" or "" (empty)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from gateway import scrub
from gateway.secrets_format import ADMIN_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX

MASKED = "[set]"
_SECRET_NAME = re.compile(
    r"(^|_)(password|passwd|secret|token|api_?key|apikey|key_hash|token_hash|private_key|credentials?)$"
    r"|_encrypted$|^(key|secret|authorization)$",
    re.IGNORECASE,
)
# Fernet tokens start with version byte 0x80 then a timestamp: "gAAAAA" in url-safe base64.
_SECRET_VALUE = re.compile(
    rf"({re.escape(VIRTUAL_KEY_PREFIX)}|{re.escape(ADMIN_TOKEN_PREFIX)})[A-Za-z0-9_-]{{8,}}|gAAAAA[A-Za-z0-9_=-]{{40,}}"
)
MAX_TEXT = 2000  # a longer text is cut (an event records a change, not a document)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def masked(value: Any) -> str:
    return MASKED if value not in (None, "", b"") else ""


def clean(value: Any, *, name: str = "") -> Any:
    """VALUE as JSON (str, int, float, bool, None, list, dict with str keys), secrets masked."""
    if name and is_secret_name(name):
        return masked(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds") if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): clean(v, name=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [clean(v) for v in items]
    return text(str(value))


def text(value: str, *, limit: int = MAX_TEXT) -> str:
    """A storable text: no secret the gateway knows or can recognise, no NUL (Postgres refuses
    it in text and JSON), at most LIMIT characters."""
    value = _SECRET_VALUE.sub("[redacted]", value.replace("\x00", ""))
    value = scrub.current().text(value) if scrub.providers_loaded() else value
    return value if len(value) <= limit else value[: limit - 1] + "…"
