"""The mock speaks Anthropic's wire format: the official `anthropic` SDK reads it without complaint."""

import anthropic
import pytest

from tests.mock_anthropic import TOOL_USE_ID

TOOLS = [{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture
def sdk(anthropic_upstream):
    return anthropic.Anthropic(base_url=anthropic_upstream.url, api_key="sk-ant-test", max_retries=0)


def _messages(text: str = "hello") -> list:
    return [{"role": "user", "content": text}]


def test_sdk_reads_a_text_message(sdk):
    message = sdk.messages.create(model="claude-cache", max_tokens=10, messages=_messages())

    assert message.content[0].text == "echo: hello"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (11, 100)


def test_sdk_accumulates_a_streamed_tool_use(sdk):
    with sdk.messages.stream(model="claude-test", max_tokens=10, messages=_messages(), tools=TOOLS) as stream:
        message = stream.get_final_message()

    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert (message.content[1].id, message.content[1].input) == (TOOL_USE_ID, {"city": "Utrecht"})
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 7


def test_sdk_raises_on_error_event(sdk):
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        sdk.messages.stream(model="claude-error-event", max_tokens=10, messages=_messages()) as stream,
    ):
        stream.get_final_message()


def test_sdk_sees_overloaded_as_529(sdk):
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk.messages.create(model="claude-status-529", max_tokens=10, messages=_messages())

    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_mock_refuses_what_anthropic_refuses(sdk):
    with pytest.raises(anthropic.BadRequestError, match="roles must alternate"):
        sdk.messages.create(
            model="claude-test",
            max_tokens=10,
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        )
