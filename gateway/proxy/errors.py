"""Errors a /v1 client sees, rendered in OpenAI's error shape.

Every message here is written for the client: it never contains a stack trace, a provider's
credentials or a virtual key.
"""

from __future__ import annotations

import orjson
from django.http import HttpResponse


class ProxyError(Exception):
    status = 400
    type = "invalid_request_error"
    code: str | None = None
    upstream_status: int | None = None  # the provider's HTTP status, when the error came from one
    # The deployment is misconfigured (redirect, rejected credentials): try another, never it again.
    failover_only = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        if upstream_status is not None:
            self.upstream_status = upstream_status

    def redact(self, secret: str) -> ProxyError:
        """Remove a secret (a provider's key an upstream quoted back) from this error's text."""
        if secret and secret in self.message:
            self.message = self.message.replace(secret, "[redacted]")
            self.args = (self.message,)
        return self

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, request_id: str) -> HttpResponse:
        response = HttpResponse(orjson.dumps(self.body()), status=self.status, content_type="application/json")
        response["x-request-id"] = request_id
        for name, value in self.headers.items():
            response[name] = value
        return response


class BadRequest(ProxyError):
    status = 400


class AuthenticationFailed(ProxyError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(ProxyError):
    status = 403
    type = "permission_error"


class NotFound(ProxyError):
    status = 404
    code = "model_not_found"


class MethodNotAllowed(ProxyError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ProxyError):
    status = 413
    code = "request_too_large"


class UpstreamError(ProxyError):
    """The provider failed, timed out or answered with an error."""

    status = 502
    type = "api_error"
    code = "upstream_error"


class UnreadableAnswer(UpstreamError):
    """The provider answered (and billed), but the answer cannot be passed on: nested too deeply,
    or shaped so the gateway cannot read it. Never retried (a retry would be billed again); the
    request is charged the `usage` it carried (OpenAI's shape), or an estimate."""

    code = "upstream_unreadable"

    def __init__(self, message: str, *, usage: dict | None = None) -> None:
        super().__init__(message)
        self.usage = usage


def answer_json(answer: object) -> bytes:
    """An upstream's answer (or a piece of its stream) as JSON bytes; UnreadableAnswer when it
    cannot be serialised (nested past what orjson writes)."""
    try:
        return orjson.dumps(answer)
    except orjson.JSONEncodeError:
        raise UnreadableAnswer("The provider's answer cannot be passed on: it is nested too deeply.") from None


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class ServiceUnavailable(ProxyError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


class QuotaExceeded(ProxyError):
    """429 as OpenAI answers an exhausted account: no upstream call was made."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class BudgetUnavailable(ServiceUnavailable):
    """503: a hard budget governs the request but cannot be checked now (fail closed)."""

    code = "budget_unavailable"


class InternalError(ProxyError):
    status = 500
    type = "api_error"
    code = "internal_error"
