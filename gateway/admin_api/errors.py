"""How the management API turns errors into JSON bodies: always `{"detail": str}`, plus
`field` when one input is to blame. Messages never contain secrets or stack traces."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from django.db import DataError, IntegrityError
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError

from gateway.errors import ValidationFailed

logger = logging.getLogger("gateway.admin_api")
NOT_SENT = "Missing admin token: send 'Authorization: Bearer <token>' (create one with manage.py issue_admin_token)."
NOT_ACCEPTED = "Invalid admin token: it is unknown, revoked, or its user is no longer an active superuser."


def install(api: NinjaAPI) -> None:
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = NOT_ACCEPTED if request.headers.get("Authorization", "").strip() else NOT_SENT
        response = api.create_response(request, {"detail": message}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response

    def refused(request: HttpRequest, exc: ValidationFailed) -> HttpResponse:
        return api.create_response(request, {"detail": str(exc), "field": exc.field}, status=400)

    def invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        errors = [_describe(error) for error in exc.errors]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['msg']}" for e in errors)
        body = {
            "detail": f"Invalid input: {summary}",
            "field": errors[0]["field"] if errors else None,
            "errors": errors,
        }
        return api.create_response(request, body, status=422)

    def in_use(request: HttpRequest, exc: ProtectedError) -> HttpResponse:
        return api.create_response(
            request, {"detail": "Still in use by other records; remove those first."}, status=409
        )

    def conflict(request: HttpRequest, exc: IntegrityError) -> HttpResponse:
        return api.create_response(request, {"detail": "Conflicts with an existing record."}, status=409)

    def unstorable(request: HttpRequest, exc: DataError) -> HttpResponse:
        detail = "The database refused a value (out of range, too long, or containing characters it cannot store)."
        return api.create_response(request, {"detail": detail}, status=400)

    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        # Never a traceback to the caller (ninja shows one under DEBUG); the log names where it failed.
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        logger.error("unexpected %s at %s:%s in %s", type(exc).__name__, frame.filename, frame.lineno, request.path)
        return api.create_response(request, {"detail": "The server failed unexpectedly."}, status=500)

    api.add_exception_handler(Exception, unexpected)
    api.add_exception_handler(AuthenticationError, unauthenticated)
    api.add_exception_handler(ValidationFailed, refused)
    api.add_exception_handler(NinjaValidationError, invalid)
    api.add_exception_handler(ProtectedError, in_use)
    api.add_exception_handler(IntegrityError, conflict)
    api.add_exception_handler(DataError, unstorable)


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    """One of ninja's errors, with the field's dotted path (`deployments.0.weight`) up front."""
    loc = [str(part) for part in error.get("loc", ())]
    # ("body", "payload", "name") -> "name"; ("body", "payload") -> None (the body); ("path", "unit_id") -> "unit_id"
    path = loc[2:] if loc[:1] == ["body"] else loc[1:]
    return {
        "field": ".".join(path) or None,
        "msg": str(error.get("msg", "Invalid value.")).removeprefix("Value error, "),
        "type": error.get("type"),
        "loc": loc,
    }
