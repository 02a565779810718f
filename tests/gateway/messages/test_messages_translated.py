"""/v1/messages in front of an OpenAI-style deployment: the Anthropic SDK, the live gateway, the mock OpenAI upstream.

The Messages request becomes an OpenAI chat request; the completion, or each chunk, becomes Messages again.
"""

import time

import anthropic
import httpx
import pytest

from gateway.models import Model, Provider
from tests.factories import ProviderFactory
from tests.gateway.messages import wire

pytestmark = pytest.mark.django_db(transaction=True)

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "weather",
    "description": "The weather in a city now",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _ask(client, content="hi", model="gpt", **extra):
    return client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": content}], **extra)


# --- answers ---


def test_completion_comes_back_as_a_message_when_not_streaming(gpt):
    message = _ask(gpt, "hello there")

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id == "msg_chatcmpl-mock"
    assert message.model == "gpt"
    assert [(b.type, b.text) for b in message.content] == [("text", "echo: hello there")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)


def test_upstream_receives_an_openai_chat_request_when_translating(gpt, upstream):
    gpt.messages.create(
        model="gpt",
        max_tokens=300,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
                ],
            },
        ],
        stop_sequences=["END"],
        metadata={"user_id": "user-42"},
        extra_body={"temperature": 0.3, "top_p": 0.9},
    )

    sent = upstream.state.last()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-upstream-test-secret"
    assert sent.body == {
        "model": "upstream-gpt",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
                ],
            },
        ],
        "max_tokens": 300,
        "stop": ["END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "user-42",
    }


def test_openai_itself_receives_max_completion_tokens_when_translating(messages_setup, upstream):
    provider = ProviderFactory(name="openai-direct", kind=Provider.Kind.OPENAI, base_url=upstream.url)
    messages_setup.serve("gpt-direct", "upstream-gpt", provider)

    _ask(messages_setup.client(), model="gpt-direct")

    sent = upstream.state.last().body
    assert sent["max_completion_tokens"] == 100
    assert "max_tokens" not in sent


# --- tools ---


def test_tool_calls_come_back_as_tool_use_blocks_with_parsed_input(gpt, upstream):
    message = gpt.messages.create(
        model="gpt",
        max_tokens=100,
        messages=[{"role": "user", "content": "weather in Utrecht?"}],
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )

    assert message.stop_reason == "tool_use"
    assert [(b.type, b.id, b.name, b.input) for b in message.content] == [
        ("tool_use", "call_1", "weather", {"city": "Utrecht"})
    ]
    sent = upstream.state.last().body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": WEATHER["input_schema"],
                "description": WEATHER["description"],
            },
        }
    ]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)


def test_tool_result_reaches_upstream_as_a_tool_message_after_the_assistants_tool_call(gpt, upstream):
    messages = [{"role": "user", "content": "weather in Utrecht?"}]
    first = gpt.messages.create(model="gpt", max_tokens=100, messages=messages, tools=[WEATHER])
    messages += [
        {"role": "assistant", "content": [block.to_dict() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": first.content[0].id, "content": "12 C and raining"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]

    gpt.messages.create(model="gpt", max_tokens=100, messages=messages, tools=[WEATHER])

    assert upstream.state.last().body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Utrecht"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C and raining"},
        {"role": "user", "content": "and tomorrow?"},
    ]


def test_streamed_tool_call_becomes_a_tool_use_block_with_input_json_deltas(messages_setup):
    messages_setup.serve("gpt", "upstream-gpt", messages_setup.openai)
    body = {
        "model": "gpt",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [WEATHER],
    }

    events = wire.events(wire.post(messages_setup.gateway, messages_setup.secret, body).text)

    assert [data for _, data in events][1:-2] == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '"Utrecht"}'},
        },
        {"type": "content_block_stop", "index": 0},
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_streamed_tool_use_accumulates_in_the_sdk_when_translated(gpt):
    with gpt.messages.stream(
        model="gpt", max_tokens=100, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]
    ) as stream:
        message = stream.get_final_message()

    assert message.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in message.content] == [("tool_use", "weather", {"city": "Utrecht"})]


# --- streaming ---


def test_stream_arrives_as_messages_events_in_anthropics_order(messages_setup, upstream):
    messages_setup.serve("gpt", "upstream-gpt", messages_setup.openai)
    body = {"model": "gpt", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "a b"}]}

    response = wire.post(messages_setup.gateway, messages_setup.secret, body)

    events = wire.events(response.text)
    assert response.headers["x-request-id"].startswith("req_")
    assert all(name == data["type"] for name, data in events)
    assert [data for _, data in events] == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_chatcmpl-mock",
                "type": "message",
                "role": "assistant",
                "model": "gpt",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 0,
                },
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "echo: "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "b "}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 11,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 7,
            },
        },
        {"type": "message_stop"},
    ]
    assert upstream.state.last().body["stream"] is True
    assert upstream.state.last().body["stream_options"] == {"include_usage": True}


def test_stream_arrives_through_the_sdk_with_text_and_corrected_usage(gpt):
    with gpt.messages.stream(model="gpt", max_tokens=50, messages=[{"role": "user", "content": "one two"}]) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()

    assert text == "echo: one two "
    assert message.model == "gpt"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)


def test_stream_ends_with_error_event_and_no_message_stop_when_upstream_dies_mid_stream(messages_setup):
    messages_setup.serve("gpt-dies", "mock-die-mid-stream", messages_setup.openai)
    body = {"model": "gpt-dies", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}

    events = wire.events(wire.post(messages_setup.gateway, messages_setup.secret, body).text)

    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert events[2][1]["delta"]["text"] == "partial "
    assert names[-1] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in names


def test_sdk_raises_when_the_translated_stream_breaks(messages_setup):
    messages_setup.serve("gpt-dies", "mock-die-mid-stream", messages_setup.openai)

    with pytest.raises(anthropic.APIStatusError) as caught:
        list(_ask(messages_setup.client(), model="gpt-dies", stream=True))

    assert caught.value.body["error"]["type"] == "api_error"


def test_upstream_stream_is_dropped_when_the_client_goes_away(messages_setup, upstream):
    messages_setup.serve("gpt-slow", "mock-slow-stream", messages_setup.openai)
    body = {"model": "gpt-slow", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}

    with httpx.stream(
        "POST", f"{messages_setup.gateway}/v1/messages", headers={"x-api-key": messages_setup.secret}, json=body
    ) as response:
        for line in response.iter_lines():
            if "content_block_delta" in line:
                break

    deadline = time.monotonic() + 5
    while not upstream.state.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.state.disconnects == ["mock-slow-stream"]
    assert upstream.state.completed_streams == []


# --- routing ---


def test_fallback_model_answers_in_messages_shape_when_the_anthropic_deployment_fails(messages_setup, upstream):
    messages_setup.serve("gpt", "upstream-gpt", messages_setup.openai)
    messages_setup.serve("claude-down", "claude-status-500", messages_setup.anthropic)
    Model.objects.filter(name="claude-down").update(fallbacks=["gpt"])

    message = _ask(messages_setup.client(), "still there?", model="claude-down")

    assert message.model == "gpt"
    assert message.content[0].text == "echo: still there?"


def test_stream_falls_back_before_anything_is_sent_when_the_first_deployment_is_overloaded(messages_setup):
    messages_setup.serve("gpt", "upstream-gpt", messages_setup.openai)
    messages_setup.serve("claude-busy", "claude-status-529", messages_setup.anthropic)
    Model.objects.filter(name="claude-busy").update(fallbacks=["gpt"])

    with messages_setup.client().messages.stream(
        model="claude-busy", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()

    assert (message.model, message.content[0].text) == ("gpt", "echo: hi ")
