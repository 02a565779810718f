"""The pure translation behind /v1/messages for OpenAI-style deployments (no network, no database)."""

import pytest

from gateway.proxy.errors import BadRequest, UpstreamError
from gateway.proxy.translate.messages_to_chat import (
    StreamTranslator,
    stop_reason,
    to_chat_request,
    to_message,
    to_usage,
)

PDF = "JVBERi0xLjQK"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def _request(**fields):
    return {"model": "gpt", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]} | fields


def _messages(*messages, **fields):
    return to_chat_request(_request(messages=list(messages), **fields), model="up")["messages"]


# --- requests ---


def test_minimal_request_becomes_a_chat_request_with_the_upstream_model():
    assert to_chat_request(_request(), model="upstream-gpt") == {
        "model": "upstream-gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
    }


def test_max_tokens_goes_to_the_field_the_provider_wants_when_one_is_named():
    request = to_chat_request(_request(), model="up", max_tokens_field="max_completion_tokens")

    assert request["max_completion_tokens"] == 64
    assert "max_tokens" not in request


def test_system_blocks_become_one_system_message_when_given_as_text_blocks():
    system = [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {}}]

    assert _messages({"role": "user", "content": "hi"}, system=system)[0] == {
        "role": "system",
        "content": "Be brief.\n\nBe kind.",
    }


def test_user_blocks_become_content_parts_when_they_hold_images_and_documents():
    content = [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "abc"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/a.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
    ]

    assert _messages({"role": "user", "content": content}) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,abc"}},
                {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}},
                {
                    "type": "file",
                    "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
                },
                {"type": "text", "text": "plain words"},
            ],
        }
    ]


def test_tool_use_and_tool_results_become_tool_calls_and_tool_messages_in_openai_order():
    messages = _messages(
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Utrecht"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    )

    assert messages[1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Utrecht"}'},
                },
                {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12 C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "a\nb"},
        {"role": "user", "content": "thanks"},
    ]


def test_tools_and_options_are_translated_when_given():
    request = to_chat_request(
        _request(
            tools=[{"name": "weather", "description": "now", "input_schema": SCHEMA, "cache_control": {}}],
            tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
            stop_sequences=["END", "STOP"],
            temperature=0.5,
            top_p=0.8,
            top_k=40,
            metadata={"user_id": "u-1"},
            thinking={"type": "enabled", "budget_tokens": 1024},
            output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
            stream=True,
        ),
        model="up",
    )

    assert request == {
        "model": "up",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "stop": ["END", "STOP"],
        "temperature": 0.5,
        "top_p": 0.8,
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": SCHEMA, "description": "now"}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "user": "u-1",
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA, "strict": True}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none")],
)
def test_tool_choice_maps_to_openais_when_tools_are_given(choice, expected):
    request = to_chat_request(_request(tools=[{"name": "t", "input_schema": SCHEMA}], tool_choice=choice), model="up")

    assert request["tool_choice"] == expected
    assert "parallel_tool_calls" not in request


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"name": "t"}]}, "tools[0]"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"output_config": {"format": {"type": "regex"}}}, "output_config.format"),
        ({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}, "messages[0].content[0].type"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].source",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": []}]}
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_untranslatable_request_is_a_400_naming_the_field(fields, param):
    with pytest.raises(BadRequest) as caught:
        to_chat_request(_request(**fields), model="up")

    assert caught.value.param == param
    assert caught.value.status == 400


# --- replies ---


def _completion(message, finish="stop", usage=None, **choice):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
        "usage": usage or {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35},
    }


def test_completion_becomes_a_message_with_text_and_usage():
    completion = _completion(
        {"role": "assistant", "content": "Hello."},
        usage={
            "prompt_tokens": 130,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    )

    assert to_message(completion, model="gpt") == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 100,
            "output_tokens": 9,
            "output_tokens_details": {"thinking_tokens": 4},
        },
    }


def test_tool_calls_become_tool_use_blocks_with_parsed_input():
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Utrecht"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "clock", "arguments": ""}},
        ],
    }

    reply = to_message(_completion(message, "tool_calls"), model="gpt")

    assert reply["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Utrecht"}},
        {"type": "tool_use", "id": "call_2", "name": "clock", "input": {}},
    ]
    assert reply["stop_reason"] == "tool_use"


def test_tool_calls_finish_as_tool_use_when_the_server_says_stop():
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "function": {"name": "t", "arguments": "{}"}}],
    }

    assert to_message(_completion(message, "stop"), model="gpt")["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_maps_to_stop_reason(finish, expected):
    assert stop_reason(finish) == (expected, None)


def test_stop_sequence_is_reported_when_the_server_names_the_matched_string():
    reply = to_message(
        _completion({"role": "assistant", "content": "one two"}, "stop", stop_reason="END"),
        model="gpt",
        stop_sequences=["END"],
    )

    assert (reply["stop_reason"], reply["stop_sequence"]) == ("stop_sequence", "END")


def test_refusal_text_becomes_the_text_block_when_there_is_no_content():
    reply = to_message(_completion({"role": "assistant", "content": None, "refusal": "I can't."}), model="gpt")

    assert reply["content"] == [{"type": "text", "text": "I can't."}]


@pytest.mark.parametrize(
    "completion",
    [
        {"choices": []},
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
        _completion({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "t", "arguments": "{not"}}]}),
        _completion({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "t", "arguments": "[1]"}}]}),
    ],
)
def test_malformed_completion_is_an_upstream_error(completion):
    with pytest.raises(UpstreamError):
        to_message(completion, model="gpt")


def test_usage_without_details_counts_zero_cached_tokens():
    assert to_usage({"prompt_tokens": 5, "completion_tokens": 2}) == {
        "input_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
    }


# --- streams ---


def _chunk(delta=None, finish=None, usage=None, choices=True):
    chunk = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "up"}
    chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _translate(chunks, **options):
    translator = StreamTranslator(model="gpt", **options)
    events = [event for chunk in chunks for event in translator.feed(chunk)]
    return events + translator.finish()


def _tool(index, id_=None, name=None, arguments=""):
    call = {"index": index, "function": {"arguments": arguments}}
    if id_:
        call |= {"id": id_, "type": "function"}
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def test_text_then_tool_calls_become_blocks_in_anthropics_order():
    events = _translate(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Let me "}),
            _chunk({"content": "check."}),
            _chunk(_tool(0, "call_a", "weather")),
            _chunk(_tool(0, arguments='{"city":')),
            _chunk(_tool(0, arguments='"Utrecht"}')),
            _chunk(_tool(1, "call_b", "clock", "{}")),
            _chunk({}, "tool_calls"),
            _chunk(usage={"prompt_tokens": 20, "completion_tokens": 12}, choices=False),
        ]
    )

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["id"] == "msg_chatcmpl-9"
    assert events[0]["message"]["model"] == "gpt"
    assert [e["index"] for e in events[1:-2]] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}
    assert [e["delta"] for e in events[6:8]] == [
        {"type": "input_json_delta", "partial_json": '{"city":'},
        {"type": "input_json_delta", "partial_json": '"Utrecht"}'},
    ]
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 12,
        },
    }


def test_message_start_carries_input_tokens_when_the_first_chunk_reports_usage():
    events = _translate([_chunk({"content": "x"}, usage={"prompt_tokens": 7, "completion_tokens": 0})])

    assert events[0]["message"]["usage"]["input_tokens"] == 7


def test_message_delta_reports_zero_output_tokens_when_usage_never_came():
    events = _translate([_chunk({"content": "x"}), _chunk({}, "length")])

    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 0},
    }
    assert events[0]["message"]["usage"]["input_tokens"] == 0


def test_empty_answer_is_a_message_without_content_blocks():
    events = _translate([_chunk({"role": "assistant"}), _chunk({}, "stop")])

    assert [e["type"] for e in events] == ["message_start", "message_delta", "message_stop"]


def test_streamed_stop_sequence_is_reported_when_the_server_names_it():
    chunks = [_chunk({"content": "a"}), _chunk({}, "stop")]
    chunks[-1]["choices"][0]["stop_reason"] = "###"

    events = _translate(chunks, stop_sequences=["###"])

    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
