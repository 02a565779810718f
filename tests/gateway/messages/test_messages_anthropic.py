"""/v1/messages in front of an Anthropic deployment: the official Anthropic SDK, the live gateway and a mock Anthropic.

The request is passed through with only `model` replaced; the answer comes back as Anthropic sent it,
naming the public model.
"""

import anthropic
import pytest

from tests.gateway.messages import wire
from tests.gateway.messages.conftest import UPSTREAM_SECRET
from tests.mock_anthropic import TOOL_USE_ID, stream_events

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "name": "weather",
    "description": "The weather in a city now",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _ask(client, content="hi", model="claude", **extra):
    return client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": content}], **extra)


# --- answers ---


def test_message_comes_back_as_anthropic_sent_it_but_for_the_model_when_not_streaming(claude):
    message = _ask(claude, "hello there")

    assert message.id == "msg_01MockAnthropicReply"
    assert message.model == "claude"
    assert [(b.type, b.text) for b in message.content] == [("text", "echo: hello there")]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert message.usage.service_tier == "standard"  # a field only Anthropic sends: passed through


def test_upstream_receives_the_request_unchanged_but_for_the_model_when_passed_through(claude, anthropic_upstream):
    request = {
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "tools": [WEATHER],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "disabled"},
    }

    claude.messages.create(model="claude", **request)

    sent = anthropic_upstream.state.last()
    assert sent.body == {"model": "claude-test", **request}
    assert sent.headers["x-api-key"] == UPSTREAM_SECRET
    assert "Authorization" not in sent.headers  # the virtual key stays at the gateway


def test_clients_anthropic_version_reaches_upstream_when_passed_through(messages_setup, anthropic_upstream):
    messages_setup.serve("claude", "claude-test", messages_setup.anthropic)
    client = messages_setup.client(default_headers={"anthropic-version": "2023-06-01"})

    _ask(client, extra_body={"temperature": 0.2})  # which version 2026-10-21 would refuse

    sent = anthropic_upstream.state.last()
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["temperature"] == 0.2


def test_upstream_refusal_under_the_clients_version_passes_through_when_it_names_the_field(claude):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(claude, extra_body={"temperature": 0.2})  # the SDK sends anthropic-version 2026-10-21

    assert caught.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "temperature: is not supported in API version 2026-10-21",
    }


def test_cache_usage_passes_through_when_upstream_reports_it(messages_setup):
    messages_setup.serve("claude-cached", "claude-cache", messages_setup.anthropic)

    usage = _ask(messages_setup.client(), model="claude-cached").usage

    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (11, 100, 20)


# --- tools ---


def test_tool_use_comes_back_and_tool_result_reaches_upstream_when_the_client_answers_it(claude, anthropic_upstream):
    messages = [{"role": "user", "content": "weather in Utrecht?"}]
    first = claude.messages.create(model="claude", max_tokens=100, messages=messages, tools=[WEATHER])

    assert first.stop_reason == "tool_use"
    call = first.content[1]
    assert (call.type, call.id, call.name, call.input) == ("tool_use", TOOL_USE_ID, "weather", {"city": "Utrecht"})

    messages += [
        {"role": "assistant", "content": [block.to_dict() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12 C and raining"}]},
    ]
    answer = claude.messages.create(model="claude", max_tokens=100, messages=messages, tools=[WEATHER])

    assert answer.content[0].text == "tool said: 12 C and raining"
    assert anthropic_upstream.state.last().body["messages"] == messages


def test_streamed_tool_use_accumulates_in_the_sdk_when_passed_through(claude):
    with claude.messages.stream(
        model="claude", max_tokens=100, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]
    ) as stream:
        message = stream.get_final_message()

    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"city": "Utrecht"}


# --- streaming ---


def test_stream_passes_every_event_through_unchanged_but_for_the_model(messages_setup, anthropic_upstream):
    messages_setup.serve("claude", "claude-test", messages_setup.anthropic)
    body = {"model": "claude", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "a b c"}]}

    response = wire.post(messages_setup.gateway, messages_setup.secret, body)

    expected = stream_events(body | {"model": "claude-test"})
    expected[0]["message"]["model"] = "claude"
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    assert wire.events(response.text) == [(event["type"], event) for event in expected]
    assert anthropic_upstream.state.last().body == body | {"model": "claude-test"}


def test_stream_arrives_through_the_sdk_with_text_and_usage(claude):
    with claude.messages.stream(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()

    assert text == "echo: one two three"
    assert message.model == "claude"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)


def test_stream_ends_with_error_event_and_no_message_stop_when_upstream_sends_error(messages_setup):
    messages_setup.serve("claude-breaks", "claude-error-event", messages_setup.anthropic)
    body = {"model": "claude-breaks", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}

    events = wire.events(wire.post(messages_setup.gateway, messages_setup.secret, body).text)

    assert [name for name, _ in events][:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    name, error = events[-1]
    assert name == "error"
    assert error["type"] == "error"
    assert error["error"]["type"] == "overloaded_error"
    assert "Overloaded" in error["error"]["message"]
    assert "message_stop" not in [name for name, _ in events]


def test_sdk_raises_when_the_stream_breaks_mid_way(messages_setup):
    messages_setup.serve("claude-breaks", "claude-error-event", messages_setup.anthropic)

    with pytest.raises(anthropic.APIStatusError) as caught:
        list(_ask(messages_setup.client(), model="claude-breaks", stream=True))

    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_stream_ends_with_error_event_when_upstream_ends_without_message_stop(messages_setup):
    messages_setup.serve("claude-cut", "claude-no-stop", messages_setup.anthropic)
    body = {"model": "claude-cut", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}

    events = wire.events(wire.post(messages_setup.gateway, messages_setup.secret, body).text)

    assert events[-2][0] == "message_delta"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "ended before it was complete" in events[-1][1]["error"]["message"]


# --- the async client ---


async def test_async_client_gets_an_answer_and_a_stream(claude, messages_setup):
    client = messages_setup.async_client()

    message = await client.messages.create(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "async"}]
    )
    async with client.messages.stream(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "streamed"}]
    ) as stream:
        final = await stream.get_final_message()

    assert message.content[0].text == "echo: async"
    assert final.content[0].text == "echo: streamed"
    assert final.model == "claude"
