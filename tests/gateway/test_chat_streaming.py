"""Streaming chat completions: chunk by chunk, usage handling, disconnects, broken upstreams."""

import socket
import time

import httpx
import openai
import pytest

from tests.factories import DeploymentFactory, ModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_gateway, gateway_setup):
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


def _add_model(setup, name: str, upstream_model: str) -> None:
    provider = setup.project.allowed_models.first().deployments.first().provider
    DeploymentFactory(model=ModelFactory(name=name), provider=provider, upstream_model=upstream_model)
    setup.project.allowed_models.add(*type(setup.project.allowed_models.first()).objects.filter(name=name))


def test_stream_relays_every_chunk_and_hides_usage_when_client_did_not_ask(client, upstream):
    stream = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three "
    assert all(c.model == "gpt-test" for c in chunks)
    assert all(c.choices for c in chunks), "the usage-only chunk must not reach a client that did not ask"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert upstream.state.last().body["stream_options"] == {"include_usage": True}


def test_stream_ends_with_usage_chunk_when_client_asked(client, upstream):
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 11
    assert chunks[-1].usage.completion_tokens == 7


def test_stream_carries_tool_call_deltas(client):
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            stream=True,
        )
    )

    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert arguments == '{"city": "Utrecht"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_async_stream_arrives_chunk_by_chunk(live_gateway, gateway_setup):
    async with openai.AsyncOpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "a b c d"}], stream=True
        )
        contents = [c.choices[0].delta.content async for c in stream if c.choices]

    assert contents[1:] == ["echo: ", "a ", "b ", "c ", "d ", None]


def test_stream_is_not_buffered_when_upstream_is_slow(live_gateway, gateway_setup):
    _add_model(gateway_setup, "slow", "mock-slow-stream")
    started = time.monotonic()
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{live_gateway}/v1/chat/completions",
            headers={"Authorization": f"Bearer {gateway_setup.secret}"},
            json={"model": "slow", "messages": [{"role": "user", "content": "x"}], "stream": True},
        ) as response,
    ):
        lines = response.iter_lines()
        first_content = next(line for line in lines if "tick0" in line)
        elapsed = time.monotonic() - started

    assert "tick0" in first_content
    assert elapsed < 2.0, "the first chunk must arrive long before the 10 s stream ends"


def test_upstream_call_is_cancelled_when_client_disconnects(live_gateway, gateway_setup, upstream):
    _add_model(gateway_setup, "slow", "mock-slow-stream")
    payload = b'{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {gateway_setup.secret}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    port = int(live_gateway.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while b"tick2" not in received:
            received += sock.recv(65536)
    # The client is gone; the gateway must drop the upstream connection, long before the 10 s stream ends.
    deadline = time.monotonic() + 5
    while not upstream.state.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)

    assert upstream.state.disconnects == ["mock-slow-stream"]
    assert "mock-slow-stream" not in upstream.state.completed_streams


def test_stream_ends_with_error_event_and_no_done_when_upstream_dies(client, gateway_setup):
    _add_model(gateway_setup, "dies", "mock-die-mid-stream")
    received = []

    with pytest.raises(openai.APIError, match="broke mid-stream"):
        for chunk in client.chat.completions.create(
            model="dies", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received.append(chunk)

    assert [c.choices[0].delta.content for c in received] == ["", "partial "]


def test_stream_reports_error_when_upstream_ends_without_done(live_gateway, gateway_setup):
    _add_model(gateway_setup, "nodone", "mock-no-done")

    response = httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway_setup.secret}"},
        json={"model": "nodone", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )

    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1].startswith('data: {"error"')
    assert "data: [DONE]" not in events


def test_stream_error_before_first_byte_is_a_plain_error_response(client, gateway_setup):
    _add_model(gateway_setup, "limited", "mock-status-429")

    with pytest.raises(openai.RateLimitError) as caught:
        list(client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "x"}], stream=True))

    assert caught.value.response.headers["retry-after"] == "7"
