"""The official `openai` SDK against /v1/responses, through each provider kind: passed through to
the upstream's /responses (openai, azure_openai) or translated to chat completions and back
(anthropic via Messages, openai_compatible). Text, both ways of streaming, function calling
across two turns, JSON-schema output; every answer names the public model."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.gateway.responses.conftest import KINDS, PASSED_THROUGH, TRANSLATED
from tests.mock_anthropic import TOOL_INPUT_FRAGMENTS

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CITY = {"openai": "Utrecht", "azure_openai": "Utrecht", "openai_compatible": "Utrecht"}
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("kind", KINDS)
def test_text_answer_names_the_public_model_and_reports_usage(responses, kind):
    model = responses.serve(kind)

    reply = responses.client().responses.create(model=model, input="hello there", instructions="Be brief.")

    assert reply.object == "response" and reply.status == "completed"
    assert reply.model == model
    assert reply.output_text == "echo: hello there"
    assert reply.usage.input_tokens == 11 and reply.usage.output_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


@pytest.mark.parametrize("kind", PASSED_THROUGH)
def test_passthrough_replaces_only_the_model_and_asks_the_upstream_to_store_nothing(responses, kind):
    model = responses.serve(kind, upstream_model="deployment-7")

    responses.client().responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        instructions="Be brief.",
        max_output_tokens=64,
        temperature=0.2,
        top_p=0.9,
        metadata={"ticket": "T-1"},
        reasoning={"effort": "low"},
        store=True,
    )

    sent = responses.sent(kind)
    assert sent["model"] == "deployment-7" and sent["store"] is False
    assert sent["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    assert (sent["instructions"], sent["max_output_tokens"], sent["temperature"], sent["top_p"]) == (
        "Be brief.",
        64,
        0.2,
        0.9,
    )
    assert sent["metadata"] == {"ticket": "T-1"} and sent["reasoning"] == {"effort": "low"}


def test_azure_is_asked_at_its_responses_address_with_a_version_that_serves_it(responses):
    model = responses.serve("azure_openai", upstream_model="my-gpt-deployment")

    responses.client().responses.create(model=model, input="hi")

    recorded = responses.upstreams["azure_openai"].state.last()
    assert recorded.path == "/openai/responses?api-version=2025-04-01-preview"
    assert recorded.headers["api-key"] == "sk-upstream-test-secret" and "Authorization" not in recorded.headers
    assert recorded.body["model"] == "my-gpt-deployment"


def test_azure_v1_surface_is_asked_at_its_v1_responses_address(responses, azure_upstream):
    provider = responses.providers["azure_openai"]
    provider.base_url = f"{azure_upstream.url}/openai/v1"
    provider.save()
    model = responses.serve("azure_openai", upstream_model="my-gpt-deployment")

    reply = responses.client().responses.create(model=model, input="hi")

    assert azure_upstream.state.last().path == "/openai/v1/responses"
    assert reply.output_text == "echo: hi"


def test_openai_compatible_is_sent_a_chat_request_not_the_responses_api(responses, upstream):
    model = responses.serve("openai_compatible")

    reply = responses.client().responses.create(
        model=model, input="hi", instructions="Be brief.", max_output_tokens=50, temperature=0.5, metadata={"a": "b"}
    )

    recorded = upstream.state.last()
    assert recorded.path == "/v1/chat/completions"
    assert recorded.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert (recorded.body["max_tokens"], recorded.body["temperature"]) == (50, 0.5)
    assert "metadata" not in recorded.body and "store" not in recorded.body and "input" not in recorded.body
    assert reply.output_text == "echo: hi" and reply.id.startswith("resp_")


def test_translation_names_what_it_left_out_in_a_header(responses):
    model = responses.serve("openai_compatible")

    raw = responses.client().responses.with_raw_response.create(
        model=model, input="hi", metadata={"a": "b"}, include=["message.output_text.logprobs"]
    )

    assert raw.headers["x-symbiosis-dropped"] == "include, metadata"


def test_anthropic_is_sent_a_messages_request(responses, anthropic_upstream):
    model = responses.serve("anthropic")

    responses.client().responses.create(model=model, input="hi", instructions="Be brief.", max_output_tokens=99)

    recorded = anthropic_upstream.state.last()
    assert recorded.path.startswith("/v1/messages")
    assert recorded.body["system"] == "Be brief." and recorded.body["max_tokens"] == 99
    assert recorded.body["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("kind", KINDS)
def test_stream_helper_delivers_text_events_and_a_final_response_with_usage(responses, kind):
    model = responses.serve(kind)

    with responses.client().responses.stream(model=model, input="hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert expected in kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == final.output_text
    assert final.output_text.rstrip() == "echo: hello there"  # the OpenAI-compatible mock streams a space per word
    assert final.model == model and events[0].response.model == model
    assert final.usage.input_tokens == 11 and final.usage.output_tokens > 0


@pytest.mark.parametrize("kind", KINDS)
def test_create_with_stream_true_yields_typed_events(responses, kind):
    model = responses.serve(kind)

    events = list(responses.client().responses.create(model=model, input="hi", stream=True))

    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    done = next(event for event in events if event.type == "response.output_text.done")
    assert done.text.rstrip() == "echo: hi"
    assert events[-1].response.output[0].content[0].text == done.text
    assert events[-1].response.usage.input_tokens == 11


def _expected_call_arguments(kind: str) -> dict:
    return orjson.loads("".join(TOOL_INPUT_FRAGMENTS)) if kind == "anthropic" else {"city": CITY[kind]}


@pytest.mark.parametrize("kind", KINDS)
def test_function_calling_across_two_turns(responses, kind):
    model = responses.serve(kind)
    client = responses.client()
    question = [{"role": "user", "content": "What is the weather in Utrecht?"}]

    first = client.responses.create(model=model, input=question, tools=[WEATHER], tool_choice="auto")

    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == _expected_call_arguments(kind)
    assert call.call_id

    second_turn = [
        *question,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 degrees"},
    ]
    # The OpenAI-compatible mock calls a tool whenever tools are offered: ask it without them.
    tools = [] if kind == "openai_compatible" else [WEATHER]
    second = client.responses.create(model=model, input=second_turn, tools=tools)

    assert second.status == "completed" and second.model == model
    if kind == "openai_compatible":
        sent = responses.sent(kind)["messages"]
        assert sent[1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments},
                }
            ],
        }
        assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 degrees"}
    else:
        assert "sunny, 21 degrees" in second.output_text


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_function_call_arrives_as_argument_events(responses, kind):
    model = responses.serve(kind)

    with responses.client().responses.stream(model=model, input="weather?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    [call] = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments) == _expected_call_arguments(kind)
    done = next(event for event in events if event.type == "response.function_call_arguments.done")
    assert done.arguments == call.arguments


@pytest.mark.parametrize("kind", PASSED_THROUGH)
def test_json_schema_output_is_parsed_by_the_sdk(responses, kind):
    model = responses.serve(kind)
    text = {"format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}}

    reply = responses.client().responses.create(model=model, input="Who?", text=text)

    assert json.loads(reply.output_text) == {"name": "mock", "age": 1}
    assert responses.sent(kind)["text"] == text


@pytest.mark.parametrize("kind", TRANSLATED)
def test_json_schema_output_is_asked_of_translated_deployments(responses, kind):
    model = responses.serve(kind)
    text = {"format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}}

    responses.client().responses.create(model=model, input="Who?", text=text)

    sent = responses.sent(kind)
    if kind == "openai_compatible":
        assert sent["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": SCHEMA, "strict": True},
        }
    else:  # Anthropic: an instruction in the system prompt (gateway/proxy/translate/chat_to_messages.py)
        assert "JSON Schema (named 'person')" in sent["system"] and '"age"' in sent["system"]


def test_images_are_translated_to_image_parts(responses):
    model = responses.serve("anthropic")
    pixel = "data:image/png;base64,iVBORw0KGgo="

    responses.client().responses.create(
        model=model,
        input=[
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "what is it?"}, {"type": "input_image", "image_url": pixel}],
            }
        ],
    )

    [message] = responses.sent("anthropic")["messages"]
    assert message["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }


def test_reasoning_effort_reaches_a_reasoning_model_on_an_openai_compatible_server(responses, upstream):
    model = responses.serve("openai_compatible", upstream_model="gpt-oss-120b")

    responses.client().responses.create(model=model, input="hi", reasoning={"effort": "high"})

    assert upstream.state.last().body["reasoning_effort"] == "high"


def test_reasoning_is_dropped_and_named_for_a_model_that_does_not_reason(responses, upstream):
    model = responses.serve("openai_compatible", upstream_model="llama-3-70b")

    raw = responses.client().responses.with_raw_response.create(model=model, input="hi", reasoning={"effort": "high"})

    assert "reasoning_effort" not in upstream.state.last().body
    assert raw.headers["x-symbiosis-dropped"] == "reasoning"
