"""/v1/responses is metered like chat completions: a request-log row (endpoint "responses") with
the Responses usage object's input and output tokens, a ledger debit at the deployment's prices,
and a budget hold that covers `max_output_tokens`."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from billing import services as billing
from billing.models import LedgerEntry
from tests.conftest import _logs_since, logged
from tests.gateway.responses.conftest import IN_PRICE, KINDS, OUT_PRICE, debits

pytestmark = pytest.mark.django_db(transaction=True)


def _cost(input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens * IN_PRICE + output_tokens * OUT_PRICE) / 1_000_000


@pytest.mark.parametrize("kind", KINDS)
def test_row_and_debit_carry_the_usage_the_answer_reported(responses, kind):
    model = responses.serve(kind, priced=True)
    billing.set_budget(target=responses.project, monthly_limit="10.00")

    reply = responses.client().responses.create(model=model, input="hello there", max_output_tokens=100)

    [row] = logged(1)
    assert (row.endpoint, row.model, row.status_code, row.stream) == ("responses", model, 200, False)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (
        reply.usage.input_tokens,
        reply.usage.output_tokens,
        False,
    )
    assert row.provider == responses.providers[kind].name
    [debit] = debits(1)
    assert debit.request_id == row.request_id
    assert debit.amount == -_cost(reply.usage.input_tokens, reply.usage.output_tokens) == -row.cost


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_is_logged_with_the_usage_of_its_final_event(responses, kind):
    model = responses.serve(kind, priced=True)

    with responses.client().responses.stream(model=model, input="hello there") as stream:
        final = stream.get_final_response()

    [row] = logged(1)
    assert (row.endpoint, row.stream, row.status_code) == ("responses", True, 200)
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
        False,
    )
    assert row.cost == _cost(final.usage.input_tokens, final.usage.output_tokens)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_budget_hold_covers_max_output_tokens_and_refuses_what_does_not_fit(responses, kind):
    model = responses.serve(kind, priced=True)
    # A prompt bound of ~110 tokens (0.11) and 50 tokens out (0.10) fit; 5,000 out (10.00) do not.
    billing.set_budget(target=responses.project, monthly_limit="0.30")
    client = responses.client()

    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model=model, input="hi", max_output_tokens=5000)
    assert refused.value.body["code"] == "insufficient_quota"
    assert not responses.upstreams[kind].state.requests

    reply = client.responses.create(model=model, input="hi", max_output_tokens=50)

    assert reply.status == "completed"
    sent = responses.sent(kind)
    assert sent.get("max_output_tokens", sent.get("max_tokens")) == 50
    rows = logged(2)
    assert [(r.status_code, r.error_code) for r in rows] == [(429, "insufficient_quota"), (200, "")]
    [debit] = debits(1)
    assert debit.request_id == rows[-1].request_id
    assert debit.amount == -_cost(reply.usage.input_tokens, reply.usage.output_tokens)


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_the_held_output_limit_is_written_upstream_when_the_request_sets_none(responses, kind):
    model = responses.serve(kind, priced=True)
    billing.set_budget(target=responses.project, monthly_limit="100.00")

    responses.client().responses.create(model=model, input="hi")

    sent = responses.sent(kind)
    held = sent["max_output_tokens"] if kind == "openai" else sent["max_tokens"]
    assert isinstance(held, int) and held > 0  # what the hold assumed, not the upstream's open-ended default


def test_refused_request_leaves_no_debit(responses):
    model = responses.serve("openai", priced=True)

    with pytest.raises(openai.BadRequestError):
        responses.client().responses.create(model=model, input="hi", max_output_tokens=0)

    [row] = logged(1)
    assert (row.endpoint, row.status_code, row.error_code) == ("responses", 400, "invalid_value")
    assert not LedgerEntry.objects.filter(created_at__gte=_logs_since[0], kind=LedgerEntry.Kind.USAGE).exists()


def test_a_stream_cut_by_the_upstream_ends_with_an_error_event_and_is_logged(responses):
    model = responses.serve("openai", upstream_model="mock-die-mid-stream", priced=True)

    with pytest.raises(openai.APIError) as broken:
        list(responses.client().responses.create(model=model, input="hello there friend", stream=True))

    assert "mid-stream" in broken.value.message or "before it was complete" in broken.value.message
    [row] = logged(1)
    assert (row.endpoint, row.stream, row.status_code) == ("responses", True, 502)
    assert row.output_tokens > 0 and row.usage_estimated  # what it produced is estimated, never lost


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_the_upstream_failed_is_passed_on_and_logged_as_its_failure(responses, stream):
    model = responses.serve("openai", upstream_model="mock-failed")
    client = responses.client()

    if stream:
        events = list(client.responses.create(model=model, input="hi", stream=True))
        failed = events[-1].response
        assert events[-1].type == "response.failed"
    else:
        failed = client.responses.create(model=model, input="hi")

    assert (failed.status, failed.error.code, failed.model) == ("failed", "server_error", model)
    [row] = logged(1)
    assert (row.endpoint, row.stream, row.status_code, row.error_code) == ("responses", stream, 502, "upstream_error")
