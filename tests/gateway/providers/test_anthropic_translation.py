"""OpenAI <-> Anthropic Messages translation: the pure functions, without a network."""

import orjson
import pytest

from gateway.proxy.adapters.anthropic import anthropic_failure
from gateway.proxy.errors import BadRequest, ProxyError, UpstreamError
from gateway.proxy.translate.chat_to_messages import (
    DEFAULT_MAX_TOKENS,
    StreamTranslator,
    to_chat_completion,
    to_messages_request,
)
from gateway.selectors import DeploymentSnapshot
from tests.mock_anthropic import stream_events

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "description": "Weather now", "parameters": {"type": "object"}},
}


def _request(*messages: dict, **extra: object) -> dict:
    return to_messages_request({"model": "claude-x", "messages": list(messages), **extra})


def _user(content: object) -> dict:
    return {"role": "user", "content": content}


# --- requests ---


def test_request_carries_model_messages_and_default_max_tokens_when_client_set_none():
    assert _request(_user("hi")) == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


def test_max_completion_tokens_wins_over_max_tokens_when_both_are_set():
    assert _request(_user("hi"), max_tokens=50)["max_tokens"] == 50
    assert _request(_user("hi"), max_tokens=50, max_completion_tokens=70)["max_tokens"] == 70
    assert to_messages_request({"model": "m", "messages": [_user("hi")]}, default_max_tokens=123)["max_tokens"] == 123


def test_system_and_developer_messages_are_joined_into_system_when_anywhere_in_the_conversation():
    request = _request(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in Dutch."}]},
        _user("hi"),
        {"role": "system", "content": "Never swear."},
    )

    assert request["system"] == "Be brief.\n\nAnswer in Dutch.\n\nNever swear."
    assert request["messages"] == [{"role": "user", "content": "hi"}]


def test_multi_turn_conversation_keeps_its_order_and_roles():
    request = _request(_user("one"), {"role": "assistant", "content": "two"}, _user("three"))

    assert request["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]


def test_consecutive_user_messages_become_one_turn():
    request = _request(_user("one"), _user("two"))

    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    ]


def test_data_url_image_becomes_base64_source_with_its_media_type():
    request = _request(
        _user(
            [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
            ]
        )
    )

    assert request["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
    ]


def test_http_image_becomes_url_source():
    request = _request(_user([{"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}}]))

    assert request["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.png"}}
    ]


@pytest.mark.parametrize(
    "url",
    ["data:image/tiff;base64,AAAA", "data:image/png,not-base64", "ftp://example.test/cat.png", "file:///etc/passwd"],
)
def test_400_when_image_url_cannot_be_sent(url):
    with pytest.raises(BadRequest) as caught:
        _request(_user([{"type": "image_url", "image_url": {"url": url}}]))

    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_inline_pdf_becomes_document_block():
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}

    assert _request(_user([part]))["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    ]


def test_400_when_file_is_an_uploaded_file_id():
    with pytest.raises(BadRequest, match="uploaded file ids"):
        _request(_user([{"type": "file", "file": {"file_id": "file-abc"}}]))


def test_400_when_audio_is_sent():
    with pytest.raises(BadRequest, match="Audio input"):
        _request(_user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]))


def test_cache_control_on_a_content_part_is_kept():
    part = {"type": "text", "text": "a long prefix", "cache_control": {"type": "ephemeral"}}

    assert _request(_user([part]))["messages"][0]["content"] == [part]


def test_tools_become_name_description_and_input_schema():
    bare = {"type": "function", "function": {"name": "now"}}

    assert _request(_user("hi"), tools=[WEATHER, bare])["tools"] == [
        {"name": "weather", "description": "Weather now", "input_schema": {"type": "object"}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "weather"}}, None, {"type": "tool", "name": "weather"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_tool_choice_and_parallel_tool_calls_translate(tool_choice, parallel, expected):
    extra = {"tool_choice": tool_choice, "parallel_tool_calls": parallel}

    assert _request(_user("hi"), tools=[WEATHER], **extra).get("tool_choice") == expected


def test_tool_choice_is_dropped_when_no_tools_are_given():
    assert "tool_choice" not in _request(_user("hi"), tool_choice="auto")


def test_assistant_tool_calls_become_tool_use_and_tool_messages_one_user_turn_of_results():
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Utrecht"}'}}
    call2 = {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": ""}}
    request = _request(
        _user("weather in two cities?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": [call, call2]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9 C"}]},
        _user("and tomorrow?"),
        tools=[WEATHER],
    )

    assert request["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Utrecht"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "12 C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "9 C"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]


def test_assistant_message_with_only_tool_calls_has_no_empty_text_block():
    call = {"id": "c", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    request = _request(_user("x"), {"role": "assistant", "content": None, "tool_calls": [call]})

    assert request["messages"][1]["content"] == [{"type": "tool_use", "id": "c", "name": "weather", "input": {}}]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_400_when_tool_call_arguments_are_not_a_json_object(arguments):
    call = {"id": "c", "type": "function", "function": {"name": "weather", "arguments": arguments}}

    with pytest.raises(BadRequest) as caught:
        _request(_user("x"), {"role": "assistant", "tool_calls": [call]})

    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_400_when_tool_message_has_no_tool_call_id():
    with pytest.raises(BadRequest) as caught:
        _request(_user("x"), {"role": "tool", "content": "12 C"})

    assert caught.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, None)])
def test_stop_becomes_stop_sequences(stop, expected):
    assert _request(_user("hi"), stop=stop).get("stop_sequences") == expected


def test_sampling_user_and_stream_are_carried_and_openai_only_parameters_dropped():
    request = _request(
        _user("hi"),
        temperature=0.2,
        top_p=0.9,
        user="user-42",
        stream=True,
        stream_options={"include_usage": True},
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.5,
        logit_bias={"1": 2},
        store=True,
        metadata={"a": "b"},
    )

    assert request["temperature"] == 0.2
    assert request["top_p"] == 0.9
    assert request["metadata"] == {"user_id": "user-42"}
    assert request["stream"] is True
    assert set(request) == {"model", "messages", "max_tokens", "temperature", "top_p", "metadata", "stream"}


def test_json_object_response_format_becomes_a_system_instruction():
    request = _request({"role": "system", "content": "Be brief."}, _user("hi"), response_format={"type": "json_object"})

    assert request["system"].startswith("Be brief.\n\nRespond with a single valid JSON object")


def test_json_schema_response_format_puts_the_schema_in_the_system_prompt():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}

    request = _request(_user("hi"), response_format=response_format)

    assert "conform to this JSON Schema (named 'place')" in request["system"]
    assert orjson.dumps(schema).decode() in request["system"]


def test_text_response_format_changes_nothing():
    assert "system" not in _request(_user("hi"), response_format={"type": "text"})


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"modalities": ["text", "audio"]}, "audio"),
    ],
)
def test_400_when_a_parameter_cannot_be_honoured(extra, param):
    with pytest.raises(BadRequest) as caught:
        _request(_user("hi"), **extra)

    assert caught.value.param == param
    assert caught.value.code == "unsupported_parameter"


# --- replies ---


def _message(content: list, stop_reason: str = "end_turn", **usage: int) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 5} | usage,
    }


def test_text_reply_becomes_a_chat_completion():
    completion = to_chat_completion(
        _message([{"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}]), created=1700000000
    )

    assert completion == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_tool_use_reply_becomes_tool_calls_with_json_string_arguments():
    completion = to_chat_completion(
        _message(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Utrecht"}},
            ],
            stop_reason="tool_use",
        )
    )

    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Utrecht"}'}}
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ],
)
def test_stop_reason_becomes_finish_reason(stop_reason, finish):
    assert to_chat_completion(_message([], stop_reason))["choices"][0]["finish_reason"] == finish


def test_usage_counts_cached_tokens_as_prompt_tokens():
    usage = to_chat_completion(
        _message(
            [],
            cache_read_input_tokens=100,
            cache_creation_input_tokens=20,
            output_tokens_details={"thinking_tokens": 3},
        )
    )["usage"]

    assert usage == {
        "prompt_tokens": 130,
        "completion_tokens": 5,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


# --- streams ---


def _translate(events: list[dict], **kwargs: object) -> tuple[list[dict], StreamTranslator]:
    translator = StreamTranslator(**kwargs)
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    return chunks, translator


def _body(**extra: object) -> dict:
    return {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "a b"}], **extra}


def test_text_stream_becomes_role_content_finish_and_usage_chunks():
    chunks, translator = _translate(stream_events(_body()), created=1700000000)

    assert translator.finished
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]] == ["echo: ", "a ", "b"]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 11
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    assert all(c["id"] == "msg_01MockAnthropicReply" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["created"] == 1700000000 for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])


def test_tool_use_stream_numbers_tool_calls_among_themselves():
    chunks, _ = _translate(stream_events(_body(tools=[{"name": "weather", "input_schema": {"type": "object"}}])))
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]

    # the text block is content block 0, the tool_use block 1; the tool call is OpenAI's index 0
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01A09q90qw90lq917835lq9",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    assert all(call["index"] == 0 for call in calls)
    assert "".join(call["function"]["arguments"] for call in calls) == '{"city": "Utrecht"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_usage_adds_message_start_input_and_cache_to_message_delta_output():
    start_usage = {
        "input_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 1,
    }
    events = [
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": start_usage}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 42, "input_tokens": None},
        },
        {"type": "message_stop"},
    ]

    chunks, _ = _translate(events)

    assert chunks[-1]["usage"] == {
        "prompt_tokens": 125,
        "completion_tokens": 42,
        "total_tokens": 167,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_stream_without_include_usage_has_no_usage_chunk_or_field():
    chunks, _ = _translate(stream_events(_body()), include_usage=False)

    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_ping_unknown_events_and_thinking_blocks_produce_nothing():
    events = [
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "x"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "some_future_event"},
    ]

    chunks, translator = _translate(events)

    assert chunks == []
    assert not translator.finished


def test_error_event_raises_upstream_error():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    with pytest.raises(UpstreamError, match="mid-stream: Overloaded") as caught:
        _translate([*stream_events(_body())[:3], error])

    assert caught.value.code == "upstream_overloaded"


def test_stream_is_unfinished_until_message_stop():
    _, translator = _translate(stream_events(_body())[:-1])

    assert not translator.finished


# --- errors ---

DEPLOYMENT = DeploymentSnapshot(
    id=1, provider_id=1, provider_name="claude", provider_kind="anthropic", provider_approved=True, base_url=""
)


def _failure(status: int, error_type: str, message: str, retry_after: str | None = None) -> ProxyError:
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return anthropic_failure(status, body, DEPLOYMENT, retry_after)


def test_invalid_request_error_passes_through_with_its_message():
    error = _failure(400, "invalid_request_error", "messages: text content blocks must be non-empty")

    assert (error.status, error.message, error.type) == (
        400,
        "messages: text content blocks must be non-empty",
        "invalid_request_error",
    )


@pytest.mark.parametrize(("status", "error_type"), [(401, "authentication_error"), (403, "permission_error")])
def test_rejected_credentials_become_502_without_echo(status, error_type):
    error = _failure(status, error_type, "invalid x-api-key sk-ant-secret")

    assert error.status == 502
    assert error.code == "upstream_auth_failed"
    assert "sk-ant-secret" not in error.message


def test_not_found_stays_404():
    assert _failure(404, "not_found_error", "model: claude-nope").status == 404


def test_rate_limit_keeps_retry_after():
    error = _failure(429, "rate_limit_error", "Number of requests has exceeded your rate limit", "7")

    assert (error.status, error.headers) == (429, {"retry-after": "7"})


def test_api_error_becomes_502():
    error = _failure(500, "api_error", "Internal server error")

    assert (error.status, error.code) == (502, "upstream_error")


def test_overloaded_becomes_503_with_retry_after():
    error = _failure(529, "overloaded_error", "Overloaded", "3")

    assert (error.status, error.code, error.headers) == (503, "upstream_overloaded", {"retry-after": "3"})
