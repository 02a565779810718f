"""What a request can cost at most: its one output limit, its choices, a bound on its prompt.

A hard budget holds a request's worst case before the upstream call (billing/budget.py), and
that hold must be an upper bound of what the upstream can bill for exactly the payload that is
sent, whatever the upstream's tokenizer. This module decides the three numbers it is made of:

- The output limit. OpenAI has two names for it (`max_tokens`, `max_completion_tokens`); each
  must be an integer from 1 to MAX_OUTPUT_TOKENS (400 otherwise), and when both are sent they are
  reconciled to the smaller, left in the body under one name. That one value is what goes
  upstream (gateway/proxy/router.py renames it for servers that know only `max_tokens`).
- The choices (`n`, 1 to MAX_CHOICES): each may produce the whole output limit; a Predicted
  Output may add its own tokens (billed at the output price when rejected).
- The prompt bound. Every tokenizer in use is byte-level or falls back to bytes, so a prompt of
  N bytes of text is at most N tokens (a SentencePiece word-start token is paid for by the
  quotes around each string). The bound is the size of the request's JSON (its text and more),
  plus a fixed overhead for the chat template and the tool-use instructions a provider adds;
  each image counts BUDGET_IMAGE_TOKENS instead of its data (no provider publishes more per
  image); embedding token arrays count exactly their length. A model's `context_window`, when
  set, caps the bound: a longer prompt is refused unbilled. Inputs whose tokens cannot be bounded
  from their bytes (documents, files, video) need that cap on a model with a hard budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings

from gateway.proxy.errors import BadRequest

MAX_OUTPUT_TOKENS = 10_000_000  # no model writes more in one answer; beyond it, a 400
MAX_CHOICES = 128  # OpenAI's own limit for `n`
PROMPT_OVERHEAD = 32  # tokens a chat template adds around the messages
TOOLS_OVERHEAD = 512  # the tool-use instructions a provider adds when tools are given (Anthropic: ~350)
OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens")  # the first is kept when both are sent

_IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})
_UNBOUNDED_PARTS = frozenset({"document", "file", "input_file", "video", "video_url", "input_video", "audio_url"})
_PART = re.compile(rb'"type":"(' + b"|".join(re.escape(p.encode()) for p in _IMAGE_PARTS | _UNBOUNDED_PARTS) + rb')"')


class Unbounded(Exception):
    """The prompt holds an input whose tokens its bytes do not bound (a document, a file, a video)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_TYPE_NAMES = {bool: "a boolean", float: "a decimal number", str: "a string", list: "an array", dict: "an object"}


def _whole(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        kind = _TYPE_NAMES.get(type(value), "null" if value is None else type(value).__name__)
        raise BadRequest(
            f"Invalid type for '{field}': expected an integer, but got {kind} instead.",
            param=field,
            code="invalid_type",
        )
    if not low <= value <= high:
        raise BadRequest(
            f"Invalid '{field}': expected an integer from {low} to {high}, but got {value}.",
            param=field,
            code="invalid_value",
        )
    return value


def output_limit(body: dict[str, Any], fields: tuple[str, ...] = OUTPUT_FIELDS) -> int | None:
    """The request's one output limit, or None when it sets none. Validates each field; when
    several are sent, keeps the smallest under the first field's name and removes the others
    (a `null` counts as not sent and is removed too)."""
    found: list[tuple[str, int]] = []
    for field in fields:
        if field in body:
            value = body[field]
            if value is None:
                del body[field]
                continue
            found.append((field, _whole(value, field, low=1, high=MAX_OUTPUT_TOKENS)))
    if not found:
        return None
    limit = min(value for _, value in found)
    if len(found) > 1:
        for field, _ in found:
            del body[field]
        body[found[0][0]] = limit
    return limit


def choices(body: dict[str, Any]) -> int:
    """How many answers the request asks for (`n`; absent or null is one)."""
    value = body.get("n")
    if value is None:
        return 1
    return _whole(value, "n", low=1, high=MAX_CHOICES)


def predicted(body: dict[str, Any]) -> int:
    """Output tokens a Predicted Output may add beyond the limit: OpenAI bills the predicted tokens
    it rejects at the output price. Bounded, as the prompt is, by their bytes."""
    prediction = body.get("prediction")
    return len(orjson.dumps(prediction)) if prediction is not None else 0


@dataclass(frozen=True, slots=True)
class Prompt:
    """A bound on a request's prompt tokens, before a model's context window caps it."""

    tokens: int
    unbounded: str = ""  # the kind of an input only a context window bounds ("document", ...)

    def bound(self, context_window: int | None) -> int:
        """The bound for a model with this context window; raises Unbounded when it has none and
        the prompt holds an input its bytes do not bound."""
        if context_window:
            return min(self.tokens, context_window)
        if self.unbounded:
            raise Unbounded(self.unbounded)
        return self.tokens


def chat_prompt(body: dict[str, Any]) -> Prompt:
    """The bound of a chat or messages request's prompt: the bytes of its JSON (its text and
    more) plus the overheads, each image at BUDGET_IMAGE_TOKENS instead of its data."""
    data = orjson.dumps(body)
    tokens = len(data) + PROMPT_OVERHEAD + (TOOLS_OVERHEAD if body.get("tools") else 0)
    if _PART.search(data) is None:
        return Prompt(tokens)
    unbounded = ""
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if kind in _IMAGE_PARTS:
                tokens += settings.BUDGET_IMAGE_TOKENS - len(orjson.dumps(item))
                continue
            if kind in _UNBOUNDED_PARTS:
                unbounded = unbounded or kind
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return Prompt(tokens, unbounded)


def embedding_prompt(value: Any) -> Prompt:
    """The bound of an embeddings `input`: a string's UTF-8 bytes (plus two for the tokenizer's
    start and end), a token array's exact length."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    if items and all(isinstance(v, int) for v in items):
        return Prompt(len(items))  # one token array
    tokens = 0
    for item in items:
        if isinstance(item, list):
            tokens += len(item)
        elif isinstance(item, str):
            tokens += len(item.encode()) + 2
    return Prompt(tokens)
