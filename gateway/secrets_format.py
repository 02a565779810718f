"""Format, hashing and display prefix of virtual keys and admin tokens.

A key is a recognisable prefix plus 256 bits from the OS's CSPRNG. With that much entropy a
plain SHA-256 digest cannot be reversed or brute-forced, so no pepper is needed (and rotating
SECRET_KEY does not invalidate every key). Lookups go by digest; the stored digest is then
compared with hmac.compare_digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

VIRTUAL_KEY_PREFIX = "sk-sym-"
ADMIN_TOKEN_PREFIX = "sym-admin-"  # noqa: S105 - a prefix, not a secret
DISPLAY_EXTRA_CHARS = 6


def generate_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)  # 32 bytes = 256 bits


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str, prefix: str) -> str:
    return secret[: len(prefix) + DISPLAY_EXTRA_CHARS]


def digests_match(stored: str, presented: str) -> bool:
    return hmac.compare_digest(stored.encode(), presented.encode())
