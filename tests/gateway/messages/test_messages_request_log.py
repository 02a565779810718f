"""/v1/messages leaves a request-log row like the OpenAI endpoints, with Anthropic's usage counted in full."""

import anthropic
import pytest

from tests.conftest import _drain_request_logs, logged

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_log(messages_setup):
    _drain_request_logs()


def _ask(client, model, **extra):
    return client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}], **extra)


def test_row_counts_input_output_tokens_when_passed_through(claude):
    message = _ask(claude, "claude")

    [row] = logged(1)
    assert (row.endpoint, row.model, row.status_code, row.stream) == ("messages", "claude", 200, False)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
        False,
    )


def test_row_counts_usage_from_the_stream_when_translated(gpt):
    with gpt.messages.stream(model="gpt", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_message()

    [row] = logged(1)
    assert (row.stream, row.answered_model, row.provider) == (True, "gpt", "openai-mock")
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (11, 7, False)
    assert final.usage.output_tokens == 7


def test_row_counts_usage_from_the_stream_when_passed_through(claude):
    with claude.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()

    [row] = logged(1)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
        False,
    )


def test_refused_request_is_logged_in_the_callers_shape(messages_setup):
    client = anthropic.Anthropic(base_url=messages_setup.gateway, api_key="sk-sym-wrong", max_retries=0)

    with pytest.raises(anthropic.AuthenticationError) as caught:
        _ask(client, "claude")

    [row] = logged(1)
    assert (row.status_code, row.error_code) == (401, "invalid_api_key")
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_cache_reads_and_writes_count_as_input_tokens(messages_setup):
    messages_setup.serve("claude-cached", "claude-cache", messages_setup.anthropic)

    _ask(messages_setup.client(), "claude-cached")

    [row] = logged(1)
    assert (row.input_tokens, row.cached_tokens) == (11 + 100 + 20, 100)
