"""Secrets at rest: Fernet tokens under SECRETS_ENCRYPTION_KEY (a comma-separated list).

The first key encrypts; every listed key decrypts, so a key is rotated by putting the new one
first, running `manage.py rotate_secrets`, and then dropping the old one.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gateway.errors import SecretDecryptionError


@cache
def _fernet() -> MultiFernet:
    keys = settings.SECRETS_ENCRYPTION_KEYS
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each)."
        ) from exc


def reset_keys() -> None:
    """Forget the cached keys (after the settings changed, e.g. in tests)."""
    _fernet.cache_clear()


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str, *, what: str) -> str:
    """Decrypt a stored secret. Raises SecretDecryptionError, never returns None or garbage."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretDecryptionError(
            f"Cannot decrypt {what}: it was encrypted with a key that is not in SECRETS_ENCRYPTION_KEY."
        ) from exc


def rotate_secret(token: str, *, what: str) -> str:
    """Re-encrypt a stored secret under the first (current) key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError(f"Cannot re-encrypt {what}: no configured key decrypts it.") from exc
