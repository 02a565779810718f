"""Anthropic behind /v1/chat/completions: the official OpenAI SDK against the live gateway and a mock Anthropic."""

import httpx
import openai
import pytest

from gateway.models import Model
from tests.mock_anthropic import TOOL_USE_ID

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_SECRET = "sk-upstream-test-secret"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def claude(anthropic_setup):
    anthropic_setup.serve("claude", "claude-test")
    return anthropic_setup.client()


def _ask(client, model="claude", content="hi", **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **extra)


def _raw_stream(setup, model: str) -> list[str]:
    response = httpx.post(
        f"{setup.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {setup.secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert response.status_code == 200
    return [line for line in response.text.splitlines() if line.startswith("data: ")]


# --- answers ---


def test_chat_completion_comes_back_in_openai_shape_with_usage(claude, anthropic_upstream):
    completion = _ask(claude, content="hello there")

    assert completion.model == "claude"
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        11,
        7,
        18,
    )


def test_upstream_receives_a_messages_request_with_anthropic_headers(claude, anthropic_upstream):
    _ask(claude)

    sent = anthropic_upstream.state.last()
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == UPSTREAM_SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert sent.body == {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096}


def test_system_prompt_and_parameters_reach_upstream(claude, anthropic_upstream):
    claude.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
        max_completion_tokens=100,
        temperature=0.3,
        stop=["END"],
        user="user-42",
    )

    body = anthropic_upstream.state.last().body
    assert body["system"] == "Be brief."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert (body["max_tokens"], body["temperature"], body["stop_sequences"]) == (100, 0.3, ["END"])
    assert body["metadata"] == {"user_id": "user-42"}


def test_cached_tokens_count_as_prompt_tokens_and_are_reported(anthropic_setup):
    anthropic_setup.serve("claude-cached", "claude-cache")

    usage = _ask(anthropic_setup.client(), model="claude-cached").usage

    assert usage.prompt_tokens == 131
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.total_tokens == 138


def test_refusal_finishes_with_content_filter(anthropic_setup):
    anthropic_setup.serve("claude-refuses", "claude-refusal")

    assert _ask(anthropic_setup.client(), model="claude-refuses").choices[0].finish_reason == "content_filter"


def test_images_reach_upstream_as_base64_and_url_sources(claude, anthropic_upstream):
    _ask(
        claude,
        content=[
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
        ],
    )

    assert anthropic_upstream.state.last().body["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
    ]


# --- tools ---


def test_tool_use_answer_comes_back_as_tool_calls(claude, anthropic_upstream):
    completion = _ask(
        claude, content="weather in Utrecht?", tools=[WEATHER], tool_choice="required", parallel_tool_calls=False
    )

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me look that up."
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (TOOL_USE_ID, "function", "weather", '{"city":"Utrecht"}')
    ]
    body = anthropic_upstream.state.last().body
    assert body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_result_reaches_upstream_as_tool_result_block(claude, anthropic_upstream):
    messages = [{"role": "user", "content": "weather in Utrecht?"}]
    reply = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER]).choices[0].message
    messages += [
        reply.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": reply.tool_calls[0].id, "content": "12 C and raining"},
    ]

    answer = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])

    assert answer.choices[0].message.content == "tool said: 12 C and raining"
    sent = anthropic_upstream.state.last().body["messages"]
    assert sent[1]["content"][1] == {
        "type": "tool_use",
        "id": TOOL_USE_ID,
        "name": "weather",
        "input": {"city": "Utrecht"},
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": TOOL_USE_ID, "content": "12 C and raining"}],
    }


def test_streamed_tool_use_arrives_as_tool_call_deltas(claude):
    chunks = list(_ask(claude, content="weather?", tools=[WEATHER], stream=True))

    calls = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert (calls[0].id, calls[0].function.name) == (TOOL_USE_ID, "weather")
    assert {call.index for call in calls} == {0}
    assert "".join(call.function.arguments or "" for call in calls) == '{"city": "Utrecht"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# --- streaming ---


def test_stream_arrives_in_openai_chunks_without_usage_when_not_asked(claude, anthropic_upstream):
    chunks = list(_ask(claude, content="one two three", stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: one two three"
    assert all(c.model == "claude" for c in chunks)
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert anthropic_upstream.state.last().body["stream"] is True
    assert "stream_options" not in anthropic_upstream.state.last().body


def test_stream_ends_with_usage_including_input_tokens_when_asked(anthropic_setup):
    anthropic_setup.serve("claude-cached", "claude-cache")

    chunks = list(
        _ask(anthropic_setup.client(), model="claude-cached", stream=True, stream_options={"include_usage": True})
    )

    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 131  # 11 input + 100 cache read + 20 cache creation
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 100
    assert chunks[-1].usage.completion_tokens == 7
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_stream_ends_with_error_event_and_no_done_when_upstream_sends_error(anthropic_setup):
    anthropic_setup.serve("claude-breaks", "claude-error-event")

    events = _raw_stream(anthropic_setup, "claude-breaks")

    assert events[-1].startswith('data: {"error"')
    assert "Overloaded" in events[-1]
    assert "data: [DONE]" not in events
    assert '"content":"echo: "' in events[1]


def test_stream_ends_with_error_event_when_upstream_ends_without_message_stop(anthropic_setup):
    anthropic_setup.serve("claude-cut", "claude-no-stop")

    events = _raw_stream(anthropic_setup, "claude-cut")

    assert events[-1].startswith('data: {"error"')
    assert "ended before it was complete" in events[-1]
    assert "data: [DONE]" not in events


def test_openai_sdk_raises_when_stream_breaks(anthropic_setup):
    anthropic_setup.serve("claude-breaks", "claude-error-event")

    with pytest.raises(openai.APIError, match="Overloaded"):
        list(_ask(anthropic_setup.client(), model="claude-breaks", stream=True))


# --- errors ---


def _fails(setup, status: int, *, stream: bool = False) -> openai.APIStatusError:
    setup.serve(f"claude-{status}", f"claude-status-{status}")
    with pytest.raises(openai.APIStatusError) as caught:
        result = _ask(setup.client(), model=f"claude-{status}", stream=stream)
        list(result) if stream else None
    return caught.value


def test_upstream_400_passes_through_with_its_message(anthropic_setup):
    error = _fails(anthropic_setup, 400)

    assert error.status_code == 400
    assert error.body["message"] == "mock anthropic error 400"


def test_upstream_401_becomes_502_without_echoing_the_upstream_text(anthropic_setup):
    error = _fails(anthropic_setup, 401)

    assert error.status_code == 502
    assert error.code == "upstream_auth_failed"
    assert UPSTREAM_SECRET not in error.response.text
    assert "anthropic-mock" in error.message


def test_upstream_404_stays_404(anthropic_setup):
    assert _fails(anthropic_setup, 404).status_code == 404


def test_upstream_429_keeps_retry_after(anthropic_setup):
    error = _fails(anthropic_setup, 429, stream=True)

    assert isinstance(error, openai.RateLimitError)
    assert error.response.headers["retry-after"] == "7"


def test_upstream_500_becomes_502(anthropic_setup):
    assert _fails(anthropic_setup, 500).status_code == 502


def test_upstream_529_overloaded_becomes_503_with_retry_after(anthropic_setup):
    error = _fails(anthropic_setup, 529)

    assert error.status_code == 503
    assert error.code == "upstream_overloaded"
    assert error.response.headers["retry-after"] == "3"


def test_untranslatable_parameter_is_a_400_before_any_upstream_call(claude, anthropic_upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(claude, n=2)

    assert caught.value.param == "n"
    assert anthropic_upstream.state.requests == []


def test_embeddings_are_refused_as_unsupported(claude, anthropic_upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        claude.embeddings.create(model="claude", input="hi")

    assert caught.value.code == "unsupported_operation"
    assert "offers no embeddings" in caught.value.message
    assert anthropic_upstream.state.requests == []


def test_models_default_max_tokens_is_sent_when_request_sets_none(anthropic_setup, anthropic_upstream):
    name = anthropic_setup.serve("claude-short", "claude-test")
    Model.objects.filter(name=name).update(default_max_tokens=256)

    anthropic_setup.client().chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])

    assert anthropic_upstream.state.last().body["max_tokens"] == 256
