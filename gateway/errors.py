"""Errors raised by the gateway core."""


class GatewayError(Exception):
    """Base class of the gateway app's errors."""


class SecretDecryptionError(GatewayError):
    """A stored secret cannot be decrypted with the configured keys. Always loud."""


class ValidationFailed(GatewayError):
    """A service refused its input; the message says why and is safe to show."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
