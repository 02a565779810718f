"""LangChain's ChatOpenAI and ChatAnthropic against the live gateway and its mock upstreams.

Both real clients, unpatched, over the network: each calls a model served by the mock OpenAI
upstream (`upstream-gpt`) and one served by the mock Anthropic (`claude-test`), so every pairing
of inbound shape and upstream is crossed once. Each call leaves a request-log row with its usage.
"""

from __future__ import annotations

from importlib.metadata import version

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from gateway.models import RequestLog
from tests.clients.conftest import say_version
from tests.conftest import _drain_request_logs, logged
from tests.gateway.messages.conftest import MessagesSetup
from tests.mock_anthropic import TOOL_USE_ID
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = ("langchain-openai", "langchain-anthropic", "langchain-core", "openai", "anthropic")
RESULT = "12 C and raining"


class Weather(BaseModel):
    """The weather in a city now."""

    city: str = Field(description="The city, e.g. Utrecht")


@pytest.fixture(scope="module", autouse=True)
def _client_versions(pytestconfig: pytest.Config) -> None:
    say_version(pytestconfig, "langchain clients: " + ", ".join(f"{name} {version(name)}" for name in CLIENTS))


@pytest.fixture(autouse=True)
def _fresh_log(messages_setup: MessagesSetup) -> None:
    _drain_request_logs()


@pytest.fixture
def served(messages_setup: MessagesSetup) -> MessagesSetup:
    """`gpt` served by the mock OpenAI upstream, `claude` by the mock Anthropic."""
    messages_setup.serve("gpt", "upstream-gpt", messages_setup.openai)
    messages_setup.serve("claude", "claude-test", messages_setup.anthropic)
    return messages_setup


def chat_openai(setup: MessagesSetup, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=f"{setup.gateway}/v1",
        api_key=setup.secret,  # type: ignore[arg-type]
        max_retries=0,
        stream_usage=True,
    )


def chat_anthropic(setup: MessagesSetup, model: str) -> ChatAnthropic:
    return ChatAnthropic(  # type: ignore[call-arg]
        model=model, base_url=setup.gateway, api_key=setup.secret, max_retries=0, max_tokens=100
    )


def streamed(llm: ChatOpenAI | ChatAnthropic, prompt: str) -> AIMessageChunk:
    """The stream's chunks added up, as LangChain's callers do."""
    total: AIMessageChunk | None = None
    for chunk in llm.stream(prompt):
        total = chunk if total is None else total + chunk
    assert total is not None
    return total


def tool_round_trip(llm: ChatOpenAI | ChatAnthropic) -> tuple[AIMessage, AIMessage]:
    """Ask with the `Weather` tool bound, answer its call with `RESULT`; the call and the final answer."""
    tooled = llm.bind_tools([Weather])
    conversation: list[BaseMessage] = [HumanMessage("weather in Utrecht?")]
    call = tooled.invoke(conversation)
    assert isinstance(call, AIMessage)
    conversation += [call, ToolMessage(RESULT, tool_call_id=call.tool_calls[0]["id"])]
    answer = tooled.invoke(conversation)
    assert isinstance(answer, AIMessage)
    return call, answer


def after_the_question(*, arguments: str) -> list[dict]:
    """What the mock OpenAI receives after the question: the assistant's call, then the tool's result."""
    call = {"id": "call_1", "type": "function", "function": {"name": "Weather", "arguments": arguments}}
    return [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
    ]


def assert_rows(rows: list[RequestLog], *, endpoint: str, model: str, provider: str, streams: list[bool]) -> None:
    """One row per call, in order: answered, with usage counted (not estimated) for this project."""
    assert [row.stream for row in rows] == streams
    for row in rows:
        assert (row.endpoint, row.model, row.answered_model, row.provider) == (endpoint, model, model, provider)
        assert (row.status_code, row.error_code, row.attempts) == (200, "", [])
        assert (row.input_tokens > 0, row.output_tokens > 0, row.usage_estimated) == (True, True, False)
        assert row.project_id is not None and row.key_id is not None and row.key_prefix


# --- ChatOpenAI: /v1/chat/completions ---


def test_chat_openai_invokes_a_model_served_by_openai(served: MessagesSetup) -> None:
    reply = chat_openai(served, "gpt").invoke("hello there")

    assert reply.content == "echo: hello there"
    assert reply.usage_metadata is not None
    assert (reply.usage_metadata["input_tokens"], reply.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="chat/completions", model="gpt", provider="openai-mock", streams=[False])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_openai_streams_with_usage_from_a_model_served_by_openai(served: MessagesSetup) -> None:
    total = streamed(chat_openai(served, "gpt"), "hello there")

    assert total.content == "echo: hello there "  # the mock sends each word with a space after it
    assert total.usage_metadata is not None
    assert (total.usage_metadata["input_tokens"], total.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="chat/completions", model="gpt", provider="openai-mock", streams=[True])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_openai_tool_call_and_result_with_a_model_served_by_openai(
    served: MessagesSetup, upstream: MockUpstream
) -> None:
    call, answer = tool_round_trip(chat_openai(served, "gpt"))

    assert [(c["name"], c["args"], c["id"]) for c in call.tool_calls] == [("Weather", {"city": "Utrecht"}, "call_1")]
    # The mock OpenAI upstream calls the first tool whenever tools are offered, so the proof that
    # the result went through is what it received: the call, then the result as a tool message.
    assert upstream.state.last().body["messages"][1:] == after_the_question(arguments='{"city": "Utrecht"}')
    assert answer.tool_calls[0]["name"] == "Weather"
    assert_rows(logged(2), endpoint="chat/completions", model="gpt", provider="openai-mock", streams=[False, False])


def test_chat_openai_invokes_a_model_served_by_anthropic(served: MessagesSetup) -> None:
    reply = chat_openai(served, "claude").invoke("hello there")

    assert reply.content == "echo: hello there"
    assert reply.usage_metadata is not None
    assert (reply.usage_metadata["input_tokens"], reply.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="chat/completions", model="claude", provider="anthropic-mock", streams=[False])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_openai_streams_from_a_model_served_by_anthropic(served: MessagesSetup) -> None:
    total = streamed(chat_openai(served, "claude"), "hello there")

    assert total.content == "echo: hello there"
    assert total.usage_metadata is not None
    assert (total.usage_metadata["input_tokens"], total.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="chat/completions", model="claude", provider="anthropic-mock", streams=[True])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_openai_tool_call_and_result_with_a_model_served_by_anthropic(served: MessagesSetup) -> None:
    call, answer = tool_round_trip(chat_openai(served, "claude"))

    assert call.content == "Let me look that up."
    assert [(c["name"], c["args"], c["id"]) for c in call.tool_calls] == [("Weather", {"city": "Utrecht"}, TOOL_USE_ID)]
    assert answer.content == f"tool said: {RESULT}"
    assert answer.tool_calls == []
    assert_rows(
        logged(2), endpoint="chat/completions", model="claude", provider="anthropic-mock", streams=[False, False]
    )


# --- ChatAnthropic: /v1/messages ---


def test_chat_anthropic_invokes_a_model_served_by_anthropic(served: MessagesSetup) -> None:
    reply = chat_anthropic(served, "claude").invoke("hello there")

    assert reply.content == "echo: hello there"
    assert reply.usage_metadata is not None
    assert (reply.usage_metadata["input_tokens"], reply.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="messages", model="claude", provider="anthropic-mock", streams=[False])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_anthropic_streams_with_usage_from_a_model_served_by_anthropic(served: MessagesSetup) -> None:
    total = streamed(chat_anthropic(served, "claude"), "hello there")

    assert total.content == "echo: hello there"
    assert total.usage_metadata is not None
    # LangChain reads usage from `message_delta` alone (Anthropic's cumulative counts), passed through.
    assert (total.usage_metadata["input_tokens"], total.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="messages", model="claude", provider="anthropic-mock", streams=[True])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_anthropic_tool_call_and_result_with_a_model_served_by_anthropic(served: MessagesSetup) -> None:
    call, answer = tool_round_trip(chat_anthropic(served, "claude"))

    assert [(c["name"], c["args"], c["id"]) for c in call.tool_calls] == [("Weather", {"city": "Utrecht"}, TOOL_USE_ID)]
    assert answer.content == f"tool said: {RESULT}"
    assert_rows(logged(2), endpoint="messages", model="claude", provider="anthropic-mock", streams=[False, False])


def test_chat_anthropic_invokes_a_model_served_by_openai(served: MessagesSetup) -> None:
    reply = chat_anthropic(served, "gpt").invoke("hello there")

    assert reply.content == "echo: hello there"
    assert reply.usage_metadata is not None
    assert (reply.usage_metadata["input_tokens"], reply.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="messages", model="gpt", provider="openai-mock", streams=[False])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_anthropic_streams_with_usage_from_a_model_served_by_openai(served: MessagesSetup) -> None:
    total = streamed(chat_anthropic(served, "gpt"), "hello there")

    assert total.content == "echo: hello there "  # the mock OpenAI's words, each with a space after it
    assert total.usage_metadata is not None
    assert (total.usage_metadata["input_tokens"], total.usage_metadata["output_tokens"]) == (11, 7)
    [row] = logged(1)
    assert_rows([row], endpoint="messages", model="gpt", provider="openai-mock", streams=[True])
    assert (row.input_tokens, row.output_tokens) == (11, 7)


def test_chat_anthropic_tool_call_and_result_with_a_model_served_by_openai(
    served: MessagesSetup, upstream: MockUpstream
) -> None:
    call, answer = tool_round_trip(chat_anthropic(served, "gpt"))

    assert [(c["name"], c["args"], c["id"]) for c in call.tool_calls] == [("Weather", {"city": "Utrecht"}, "call_1")]
    # As with ChatOpenAI: the mock OpenAI calls the tool again, so check what it was sent.
    assert upstream.state.last().body["messages"][1:] == after_the_question(arguments='{"city":"Utrecht"}')
    assert answer.tool_calls[0]["name"] == "Weather"
    assert_rows(logged(2), endpoint="messages", model="gpt", provider="openai-mock", streams=[False, False])


def test_every_call_is_logged_for_the_callers_key_and_user_agent(served: MessagesSetup) -> None:
    chat_openai(served, "gpt").invoke("one")
    chat_anthropic(served, "claude").invoke("two")

    rows = logged(2)
    assert {(row.endpoint, row.model, row.user_agent) for row in rows} == {
        ("chat/completions", "gpt", f"OpenAI/Python {version('openai')}"),
        ("messages", "claude", f"langchain-anthropic/{version('langchain-anthropic')}"),
    }
    assert {row.project_id for row in rows} == {served.project.id}
    assert {row.key_prefix for row in rows} == {served.secret[: len(rows[0].key_prefix)]}
