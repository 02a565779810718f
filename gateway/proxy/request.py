"""Parsing and checking what a /v1 client sent. Errors name the offending field (`param`)."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from django.http import HttpRequest

from gateway.proxy.errors import BadRequest

MAX_DEPTH = 254  # levels of nesting a request body may have (what orjson serialises)

# Body fields that would let a caller pick the upstream (SSRF) or its credentials. Refused outright.
ROUTING_OVERRIDES = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "azure_endpoint",
        "azure_ad_token",
        "custom_llm_provider",
        "organization",
        "extra_headers",
        "extra_query",
        "headers",
        "endpoint",
        "deployment_id",
    }
)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def presented_key(request: HttpRequest) -> str | None:
    # request.META, not request.headers: building the headers mapping costs more than the lookup.
    meta = request.META
    authorization = meta.get("HTTP_AUTHORIZATION")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return meta.get("HTTP_API_KEY") or meta.get("HTTP_X_API_KEY") or None


def json_object(request: HttpRequest) -> dict[str, Any]:
    body = request.body
    if not body:
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "We could not parse the JSON body of your request. Send valid JSON with 'Content-Type: application/json'."
        ) from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        # What goes upstream must serialise: orjson stops past 254 levels, and a lone surrogate
        # (written as a \u escape) cannot be encoded. A body with neither cannot fail: skip it.
        if body.count(b"[") + body.count(b"{") > MAX_DEPTH or b"\\u" in body:
            orjson.dumps(parsed)
    except orjson.JSONEncodeError:
        raise BadRequest(
            f"The request body is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects.",
            code="invalid_json",
        ) from None
    if overrides := sorted(ROUTING_OVERRIDES.intersection(parsed)):
        raise BadRequest(
            f"'{overrides[0]}' may not be set in a request: the gateway chooses the upstream.",
            param=overrides[0],
            code="unsupported_parameter",
        )
    return parsed


def required_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise BadRequest(f"Missing required parameter: '{field}'.", param=field, code="missing_required_parameter")
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"Invalid type for '{field}': expected a non-empty string.", param=field, code="invalid_type")
    return value


def required_list(body: dict[str, Any], field: str) -> list[Any]:
    value = body.get(field)
    if value is None:
        raise BadRequest(f"Missing required parameter: '{field}'.", param=field, code="missing_required_parameter")
    if not isinstance(value, list) or not value:
        raise BadRequest(f"'{field}' must be a non-empty array.", param=field, code="invalid_type")
    return value


def chat_messages(body: dict[str, Any]) -> list[Any]:
    """The messages of a chat request: objects with a 'role' and a 'content' that is a string, an
    array of content parts (objects with a 'type'), or null (an assistant's tool calls)."""
    messages = required_list(body, "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"Invalid message at messages[{index}]: each message is an object with a 'role'.",
                param=f"messages[{index}]",
                code="invalid_type",
            )
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise BadRequest(
                f"Invalid type for 'messages[{index}].content': expected a string or an array of content parts.",
                param=f"messages[{index}].content",
                code="invalid_type",
            )
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                where = f"messages[{index}].content[{part_index}]"
                raise BadRequest(
                    f"Invalid content part at '{where}': expected an object with a 'type'.",
                    param=where,
                    code="invalid_type",
                )
    return messages


def optional_bool(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"Invalid type for '{field}': expected a boolean.", param=field, code="invalid_type")
    return value


def stream_options(body: dict[str, Any]) -> dict[str, Any]:
    value = body.get("stream_options")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("Invalid type for 'stream_options': expected an object.", param="stream_options")
    return value


def embedding_input(body: dict[str, Any]) -> None:
    value = body.get("input")
    if value is None:
        raise BadRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    ok = (isinstance(value, str) and value != "") or (
        isinstance(value, list)
        and value
        and (
            all(isinstance(v, str) and v for v in value)
            or all(isinstance(v, int) for v in value)
            or all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value)
        )
    )
    if not ok:
        raise BadRequest(
            "'input' must be a non-empty string, an array of non-empty strings, or token arrays.",
            param="input",
            code="invalid_type",
        )
