"""Translation of OpenAI chat answers back to the Responses API (the way back of
gateway/proxy/translate/responses_to_chat.py): pure functions and one class, tested without a network.

- `to_response(completion, ...)`: a chat.completion -> a `response` object
- `StreamTranslator`: chat.completion.chunk dicts -> the Responses API's typed stream events, in
  the order OpenAI's SDKs accumulate them (`response.created`, `response.in_progress`, then per
  output item `output_item.added`, `content_part.added`, `output_text.delta`... `output_item.done`,
  and `response.completed` with the usage). Sequence numbers are the encoder's (it numbers every
  event it sends).

A chat answer cut by its output limit becomes an `incomplete` response (`max_output_tokens`), one
stopped by a content filter an `incomplete` one (`content_filter`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# The request's fields a response object echoes back.
_ECHOED = ("instructions", "max_output_tokens", "metadata", "temperature", "top_p", "tool_choice", "tools", "text")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def to_usage(usage: Any) -> dict[str, Any] | None:
    """The Responses API's usage object for a chat usage object (None when there is none)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    output_details = (
        usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
    )
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": _count(prompt_details.get("cached_tokens"))},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(output_details.get("reasoning_tokens"))},
        "total_tokens": prompt + completion,
    }


def response_object(
    body: dict[str, Any],
    *,
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    status: str,
    usage: dict[str, Any] | None,
    finish_reason: str | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """A `response` object as OpenAI returns it, echoing the request's settings."""
    incomplete = _INCOMPLETE.get(finish_reason or "") if status != "in_progress" else None
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": "incomplete" if incomplete else status,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
    }
    for field in _ECHOED:
        response[field] = body.get(field)
    response["metadata"] = response["metadata"] or {}
    response["tools"] = response["tools"] or []
    response["tool_choice"] = response["tool_choice"] or "auto"
    response["text"] = response["text"] or {"format": {"type": "text"}}
    return response


def message_item(text: str, *, item_id: str, status: str = "completed") -> dict[str, Any]:
    content = [output_text(text)] if status == "completed" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(*, item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def to_response(completion: dict[str, Any], *, body: dict[str, Any], model: str) -> dict[str, Any]:
    """The `response` object for a chat.completion (its first choice)."""
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    output: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(message_item(text, item_id=new_id("msg")))
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        refusal = {"type": "refusal", "refusal": message["refusal"]}
        item = message_item("", item_id=new_id("msg"))
        item["content"] = [refusal]
        output.append(item)
    for call in message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        output.append(
            call_item(
                item_id=new_id("fc"),
                call_id=str(call.get("id") or new_id("call")),
                name=str(function.get("name") or ""),
                arguments=function.get("arguments") if isinstance(function.get("arguments"), str) else "",
            )
        )
    return response_object(
        body,
        response_id=new_id("resp"),
        model=model,
        output=output,
        status="completed",
        usage=to_usage(completion.get("usage")),
        finish_reason=choice.get("finish_reason"),
    )


class StreamTranslator:
    """chat.completion.chunk dicts -> Responses stream events (dicts without sequence numbers)."""

    def __init__(self, body: dict[str, Any], *, model: str) -> None:
        self.body = body
        self.model = model
        self.response_id = new_id("resp")
        self.created_at = int(time.time())
        self.started = False
        self.output: list[dict[str, Any]] = []  # the items so far, as `response.completed` lists them
        self.message: int | None = None  # output index of the open message item
        self.calls: dict[int, int] = {}  # chat tool-call index -> output index of its open item
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    def _response(self, status: str) -> dict[str, Any]:
        return response_object(
            self.body,
            response_id=self.response_id,
            model=self.model,
            output=list(self.output) if status != "in_progress" else [],
            status=status,
            usage=self.usage if status != "in_progress" else None,
            finish_reason=self.finish_reason,
            created_at=self.created_at,
        )

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if not self.started:
            self.started = True
            started = self._response("in_progress")
            events += [
                {"type": "response.created", "response": started},
                {"type": "response.in_progress", "response": started},
            ]
        if isinstance(chunk.get("usage"), dict):
            self.usage = to_usage(chunk["usage"])
        for choice in chunk.get("choices") if isinstance(chunk.get("choices"), list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # a Responses request asks for one answer
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") if isinstance(delta.get("tool_calls"), list) else ():
                if isinstance(call, dict):
                    events += self._call(call)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self.message is None:
            events += self._close_calls()
            self.message = len(self.output)
            item = message_item("", item_id=new_id("msg"), status="in_progress")
            self.output.append(item)
            events.append({"type": "response.output_item.added", "output_index": self.message, "item": dict(item)})
            events.append(
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": self.message,
                    "content_index": 0,
                    "part": output_text(""),
                }
            )
            item["content"] = [output_text("")]
        item = self.output[self.message]
        item["content"][0]["text"] += text
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": item["id"],
                "output_index": self.message,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            }
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        index = call.get("index") if isinstance(call.get("index"), int) else 0
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if index not in self.calls:
            events += self._close_message()
            self.calls[index] = len(self.output)
            item = call_item(
                item_id=new_id("fc"),
                call_id=str(call.get("id") or new_id("call")),
                name=str(function.get("name") or ""),
                arguments="",
                status="in_progress",
            )
            self.output.append(item)
            events.append({"type": "response.output_item.added", "output_index": self.calls[index], "item": dict(item)})
        at = self.calls[index]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self.output[at]["arguments"] += arguments
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": self.output[at]["id"],
                    "output_index": at,
                    "delta": arguments,
                }
            )
        return events

    def _close_message(self) -> list[dict[str, Any]]:
        if self.message is None:
            return []
        at, self.message = self.message, None
        item = self.output[at]
        item["status"] = "completed"
        text = item["content"][0]["text"]
        where = {"item_id": item["id"], "output_index": at, "content_index": 0}
        return [
            {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": output_text(text)},
            {"type": "response.output_item.done", "output_index": at, "item": _copy(item)},
        ]

    def _close_calls(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for at in self.calls.values():
            item = self.output[at]
            if item["status"] == "completed":
                continue
            item["status"] = "completed"
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": at,
                    "arguments": item["arguments"],
                }
            )
            events.append({"type": "response.output_item.done", "output_index": at, "item": dict(item)})
        return events

    def finish(self) -> list[dict[str, Any]]:
        """The events that close a complete stream: open items done, then `response.completed`."""
        events = self._close_message() + self._close_calls()
        response = self._response("completed")
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return [*events, {"type": kind, "response": response}]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "content": [dict(part) for part in item.get("content", [])]}
