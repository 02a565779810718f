"""Budgets through the live gateway: reserve before the upstream call, settle after, on every ending."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import openai
import pytest
from django.conf import settings

from billing import budget, services
from billing.models import LedgerEntry
from billing.periods import current_period, label
from gateway import services as gateway_services
from gateway.models import Deployment, VirtualKey
from gateway.proxy import catalog
from tests.conftest import Setup, _logs_since, logged

pytestmark = pytest.mark.django_db(transaction=True)

IN_PRICE, OUT_PRICE = Decimal("1000"), Decimal("2000")  # per million tokens: 0.001 and 0.002 a token
MOCK_COST = (11 * IN_PRICE + 7 * OUT_PRICE) / 1_000_000  # the mock answers 11 prompt and 7 completion tokens


@pytest.fixture
def priced(gateway_setup: Setup) -> Setup:
    for deployment in Deployment.objects.all():
        gateway_services.set_deployment_prices(deployment=deployment, input_price=IN_PRICE, output_price=OUT_PRICE)
    return gateway_setup


def _sdk(live_gateway: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=secret, max_retries=0)


def _post(live_gateway: str, secret: str, **body: object) -> httpx.Response:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}], **body}
    return httpx.post(
        f"{live_gateway}/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )


def _debits(count: int = 1, timeout: float = 5.0) -> list[LedgerEntry]:
    deadline = time.monotonic() + timeout
    while True:
        usage = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, created_at__gte=_logs_since[0])
        rows = list(usage.order_by("id"))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def _reserved(project_id: int) -> int:
    return budget.held_now(scope=budget.project_scope(project_id), period=label(current_period()))


def test_answered_request_is_debited_at_its_cost_and_its_reservation_is_freed(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="10.00")

    reply = _sdk(live_gateway, priced.secret).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )

    assert reply.usage.prompt_tokens == 11
    [row] = logged(1)
    [debit] = _debits(1)
    assert (debit.request_id, debit.input_tokens, debit.output_tokens) == (row.request_id, 11, 7)
    assert debit.amount == -MOCK_COST == -row.cost
    assert debit.project_id == priced.project.id and debit.business_unit_id == priced.project.business_unit_id
    assert _reserved(priced.project.id) == 0


def test_request_over_the_budget_gets_insufficient_quota_and_never_reaches_the_upstream(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="0.05")  # worst case of 50 tokens out: 0.1+

    with pytest.raises(openai.RateLimitError) as refused:
        _sdk(live_gateway, priced.secret).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], max_tokens=50
        )

    error = refused.value.body
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "project 'Shop'" in error["message"] and "credit" in error["message"]
    # the remedy links to the credit form, prefilled with the project
    assert f"{settings.PUBLIC_URL}/requests/credit/new/?project={priced.project.id} " in error["message"]
    assert upstream.state.requests == []
    [row] = logged(1)
    assert (row.status_code, row.error_code) == (429, "insufficient_quota")
    assert _debits(0) == [] and _reserved(priced.project.id) == 0


def test_credit_lets_a_refused_project_through_at_once(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="0.00")
    assert _post(live_gateway, priced.secret, max_tokens=50).status_code == 429

    services.grant_credits(project=priced.project, amount="1.00", reason="pilot", idempotency_key="pilot-1")

    assert _post(live_gateway, priced.secret, max_tokens=50).status_code == 200


def test_soft_budget_alerts_but_lets_requests_through(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="0.00", hard=False)

    assert _post(live_gateway, priced.secret, max_tokens=50).status_code == 200
    assert len(_debits(1)) == 1


def test_key_cap_refuses_the_key_but_not_its_project(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="10.00")
    key = VirtualKey.objects.get(pk=priced.key_id)
    services.set_budget(target=key, monthly_limit="0.01")
    other = gateway_services.create_virtual_key(project=priced.project, name="other")

    refused = _post(live_gateway, priced.secret, max_tokens=50)

    assert refused.status_code == 429 and "API key" in refused.json()["error"]["message"]
    assert "raise this key's budget" in refused.json()["error"]["message"]
    assert _post(live_gateway, other.secret, max_tokens=50).status_code == 200


def test_business_unit_cap_covers_all_its_projects(priced, live_gateway, upstream):
    services.set_budget(target=priced.project.business_unit, monthly_limit="0.01")

    refused = _post(live_gateway, priced.secret, max_tokens=50)

    assert refused.status_code == 429
    assert "business unit" in refused.json()["error"]["message"]


def test_model_without_a_price_is_refused_for_a_budgeted_project(gateway_setup, live_gateway, upstream):
    services.set_budget(target=gateway_setup.project, monthly_limit="10.00")

    refused = _post(live_gateway, gateway_setup.secret)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_priced"
    assert upstream.state.requests == []


def test_model_without_a_price_is_charged_the_default_price_when_one_is_set(
    gateway_setup, live_gateway, upstream, settings
):
    settings.BILLING_DEFAULT_INPUT_PRICE, settings.BILLING_DEFAULT_OUTPUT_PRICE = "1000", "2000"
    services.set_budget(target=gateway_setup.project, monthly_limit="10.00")

    assert _post(live_gateway, gateway_setup.secret).status_code == 200
    [debit] = _debits(1)
    assert debit.amount == -MOCK_COST and debit.priced


def test_model_without_a_price_is_logged_without_cost_when_the_project_has_no_budget(
    gateway_setup, live_gateway, upstream
):
    assert _post(live_gateway, gateway_setup.secret).status_code == 200
    [debit] = _debits(1)
    assert (debit.amount, debit.priced, debit.output_tokens) == (0, False, 7)


def test_default_output_limit_is_sent_upstream_when_the_client_sets_none(priced, live_gateway, upstream, settings):
    settings.DEFAULT_MAX_TOKENS = 64
    services.set_budget(target=priced.project, monthly_limit="10.00")

    assert _post(live_gateway, priced.secret).status_code == 200

    # A self-hosted (OpenAI-compatible) deployment gets the older name, which such servers know.
    assert upstream.state.last().body["max_tokens"] == 64
    assert "max_completion_tokens" not in upstream.state.last().body


def test_client_output_limit_is_left_alone(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="10.00")

    assert _post(live_gateway, priced.secret, max_completion_tokens=20).status_code == 200

    assert upstream.state.last().body["max_tokens"] == 20


@pytest.mark.parametrize(("upstream_status", "status"), [(500, 502), (400, 400), (429, 429)])
def test_upstream_error_costs_nothing_and_frees_the_reservation(
    priced, live_gateway, upstream, upstream_status, status
):
    services.set_budget(target=priced.project, monthly_limit="10.00")
    Deployment.objects.update(upstream_model=f"mock-status-{upstream_status}")
    catalog.invalidate()

    response = _post(live_gateway, priced.secret, max_tokens=50)

    assert response.status_code == status
    logged(1)
    assert _debits(0, timeout=0.3) == []
    assert _reserved(priced.project.id) == 0


def test_timeout_costs_nothing_and_frees_the_reservation(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="10.00")
    Deployment.objects.update(upstream_model="mock-hang", total_timeout=0.3)
    catalog.invalidate()

    response = _post(live_gateway, priced.secret, max_tokens=50)

    assert response.status_code == 504
    logged(1)
    assert _debits(0, timeout=0.3) == []
    assert _reserved(priced.project.id) == 0


def test_stream_cut_by_the_client_bills_what_was_streamed(priced, live_gateway, upstream):
    services.set_budget(target=priced.project, monthly_limit="10.00")
    Deployment.objects.update(upstream_model="mock-slow-stream")
    catalog.invalidate()
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 500}
    headers = {"Authorization": f"Bearer {priced.secret}"}

    with httpx.stream("POST", f"{live_gateway}/v1/chat/completions", json=payload, headers=headers) as response:
        lines = 0
        for line in response.iter_lines():
            lines += line.startswith("data: ")
            if lines >= 6:
                break  # the client goes away mid-stream

    [debit] = _debits(1)
    assert debit.estimated and debit.output_tokens > 0
    assert debit.amount < 0
    deadline = time.monotonic() + 5
    while _reserved(priced.project.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _reserved(priced.project.id) == 0


def test_budget_that_cannot_be_checked_refuses_with_503(priced, live_gateway, upstream, settings):
    services.set_budget(target=priced.project, monthly_limit="10.00")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    response = _post(live_gateway, priced.secret, max_tokens=50)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "budget_unavailable"
    assert upstream.state.requests == []


def test_project_without_a_budget_never_touches_the_budget_store(priced, live_gateway, upstream, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # would refuse if it were asked

    assert _post(live_gateway, priced.secret, max_tokens=50).status_code == 200
