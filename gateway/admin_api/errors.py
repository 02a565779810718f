"""How the management API turns errors into JSON bodies: always `{"detail": str}`, plus
`field` when one input is to blame (schemas.ErrorOut; a 422 adds `errors`, schemas.ValidationErrorOut).
Messages never contain secrets or stack traces.

`document` writes the answers every operation can give into the OpenAPI document: 401 (each
operation needs the admin token), 422 (each with a body or a parameter that can fail validation),
400 (each with a body: it may not parse). What only some operations answer (404, 409, a
service's 400) they declare in their `response=`.
"""

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

from gateway.admin_api.schemas import ErrorOut, FieldErrorOut, ValidationErrorOut
from gateway.errors import ValidationFailed

logger = logging.getLogger("gateway.admin_api")
NOT_SENT = "Missing admin token: send 'Authorization: Bearer <token>' (create one with manage.py issue_admin_token)."
NOT_ACCEPTED = "Invalid admin token: it is unknown, revoked, or its user is no longer an active superuser."


def install(api: NinjaAPI) -> None:
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = NOT_ACCEPTED if request.headers.get("Authorization", "").strip() else NOT_SENT
        response = api.create_response(request, ErrorOut(detail=message).model_dump(exclude_none=True), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response

    def refused(request: HttpRequest, exc: ValidationFailed) -> HttpResponse:
        return api.create_response(request, {"detail": str(exc), "field": exc.field}, status=400)

    def invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        errors = [_describe(error) for error in exc.errors]
        summary = "; ".join(f"{e.field or 'body'}: {e.msg}" for e in errors)
        body = ValidationErrorOut(
            detail=f"Invalid input: {summary}", field=errors[0].field if errors else None, errors=errors
        )
        return api.create_response(request, body.model_dump(), status=422)

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


def _describe(error: dict[str, Any]) -> FieldErrorOut:
    """One of ninja's errors, with the field's dotted path (`deployments.0.weight`) up front."""
    loc = [str(part) for part in error.get("loc", ())]
    # ("body", "payload", "name") -> "name"; ("body", "payload") -> None (the body); ("path", "unit_id") -> "unit_id"
    path = loc[2:] if loc[:1] == ["body"] else loc[1:]
    return FieldErrorOut(
        field=".".join(path) or None,
        msg=str(error.get("msg", "Invalid value.")).removeprefix("Value error, "),
        type=error.get("type"),
        loc=loc,
    )


_REF = "#/components/schemas/{model}"
_ANSWERS = {
    400: "Refused, with the reason: a value (`field` names it), a body that is not JSON, or a state that forbids it.",
    401: "No admin token was sent, or it is not accepted (unknown, revoked, or not an active superuser's).",
    404: "Not found.",
    409: "Conflicts with an existing record, or is still in use.",
    422: "The input does not have the documented shape: `errors` lists each problem, `field` names the first.",
    503: "A store the operation needs does not answer.",
}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the errors every operation can answer to SCHEMA (ninja's OpenAPI document), in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    refs = {}
    for model in (ErrorOut, ValidationErrorOut):
        doc = model.model_json_schema(ref_template=_REF, mode="serialization")
        components.update(doc.pop("$defs", {}))
        components[model.__name__] = doc
        refs[model] = {"$ref": _REF.format(model=model.__name__)}

    def answer(status: int, model: type[ErrorOut]) -> dict[str, Any]:
        return {"description": _ANSWERS[status], "content": {"application/json": {"schema": refs[model]}}}

    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation["responses"]
            if operation.get("security"):
                responses[401] = answer(401, ErrorOut)
                responses[401]["headers"] = {
                    "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="api"'}
                }
            if operation.get("requestBody") or any(map(_refusable, operation.get("parameters", []))):
                responses[422] = answer(422, ValidationErrorOut)
            if operation.get("requestBody"):
                responses.setdefault(400, answer(400, ErrorOut))
            for status, response in responses.items():
                if status in _ANSWERS and status not in (401, 422):
                    response["description"] = _ANSWERS[status]
            operation["responses"] = dict(sorted(responses.items(), key=lambda item: int(item[0])))
    return schema


def _refusable(parameter: dict[str, Any]) -> bool:
    """Whether ninja can refuse the parameter (422): anything but an unconstrained string can be."""
    schema = parameter.get("schema", {})
    plain = {"type", "title", "description", "default", "examples"}
    return any(set(o) - plain or o.get("type") not in ("string", "null") for o in schema.get("anyOf", [schema]))
