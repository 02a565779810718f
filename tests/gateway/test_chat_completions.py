"""POST /v1/chat/completions, driven by the official openai SDK against a live gateway."""

import asyncio

import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_gateway, gateway_setup):
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


def test_answer_names_public_model_when_upstream_answers(client, upstream):
    completion = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hello"}])

    assert completion.model == "gpt-test"
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.usage.total_tokens == 18
    sent = upstream.state.last()
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "upstream-gpt"
    assert sent.headers["Authorization"] == "Bearer sk-upstream-test-secret"


def test_every_openai_parameter_passes_through_unchanged(client, upstream):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather?"}],
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        n=2,
        seed=42,
        logprobs=True,
        top_logprobs=2,
        temperature=0.3,
        max_tokens=50,
        stop=["\n\n"],
        user="end-user-7",
        metadata={"ticket": "T-1"},
        extra_body={"vendor_specific": {"x": 1}},
    )

    body = upstream.state.last().body
    assert body["tools"] == tools
    assert body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}
    assert (body["n"], body["seed"], body["logprobs"], body["top_logprobs"]) == (2, 42, True, 2)
    assert (body["temperature"], body["max_tokens"], body["stop"], body["user"]) == (0.3, 50, ["\n\n"], "end-user-7")
    assert body["metadata"] == {"ticket": "T-1"}
    assert body["vendor_specific"] == {"x": 1}
    assert body["messages"][0] == {"role": "system", "content": "be brief"}


def test_tool_calls_come_back_when_tools_are_offered(client):
    completion = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "weather in Utrecht?"}],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "weather"
    assert choice.message.tool_calls[0].function.arguments == '{"city": "Utrecht"}'


def test_async_client_gets_the_same_answer(live_gateway, gateway_setup):
    async def ask() -> str:
        async with openai.AsyncOpenAI(
            base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0
        ) as client:
            results = await asyncio.gather(
                *(
                    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": f"n{i}"}])
                    for i in range(5)
                )
            )
        return sorted(r.choices[0].message.content for r in results)

    assert asyncio.run(ask()) == [f"echo: n{i}" for i in range(5)]


@pytest.mark.parametrize("header", ["Authorization", "api-key", "x-api-key"])
def test_key_is_accepted_when_sent_in_header(live_gateway, gateway_setup, header):
    value = f"Bearer {gateway_setup.secret}" if header == "Authorization" else gateway_setup.secret
    client = openai.OpenAI(
        base_url=f"{live_gateway}/v1", api_key="unused", default_headers={header: value}, max_retries=0
    )
    if header != "Authorization":
        client = client.with_options(default_headers={header: value, "Authorization": ""})

    completion = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == "echo: hi"


def test_response_carries_request_id_when_successful(client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )

    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().model == "gpt-test"
