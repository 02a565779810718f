"""The OpenAI Agents SDK (`openai-agents`), pointed at the gateway, runs a tool-using agent to
completion: the model calls a function tool, the SDK runs it and sends its output back, and the
model answers with it. Through a passthrough (openai) and a translation (Anthropic via Messages),
run to completion and streamed; tracing is off (it would call OpenAI's servers)."""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled

from tests.conftest import logged

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = {"openai": "the tool said: sunny in Utrecht", "anthropic": "tool said: sunny in Utrecht"}


def _agent(responses, kind: str, looked_up: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        looked_up.append(city)
        return f"sunny in {city}"

    model = OpenAIResponsesModel(model=responses.serve(kind, priced=True), openai_client=responses.async_client())
    return Agent(name="forecaster", instructions="Answer with the weather.", tools=[get_weather], model=model)


@pytest.fixture(autouse=True)
def _no_tracing():
    set_tracing_disabled(True)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_agent_calls_its_tool_and_answers_with_the_result(responses, kind):
    looked_up: list[str] = []
    agent = _agent(responses, kind, looked_up)

    result = asyncio.run(
        Runner.run(agent, "What is the weather in Utrecht?", run_config=RunConfig(tracing_disabled=True))
    )

    assert looked_up == ["Utrecht"]
    assert result.final_output == ANSWERS[kind]
    rows = logged(2)
    assert [(r.endpoint, r.status_code, r.model) for r in rows] == [("responses", 200, agent.model.model)] * 2
    sent = responses.sent(kind)
    if kind == "openai":  # the SDK's second turn: the call and its output, passed through as they came
        types = [item.get("type") for item in sent["input"]]
        assert types[-2:] == ["function_call", "function_call_output"]
        assert sent["input"][-1]["output"] == "sunny in Utrecht"
    else:  # translated to a tool_use and its tool_result
        assert sent["messages"][-1]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_streamed_agent_run_completes_with_the_tool_result(responses, kind):
    looked_up: list[str] = []
    agent = _agent(responses, kind, looked_up)

    async def run() -> tuple[str, list[str]]:
        streamed = Runner.run_streamed(
            agent, "What is the weather in Utrecht?", run_config=RunConfig(tracing_disabled=True)
        )
        kinds = [event.type async for event in streamed.stream_events()]
        return streamed.final_output, kinds

    final, kinds = asyncio.run(run())

    assert looked_up == ["Utrecht"] and final == ANSWERS[kind]
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    rows = logged(2)
    assert [(r.stream, r.status_code) for r in rows] == [(True, 200)] * 2
