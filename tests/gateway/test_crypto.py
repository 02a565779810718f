"""gateway/crypto.py: secrets at rest under MultiFernet, loud when they cannot be read."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings

from gateway import crypto
from gateway.errors import SecretDecryptionError

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def use_keys(settings: Settings) -> Iterator[Callable[..., None]]:
    """Configure SECRETS_ENCRYPTION_KEYS (first one encrypts) and forget the cached keys."""

    def configure(*keys: str) -> None:
        settings.SECRETS_ENCRYPTION_KEYS = list(keys)
        crypto.reset_keys()

    crypto.reset_keys()
    yield configure
    crypto.reset_keys()


def test_value_round_trips_when_encrypted_and_decrypted(use_keys: Callable[..., None]) -> None:
    use_keys(NEW)

    token = crypto.encrypt_secret("sk-upstream-123")

    assert token != "sk-upstream-123"
    assert "sk-upstream-123" not in token
    assert crypto.decrypt_secret(token, what="a test key") == "sk-upstream-123"


def test_same_value_encrypts_differently_when_encrypted_twice(use_keys: Callable[..., None]) -> None:
    use_keys(NEW)
    assert crypto.encrypt_secret("same") != crypto.encrypt_secret("same")


def test_decrypt_raises_naming_the_secret_when_its_key_is_no_longer_configured(
    use_keys: Callable[..., None],
) -> None:
    use_keys(OLD)
    token = crypto.encrypt_secret("sk-upstream-123")
    use_keys(NEW)

    with pytest.raises(SecretDecryptionError, match="provider 'openai'"):
        crypto.decrypt_secret(token, what="provider 'openai'")


def test_decrypt_raises_when_the_token_is_not_a_fernet_token(use_keys: Callable[..., None]) -> None:
    use_keys(NEW)
    with pytest.raises(SecretDecryptionError):
        crypto.decrypt_secret("not-a-token", what="garbage")


def test_old_value_decrypts_after_the_old_key_is_removed_when_rotated_first(
    use_keys: Callable[..., None],
) -> None:
    use_keys(OLD)
    stored = crypto.encrypt_secret("sk-upstream-123")

    use_keys(NEW, OLD)  # the new key first: it encrypts, both decrypt
    assert crypto.decrypt_secret(stored, what="before rotation") == "sk-upstream-123"
    rotated = crypto.rotate_secret(stored, what="rotation")
    use_keys(NEW)  # the old key is dropped

    assert crypto.decrypt_secret(rotated, what="after rotation") == "sk-upstream-123"
    with pytest.raises(SecretDecryptionError):
        crypto.decrypt_secret(stored, what="not rotated")


def test_rotate_raises_when_no_configured_key_decrypts_the_value(use_keys: Callable[..., None]) -> None:
    use_keys(OLD)
    stored = crypto.encrypt_secret("sk-upstream-123")
    use_keys(NEW)

    with pytest.raises(SecretDecryptionError, match="provider 'openai'"):
        crypto.rotate_secret(stored, what="provider 'openai'")


@pytest.mark.parametrize("key", ["not-a-fernet-key", "c2hvcnQ=", ""])
def test_malformed_key_raises_improperly_configured_when_first_used(use_keys: Callable[..., None], key: str) -> None:
    use_keys(key)
    with pytest.raises(ImproperlyConfigured, match="SECRETS_ENCRYPTION_KEY"):
        crypto.encrypt_secret("anything")
