"""What /v1/responses refuses, and hostile input: a 400 in OpenAI's error shape naming the field,
on every deployment kind, before anything reaches an upstream; never a 500."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import logged
from tests.gateway.responses.conftest import KINDS, TRANSLATED

pytestmark = pytest.mark.django_db(transaction=True)

HOSTED_TOOLS = (
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "browser"},
    {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.example.com/mcp"},
    {"type": "image_generation"},
)


def _nothing_sent(responses) -> bool:
    return all(not mock.state.requests for mock in responses.upstreams.values())


@pytest.mark.parametrize("kind", KINDS)
def test_previous_response_id_is_refused_saying_the_gateway_keeps_no_state(responses, kind):
    model = responses.serve(kind)

    with pytest.raises(openai.BadRequestError) as refused:
        responses.client().responses.create(model=model, input="and then?", previous_response_id="resp_123")

    error = refused.value.body
    assert (error["param"], error["code"], error["type"]) == (
        "previous_response_id",
        "unsupported_parameter",
        "invalid_request_error",
    )
    assert "keeps no conversation state" in error["message"] and "whole conversation" in error["message"]
    assert _nothing_sent(responses)


@pytest.mark.parametrize(
    ("field", "value"),
    [("conversation", "conv_123"), ("background", True), ("prompt", {"id": "pmpt_123"})],
)
def test_stateful_and_stored_features_are_refused_naming_the_field(responses, field, value):
    model = responses.serve("openai")

    response = responses.post({"model": model, "input": "hi", field: value})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
    assert _nothing_sent(responses)


@pytest.mark.parametrize("kind", ["openai", *TRANSLATED])
@pytest.mark.parametrize("tool", HOSTED_TOOLS, ids=[t["type"] for t in HOSTED_TOOLS])
def test_hosted_tools_are_refused_naming_the_tool(responses, kind, tool):
    model = responses.serve(kind)

    with pytest.raises(openai.BadRequestError) as refused:
        responses.client().responses.create(
            model=model, input="hi", tools=[{"type": "function", "name": "f", "parameters": {}}, tool]
        )

    error = refused.value.body
    assert (error["param"], error["code"]) == ("tools[1].type", "unsupported_parameter")
    assert f"'{tool['type']}'" in error["message"] and "hosted tool" in error["message"]
    assert _nothing_sent(responses)


def test_refusal_is_logged_under_the_responses_endpoint(responses):
    model = responses.serve("openai")

    responses.post({"model": model, "input": "hi", "previous_response_id": "resp_1"})

    [row] = logged(1)
    assert (row.endpoint, row.status_code, row.error_code, row.model) == (
        "responses",
        400,
        "unsupported_parameter",
        model,
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": 7, "input": "hi"}, "model"),
        ({"model": "M"}, "input"),
        ({"model": "M", "input": 42}, "input"),
        ({"model": "M", "input": []}, "input"),
        ({"model": "M", "input": ["hi"]}, "input[0]"),
        ({"model": "M", "input": [{"content": "no role or type"}]}, "input[0]"),
        ({"model": "M", "input": "hi", "instructions": ["x"]}, "instructions"),
        ({"model": "M", "input": "hi", "tools": "get_weather"}, "tools"),
        ({"model": "M", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "M", "input": "hi", "tools": [{"name": "f"}]}, "tools[0]"),
        ({"model": "M", "input": "hi", "max_output_tokens": "100"}, "max_output_tokens"),
        ({"model": "M", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "M", "input": "hi", "max_output_tokens": 10**30}, "max_output_tokens"),
        ({"model": "M", "input": "hi", "max_output_tokens": 16.5}, "max_output_tokens"),
        ({"model": "M", "input": "hi", "max_output_tokens": True}, "max_output_tokens"),
        ({"model": "M", "input": "hi", "temperature": "hot"}, "temperature"),
        ({"model": "M", "input": "hi", "temperature": 1e308}, "temperature"),
        ({"model": "M", "input": "hi", "top_p": -1}, "top_p"),
        ({"model": "M", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "M", "input": "hi", "store": 1}, "store"),
        ({"model": "M", "input": "hi", "metadata": {"n": 1}}, "metadata"),
        ({"model": "M", "input": "hi", "metadata": ["x"]}, "metadata"),
        ({"model": "M", "input": "hi", "text": "json"}, "text"),
        ({"model": "M", "input": "hi", "reasoning": {"effort": "maximal"}}, "reasoning.effort"),
        ({"model": "M", "input": "hi", "api_base": "http://169.254.169.254"}, "api_base"),
    ],
)
def test_hostile_input_gets_a_400_naming_the_field(responses, body, param):
    model = responses.serve("openai", name="M")

    response = responses.post(body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert response.headers["x-request-id"].startswith("req_")
    assert _nothing_sent(responses)
    del model


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"123456789012345678901234567890"])
def test_out_of_range_numbers_in_the_raw_body_get_a_400(responses, number):
    import httpx

    model = responses.serve("openai")

    response = httpx.post(
        f"{responses.gateway}/v1/responses",
        content=b'{"model": "' + model.encode() + b'", "input": "hi", "max_output_tokens": ' + number + b"}",
        headers={"Authorization": f"Bearer {responses.secret}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert _nothing_sent(responses)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_a_chat_output_limit_next_to_max_output_tokens_is_refused(responses, field):
    """An output limit the budget hold does not read must never reach the upstream."""
    model = responses.serve("openai")

    response = responses.post({"model": model, "input": "hi", "max_output_tokens": 16, field: 1_000_000})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (field, "unsupported_parameter")
    assert "max_output_tokens" in error["message"]
    assert _nothing_sent(responses)


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_nul_bytes_and_odd_unicode_are_carried_not_crashed_on(responses, kind):
    model = responses.serve(kind)

    response = responses.post({"model": model, "input": "a\u0000b \U0001f600 \u202e", "instructions": "x\u0000"})

    assert response.status_code == 200, response.text
    [row] = logged(1)
    assert (row.endpoint, row.status_code) == ("responses", 200)


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[1].type"),
        ({"type": "item_reference", "id": "msg_1"}, "input[1].type"),
        ({"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}, "input[1].content[0].file_id"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, "input[1].content[0].type"),
        ({"role": "wizard", "content": "hi"}, "input[1].role"),
        ({"role": "user", "content": 7}, "input[1].content"),
        ({"type": "function_call_output", "output": "x"}, "input[1].call_id"),
        ({"type": "function_call", "call_id": "c", "name": "f", "arguments": 7}, "input[1].arguments"),
    ],
)
@pytest.mark.parametrize("kind", TRANSLATED)
def test_what_cannot_be_translated_is_refused_naming_the_item(responses, kind, item, param):
    model = responses.serve(kind)

    response = responses.post({"model": model, "input": [{"role": "user", "content": "hi"}, item]})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert _nothing_sent(responses)


@pytest.mark.parametrize("kind", TRANSLATED)
def test_a_hosted_tool_choice_is_refused_by_a_translation(responses, kind):
    model = responses.serve(kind)

    response = responses.post(
        {
            "model": model,
            "input": "hi",
            "tools": [{"type": "function", "name": "f"}],
            "tool_choice": {"type": "file_search"},
        }
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tool_choice"


def test_unknown_model_and_wrong_key_answer_in_openais_shape(responses):
    with pytest.raises(openai.NotFoundError) as missing:
        responses.client().responses.create(model="nope", input="hi")
    assert missing.value.body["code"] == "model_not_found"

    stranger = openai.OpenAI(base_url=f"{responses.gateway}/v1", api_key="sk-sym-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.responses.create(model="nope", input="hi")
    assert refused.value.body["code"] == "invalid_api_key"


def test_get_on_responses_is_a_405_in_openais_shape(responses):
    import httpx

    response = httpx.get(f"{responses.gateway}/v1/responses", headers={"Authorization": f"Bearer {responses.secret}"})

    assert response.status_code == 405 and "POST" in response.headers["allow"]
    assert "error" in response.json()


def test_upstream_refusal_passes_through_with_its_message(responses):
    model = responses.serve("openai", upstream_model="mock-status-404")

    with pytest.raises(openai.NotFoundError) as refused:
        responses.client().responses.create(model=model, input="hi")

    assert refused.value.body["message"] == "mock upstream error 404"


def test_tools_the_client_runs_itself_pass_through_but_cannot_be_translated(responses):
    custom = {"type": "custom", "name": "apply_patch", "description": "Apply a patch."}
    through = responses.serve("openai")
    translated = responses.serve("openai_compatible")

    passed = responses.post({"model": through, "input": "hi", "tools": [custom]})
    refused = responses.post({"model": translated, "input": "hi", "tools": [custom]})

    assert passed.status_code == 200 and responses.sent("openai")["tools"] == [custom]
    assert refused.status_code == 400
    assert (refused.json()["error"]["param"], refused.json()["error"]["code"]) == (
        "tools[0].type",
        "unsupported_parameter",
    )
