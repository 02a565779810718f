"""GET /api/v1/request-logs/{request_id}: one row with the bodies its project's policy kept."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import Setup, logged
from tests.gateway.request_logs.conftest import insert_rows, log_row

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "Please tell me about zebras, and mail the answer to alice@example.com"


@pytest.fixture
def sdk(live_gateway: str, gateway_setup: Setup) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


@pytest.fixture
def policy(api, gateway_setup: Setup, settings):
    """Set the project's body policy through the API (the organisation's default allowing all)."""
    settings.LOG_BODIES = "full"

    def set_policy(value: str) -> None:
        response = api.patch(f"/projects/{gateway_setup.project.id}", {"log_bodies": value})
        assert response.status_code == 200, response.content

    return set_policy


def _ask(sdk: openai.OpenAI, text: str = PROMPT, *, stream: bool = False) -> dict:
    messages = [{"role": "user", "content": text}]
    if stream:
        list(sdk.chat.completions.create(model="gpt-test", messages=messages, stream=True))
    else:
        sdk.chat.completions.create(model="gpt-test", messages=messages, extra_headers={"User-Agent": "shop/2.0"})
    [row] = logged(1)
    return row


def _detail(api, request_id: str) -> dict:
    response = api.get(f"/request-logs/{request_id}")
    assert response.status_code == 200, response.content
    return response.json()


def test_full_policy_keeps_the_prompt_and_the_answer(api, sdk, policy):
    policy("full")

    row = _detail(api, _ask(sdk).request_id)

    assert row["bodies"] == "full" and row["bodies_truncated"] is False
    assert json.loads(row["request_body"])["messages"] == [{"role": "user", "content": PROMPT}]
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == f"echo: {PROMPT}"
    assert row["user_agent"] == "shop/2.0" and row["status_code"] == 200 and row["project"] is not None


def test_redacted_policy_replaces_an_email_address_with_a_placeholder(api, sdk, policy):
    policy("redacted")

    row = _detail(api, _ask(sdk).request_id)

    assert row["bodies"] == "redacted"
    assert "alice@example.com" not in row["request_body"] + row["response_body"]
    assert "<EMAIL_1>" in row["request_body"] and "<EMAIL_1>" in row["response_body"]
    assert "zebras" in row["request_body"]


def test_metadata_policy_keeps_no_body(api, sdk, policy):
    policy("metadata")

    row = _detail(api, _ask(sdk).request_id)

    assert (row["bodies"], row["request_body"], row["response_body"]) == ("metadata", "", "")
    assert row["input_tokens"] == 11  # the rest of the row is all there


def test_a_changed_policy_applies_to_the_next_request(api, sdk, policy):
    policy("full")
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "before"}])
    policy("metadata")
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "after"}])

    before, after = logged(2)

    assert (before.bodies, after.bodies) == ("full", "metadata")
    assert "before" in before.request_body and after.request_body == ""


def test_body_over_the_cap_is_cut_with_a_marker(api, sdk, policy, settings):
    policy("full")
    settings.LOG_BODY_MAX_BYTES = 300

    row = _detail(api, _ask(sdk, "zebra " * 200).request_id)

    assert row["bodies_truncated"] is True
    kept, marker = row["request_body"].split("…[truncated: ")
    assert len(kept.encode()) <= 300 and marker.endswith(" more bytes]")


def test_stream_answer_is_stored_reassembled(api, sdk, policy):
    policy("full")

    row = _detail(api, _ask(sdk, "tell me about zebras", stream=True).request_id)

    assert row["stream"] is True
    assert json.loads(row["response_body"])["content"].strip() == "echo: tell me about zebras"


def test_unknown_request_id_is_404(api):
    insert_rows(log_row(request_id="known"))

    response = api.get("/request-logs/unknown")

    assert response.status_code == 404 and "unknown" in response.json()["detail"]
    assert api.get("/request-logs/known").status_code == 200
