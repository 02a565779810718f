"""Reading the gateway's /v1/messages stream at the wire level, as (event name, data) pairs."""

from __future__ import annotations

from typing import Any

import httpx
import orjson


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    parsed = []
    for frame in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in lines:
            parsed.append((lines.get("event", ""), orjson.loads(lines["data"])))
    return parsed


def post(gateway: str, secret: str, body: dict[str, Any], query: str = "", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/messages{query}",
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01", **headers},
        json=body,
    )
