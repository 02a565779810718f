"""manage.py rotate_secrets: provider keys encrypted under an old key move to the new one."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from gateway import crypto, services
from gateway.errors import SecretDecryptionError
from gateway.models import Provider

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def use_keys(settings):  # type: ignore[no-untyped-def]
    def use(*keys: str) -> None:
        settings.SECRETS_ENCRYPTION_KEYS = list(keys)
        crypto.reset_keys()

    crypto.reset_keys()
    yield use
    crypto.reset_keys()


def _rotate() -> str:
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    return out.getvalue()


def _stored(name: str) -> str:
    return Provider.objects.get(name=name).api_key_encrypted


def test_old_secrets_decrypt_with_only_the_new_key_when_rotated(use_keys):
    use_keys(OLD)
    services.create_provider(name="a", kind="openai", api_key="sk-a")
    services.create_provider(name="b", kind="anthropic", api_key="sk-b")
    services.create_provider(name="keyless", kind="demo")
    use_keys(NEW, OLD)

    output = _rotate()

    assert "Re-encrypted 2 provider secret(s)" in output
    use_keys(NEW)
    assert crypto.decrypt_secret(_stored("a"), what="a") == "sk-a"
    assert crypto.decrypt_secret(_stored("b"), what="b") == "sk-b"
    assert _stored("keyless") == ""


def test_old_key_alone_no_longer_decrypts_when_rotated(use_keys):
    use_keys(OLD)
    services.create_provider(name="a", kind="openai", api_key="sk-a")
    use_keys(NEW, OLD)

    _rotate()

    use_keys(OLD)
    with pytest.raises(SecretDecryptionError):
        crypto.decrypt_secret(_stored("a"), what="a")


def test_reports_zero_when_no_provider_has_a_key(use_keys):
    use_keys(NEW, OLD)
    services.create_provider(name="keyless", kind="demo")

    assert "Re-encrypted 0 provider secret(s)" in _rotate()


def test_fails_clearly_and_changes_nothing_when_a_secret_matches_no_key(use_keys):
    use_keys(OLD)
    services.create_provider(name="a", kind="openai", api_key="sk-a")
    before = _stored("a")
    use_keys(NEW)

    with pytest.raises(CommandError, match="Nothing was changed"):
        _rotate()

    assert _stored("a") == before
