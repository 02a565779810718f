"""The numbers a budget hold is made of: one output limit, the choices, a prompt bound."""

from __future__ import annotations

import orjson
import pytest

from gateway.proxy import limits
from gateway.proxy.errors import BadRequest
from gateway.proxy.stages.usage import estimate_prompt, estimate_tokens


@pytest.mark.parametrize(
    ("body", "limit", "left"),
    [
        ({}, None, {}),
        ({"max_tokens": 30}, 30, {"max_tokens": 30}),
        ({"max_completion_tokens": 30}, 30, {"max_completion_tokens": 30}),
        ({"max_completion_tokens": 1, "max_tokens": 3000}, 1, {"max_completion_tokens": 1}),
        ({"max_completion_tokens": 3000, "max_tokens": 7}, 7, {"max_completion_tokens": 7}),
        ({"max_tokens": None}, None, {}),
        ({"max_completion_tokens": None, "max_tokens": 5}, 5, {"max_tokens": 5}),
    ],
)
def test_one_output_limit_is_left_in_the_body_when_the_client_sends_one_or_two(body, limit, left):
    assert limits.output_limit(body) == limit
    assert body == left


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("max_tokens", 3000.0, "got a decimal number"),
        ("max_tokens", 1.5, "got a decimal number"),
        ("max_tokens", "ten", "got a string"),
        ("max_tokens", True, "got a boolean"),
        ("max_tokens", [1], "got an array"),
        ("max_tokens", -1, "from 1 to"),
        ("max_completion_tokens", 0, "from 1 to"),
        ("max_tokens", 2**64 - 1, "from 1 to"),
        ("max_tokens", limits.MAX_OUTPUT_TOKENS + 1, "from 1 to"),
    ],
)
def test_output_limit_is_refused_naming_the_field_when_it_is_not_a_positive_integer(field, value, says):
    with pytest.raises(BadRequest) as refused:
        limits.output_limit({field: value, "max_completion_tokens" if field == "max_tokens" else "max_tokens": 5})
    assert refused.value.param == field
    assert says in refused.value.message


@pytest.mark.parametrize(("value", "n"), [(None, 1), (1, 1), (10, 10), (128, 128)])
def test_choices_are_counted_when_n_is_a_whole_number_in_range(value, n):
    assert limits.choices({} if value is None else {"n": value}) == n


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", 129, 10**6, False])
def test_choices_are_refused_when_n_is_not_a_whole_number_in_range(value):
    with pytest.raises(BadRequest) as refused:
        limits.choices({"n": value})
    assert refused.value.param == "n"


def test_prompt_bound_is_at_least_the_utf8_bytes_of_the_text():
    cjk = "語" * 2000  # a tokenizer may bill one token per character: 2,000 tokens, 6,000 bytes
    body = {"model": "m", "messages": [{"role": "user", "content": cjk}]}
    assert limits.chat_prompt(body).bound(None) >= len(cjk.encode()) >= 2000
    assert limits.chat_prompt(body).bound(None) == len(orjson.dumps(body)) + limits.PROMPT_OVERHEAD


def test_prompt_bound_adds_the_tool_instructions_when_tools_are_given():
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]}
    assert limits.chat_prompt(body).tokens == len(orjson.dumps(body)) + limits.PROMPT_OVERHEAD + limits.TOOLS_OVERHEAD


def test_images_count_their_worst_case_instead_of_their_data(settings):
    settings.BUDGET_IMAGE_TOKENS = 1000
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    text = {"type": "text", "text": "what is this?"}
    body = {"messages": [{"role": "user", "content": [text, image, image]}]}
    without = {"messages": [{"role": "user", "content": [text]}]}
    extra = len(orjson.dumps(body)) - len(orjson.dumps(without)) - 2 * len(orjson.dumps(image))
    assert limits.chat_prompt(body).tokens == limits.chat_prompt(without).tokens + extra + 2000


def test_anthropic_images_inside_tool_results_count_too(settings):
    settings.BUDGET_IMAGE_TOKENS = 1000
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 50_000}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [image]}
    body = {"messages": [{"role": "user", "content": [result]}]}
    assert limits.chat_prompt(body).tokens < 3000


def test_context_window_caps_the_bound_and_bounds_documents():
    document = {"type": "document", "source": {"type": "base64", "data": "JVBERi0" * 10}}
    body = {"messages": [{"role": "user", "content": [document]}]}
    prompt = limits.chat_prompt(body)
    assert prompt.unbounded == "document"
    with pytest.raises(limits.Unbounded):
        prompt.bound(None)
    assert prompt.bound(200_000) == min(prompt.tokens, 200_000)
    assert limits.chat_prompt({"messages": ["x" * 5000]}).bound(1000) == 1000


def test_text_that_only_mentions_an_image_part_is_plain_text():
    body = {"messages": [{"role": "user", "content": 'say {"type":"image_url"} please'}]}
    assert limits.chat_prompt(body).tokens == len(orjson.dumps(body)) + limits.PROMPT_OVERHEAD


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ([1] * 5000, 5000),
        ([[1] * 5000, [2] * 10], 5010),
        ("héllo", len("héllo".encode()) + 2),
        (["ab", "語"], 4 + 5),
    ],
)
def test_embedding_bound_counts_token_arrays_exactly_and_strings_by_bytes(value, tokens):
    assert limits.embedding_prompt(value).tokens == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("abcd", 1), ("abcde", 2), ("語" * 10, 10), ("ab語語", 3), ("😀", 1)],
)
def test_estimate_counts_four_ascii_characters_or_one_other_character_a_token(text, tokens):
    assert estimate_tokens(text) == tokens


def test_prompt_estimate_counts_token_arrays_and_skips_roles():
    assert estimate_prompt([{"role": "user", "content": "abcd"}]) == 1
    assert estimate_prompt([[1, 2, 3], [4]]) == 4


def test_a_prediction_counts_as_output_by_its_bytes():
    prediction = {"type": "content", "content": "語" * 100}
    assert limits.predicted({"prediction": prediction}) == len(orjson.dumps(prediction)) >= 300
    assert limits.predicted({}) == 0
