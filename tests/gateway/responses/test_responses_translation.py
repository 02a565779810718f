"""The Responses <-> chat translation on its own (no network): requests built from the fields it
knows, conversations with calls and outputs merged the way chat expects, and streams turned into
events in the order OpenAI's SDK accumulates them."""

from __future__ import annotations

import pytest

from gateway.proxy.errors import BadRequest
from gateway.proxy.translate import responses_from_chat as outbound
from gateway.proxy.translate import responses_to_chat as inbound


def _chat(body: dict, **options) -> dict:
    return inbound.to_chat_request(body, model="up", max_tokens_field="max_tokens", reasoning=False, **options)


def test_a_conversation_with_text_a_call_and_its_output_becomes_chat_messages():
    body = {
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use metric."}]},
            {"role": "user", "content": "Weather?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"Utrecht"}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"Delft"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
        "max_output_tokens": 77,
        "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "w"},
        "parallel_tool_calls": False,
    }

    request = _chat(body)

    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Utrecht"}'}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Delft"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
    ]
    assert request["max_tokens"] == 77 and request["parallel_tool_calls"] is False
    assert request["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert request["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert inbound.dropped_fields(body, request) == ["input.reasoning"]


def test_reasoning_effort_goes_only_to_a_model_that_takes_it():
    body = {"input": "hi", "reasoning": {"effort": "minimal"}}

    assert "reasoning_effort" not in _chat(body)
    with_reasoning = inbound.to_chat_request(body, model="o4-mini", max_tokens_field="max_tokens", reasoning=True)
    assert with_reasoning["reasoning_effort"] == "minimal"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "text"}}, None),
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        (
            {"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": True}},
            {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": True}},
        ),
    ],
)
def test_text_format_becomes_response_format(text, expected):
    assert _chat({"input": "hi", "text": text}).get("response_format") == expected


def test_an_unknown_text_format_is_refused_naming_it():
    with pytest.raises(BadRequest) as refused:
        _chat({"input": "hi", "text": {"format": {"type": "grammar"}}})
    assert refused.value.param == "text.format"


def test_a_completion_becomes_a_response_with_text_calls_and_usage():
    completion = {
        "model": "up",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}},
    }

    response = outbound.to_response(completion, body={"input": "hi", "metadata": {"a": "b"}}, model="public")

    assert response["object"] == "response" and response["status"] == "completed" and response["model"] == "public"
    assert [item["type"] for item in response["output"]] == ["message", "function_call"]
    assert response["output"][0]["content"][0]["text"] == "Checking."
    assert (response["output"][1]["call_id"], response["output"][1]["arguments"]) == ("c1", "{}")
    assert response["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    }
    assert response["metadata"] == {"a": "b"} and response["store"] is False


def test_a_completion_cut_by_its_limit_is_an_incomplete_response():
    completion = {"choices": [{"message": {"content": "It was"}, "finish_reason": "length"}]}

    response = outbound.to_response(completion, body={}, model="m")

    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    chunk: dict = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        chunk = {"choices": [], "usage": usage}
    return chunk


def test_a_stream_of_text_then_a_call_becomes_events_in_the_sdks_order():
    translator = outbound.StreamTranslator({"input": "hi"}, model="m")
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Let me "}),
        _chunk({"content": "check."}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "w", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({}, "tool_calls"),
        _chunk({}, usage={"prompt_tokens": 4, "completion_tokens": 6}),
    ]

    events = [event for chunk in chunks for event in translator.feed(chunk)] + translator.finish()

    assert [(e["type"], e.get("output_index")) for e in events] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    completed = events[-1]["response"]
    assert completed["output"][0]["content"][0]["text"] == "Let me check."
    assert completed["output"][1]["arguments"] == '{"a":1}' and completed["output"][1]["status"] == "completed"
    assert completed["usage"]["input_tokens"] == 4 and completed["usage"]["output_tokens"] == 6
    assert events[0]["response"]["output"] == [] and events[0]["response"]["status"] == "in_progress"
