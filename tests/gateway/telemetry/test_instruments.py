"""The gateway's own metrics beside the GenAI ones: budget utilisation, guardrail verdicts, lost
telemetry; the Django and httpx instrumentations; and telemetry that is off costs nothing."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import httpx
import pytest

from billing import alerts
from billing import services as billing_services
from gateway import services, telemetry
from gateway.models import Deployment
from tests.conftest import Setup, logged
from tests.gateway.telemetry.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def _chat(live_gateway: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{live_gateway}/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_telemetry_is_off_unless_configured(gateway_setup: Setup, live_gateway):
    assert _chat(live_gateway, gateway_setup.secret).status_code == 200
    logged(1)

    assert telemetry.enabled is False
    assert not telemetry._queue, "nothing was handed to a worker"
    assert not any(thread.name == "telemetry" for thread in threading.enumerate())


def test_budget_utilisation_is_reported_for_each_budget_the_alert_check_reads(otel: Receiver, gateway_setup: Setup):
    project = gateway_setup.project
    billing_services.set_budget(target=project, monthly_limit="10.00")
    billing_services.set_budget(target=project.business_unit, monthly_limit="0.00")

    alerts.check_project(project_id=project.id)

    points = otel.wait_for(lambda: otel.points("symbiosis.budget.utilization"))
    assert {(p.attributes["symbiosis.budget.scope"], p.value) for p in points} == {
        ("project", 0.0),
        ("business_unit", 0.0),
    }
    by_scope = {p.attributes["symbiosis.budget.scope"]: p.attributes for p in points}
    assert by_scope["project"]["symbiosis.project.id"] == project.id
    assert by_scope["business_unit"]["symbiosis.business_unit.id"] == project.business_unit_id
    assert points[0].unit == "1"


def test_budget_utilisation_follows_spending(otel: Receiver, gateway_setup: Setup, live_gateway):
    for deployment in Deployment.objects.all():
        services.set_deployment_prices(deployment=deployment, input_price=Decimal("1000"), output_price=Decimal("2000"))
    billing_services.set_budget(target=gateway_setup.project, monthly_limit="10.00")
    assert _chat(live_gateway, gateway_setup.secret).status_code == 200
    logged(1)

    alerts.check_project(project_id=gateway_setup.project.id)

    [point] = otel.wait_for(lambda: otel.points("symbiosis.budget.utilization"))
    assert point.value == pytest.approx((11 * 1000 + 7 * 2000) / 1_000_000 / 10)


def test_guardrail_verdicts_are_counted_by_check_action_and_where(otel: Receiver):
    telemetry.count_guardrail_verdict(check="pii", action="redact", where="request")
    telemetry.count_guardrail_verdict(check="pii", action="redact", where="request")
    telemetry.count_guardrail_verdict(check="injection", action="block", where="request")

    points = otel.wait_for(lambda: otel.points("symbiosis.guardrail.verdicts"))
    assert {
        (p.attributes["symbiosis.guardrail.check"], p.attributes["symbiosis.guardrail.action"], p.value) for p in points
    } == {("pii", "redact", 2), ("injection", "block", 1)}


def test_spans_a_collector_refuses_are_counted_in_a_metric_and_warned_about_once(
    otel: Receiver, gateway_setup: Setup, live_gateway, caplog
):
    otel.refuse_traces = True
    before = telemetry.dropped().get("span_export_failed", 0)
    caplog.set_level(logging.WARNING, logger="gateway.telemetry")

    for _ in range(2):
        assert _chat(live_gateway, gateway_setup.secret).status_code == 200
        telemetry.flush()
        telemetry.flush()  # the worker warns after the export it counted

    def lost() -> list:
        points = otel.points("symbiosis.telemetry.dropped")
        return [p for p in points if p.attributes == {"reason": "span_export_failed"} and p.value - before >= 4]

    [point] = otel.wait_for(lost)
    assert point.unit == "{item}"
    warnings = [r for r in caplog.records if r.name == "gateway.telemetry" and "items lost" in r.getMessage()]
    assert len(warnings) == 1, "at most one warning a minute"
    assert "span_export_failed" in warnings[0].getMessage()


async def test_django_under_asgi_and_httpx_are_instrumented_when_asked(receiver: Receiver, async_client, upstream):
    """The portal, admin and management API run under ASGI: their requests get SERVER spans (the
    Django instrumentation needs the ASGI one for that); provider probes (httpx) get CLIENT spans."""
    from django.conf import settings

    telemetry.configure(endpoint=receiver.url, instrument_libraries=True)
    try:
        # (not /healthz: probes are answered before the instrumentation's middleware, untraced)
        assert (await async_client.get("/api/v1/openapi.json")).status_code == 200
        assert httpx.get(f"{upstream.url}/models", timeout=5).status_code == 200
        spans = receiver.wait_for(
            lambda: {s.name for s in receiver.spans()} >= {"GET api/v1/openapi.json", "GET"} and receiver.spans()
        )
    finally:
        telemetry.shutdown()

    by_name = {s.name: s for s in spans}
    server = by_name["GET api/v1/openapi.json"]
    assert server.kind == 2 and server.attributes["http.route"] == "api/v1/openapi.json"
    assert by_name["GET"].kind == 3, by_name["GET"].attributes
    assert not any("opentelemetry" in m for m in settings.MIDDLEWARE), "uninstrumented again"
