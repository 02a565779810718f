"""Traces and metrics reach an OTLP/HTTP receiver with the GenAI attributes, through the live gateway.

The mock upstream answers 11 prompt and 7 completion tokens, streaming or not, and finishes with
`stop`; its provider is at 127.0.0.1.
"""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import openai
import pytest

from gateway import services, telemetry
from gateway.models import Deployment, VirtualKey
from tests.conftest import Setup, logged
from tests.gateway.telemetry.conftest import Receiver, Span

pytestmark = pytest.mark.django_db(transaction=True)

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
ERROR = 2  # Status.StatusCode
PROMPT = "what is the capital of the Netherlands"


def _sdk(live_gateway: str, secret: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=secret, max_retries=0, default_headers=headers)


def _spans_of(otel: Receiver, request_id: str, count: int = 2) -> list[Span]:
    def found() -> list[Span]:
        spans = [s for s in otel.spans() if s.attributes.get("symbiosis.request_id") == request_id]
        return spans if len(spans) >= count else []

    return otel.wait_for(found)


def _one(spans: list[Span], kind: int) -> Span:
    [span] = [s for s in spans if s.kind == kind]
    return span


def test_non_streaming_chat_exports_a_server_span_and_a_client_span_with_genai_attributes(
    otel, gateway_setup: Setup, live_gateway
):
    reply = _sdk(live_gateway, gateway_setup.secret).chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": PROMPT}], max_tokens=50, temperature=0.2
    )
    request_id = reply.headers["x-request-id"]

    spans = _spans_of(otel, request_id)
    server, client = _one(spans, SERVER), _one(spans, CLIENT)
    project = gateway_setup.project
    assert server.name == "POST /v1/chat/completions"
    assert server.resource["service.name"] == "gateway-under-test"
    assert client.name == "chat upstream-gpt"
    assert client.parent_span_id == server.span_id and client.trace_id == server.trace_id
    assert server.start <= client.start <= client.end <= server.end
    assert client.attributes | {"symbiosis.deployment.id": None} == {
        "symbiosis.request_id": request_id,
        "symbiosis.project.id": project.id,
        "symbiosis.business_unit.id": project.business_unit_id,
        "symbiosis.key.prefix": _prefix(gateway_setup),
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "upstream-gpt",
        "gen_ai.response.model": "upstream-gpt",
        "gen_ai.response.id": "chatcmpl-mock",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.finish_reasons": ["stop"],
        "server.address": "127.0.0.1",
        "server.port": int(gateway_setup_port(gateway_setup)),
        "symbiosis.provider.kind": "openai_compatible",
        "symbiosis.provider.name": "mock",
        "symbiosis.model": "gpt-test",
        "symbiosis.usage.estimated": False,
        "symbiosis.deployment.id": None,
    }
    assert server.attributes["gen_ai.request.model"] == server.attributes["gen_ai.response.model"] == "gpt-test"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gen_ai.usage.input_tokens"] == 11
    assert server.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert server.status != ERROR and client.status != ERROR
    assert all("gen_ai.input.messages" not in s.attributes for s in spans)
    assert PROMPT.encode() not in b"".join(otel.raw), "prompt content is off by default"


def _prefix(setup: Setup) -> str:
    return VirtualKey.objects.get(pk=setup.key_id).prefix


def gateway_setup_port(setup: Setup) -> int:
    return int(Deployment.objects.get(model__name=setup.model).provider.base_url.rsplit(":", 1)[1].split("/")[0])


def test_streaming_chat_exports_spans_that_last_until_the_stream_ends(otel, gateway_setup: Setup, live_gateway):
    raw = _sdk(live_gateway, gateway_setup.secret).chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    chunks = list(raw.parse())
    request_id = raw.headers["x-request-id"]

    spans = _spans_of(otel, request_id)
    server, client = _one(spans, SERVER), _one(spans, CLIENT)
    assert len(chunks) > 3
    assert server.attributes["symbiosis.stream"] is True
    assert client.attributes["gen_ai.usage.input_tokens"] == 11
    assert client.attributes["gen_ai.usage.output_tokens"] == 7
    assert client.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert client.attributes["gen_ai.response.model"] == "upstream-gpt"
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["symbiosis.key.prefix"] == _prefix(gateway_setup)
    assert client.end <= server.end and client.end - client.start > 0

    [ttft] = otel.wait_for(lambda: otel.points("gen_ai.server.time_to_first_token"))
    assert ttft.unit == "s" and ttft.count == 1 and 0 < ttft.sum < 5
    assert ttft.attributes == {
        "symbiosis.project.id": gateway_setup.project.id,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-test",
    }


def test_metrics_arrive_with_token_usage_duration_requests_and_cost(otel, gateway_setup: Setup, live_gateway):
    for deployment in Deployment.objects.all():
        services.set_deployment_prices(deployment=deployment, input_price=Decimal("1000"), output_price=Decimal("2000"))
    sdk = _sdk(live_gateway, gateway_setup.secret)
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    list(sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True))
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    project = gateway_setup.project.id

    tokens = otel.wait_for(lambda: [p for p in otel.points("gen_ai.client.token.usage") if p.count == 2])
    assert {p.attributes["gen_ai.token.type"]: p.sum for p in tokens} == {"input": 22, "output": 14}
    assert {p.unit for p in tokens} == {"{token}"}
    assert tokens[0].attributes | {"gen_ai.token.type": None} == {
        "symbiosis.project.id": project,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "upstream-gpt",
        "gen_ai.response.model": "upstream-gpt",
        "server.address": "127.0.0.1",
        "server.port": gateway_setup_port(gateway_setup),
        "symbiosis.provider.kind": "openai_compatible",
        "symbiosis.model": "gpt-test",
        "gen_ai.token.type": None,
    }
    [duration] = otel.points("gen_ai.client.operation.duration")
    assert duration.unit == "s" and duration.count == 2 and duration.sum > 0
    requests = {
        (p.attributes["gen_ai.request.model"], p.attributes["http.response.status_code"]): p.value
        for p in otel.points("symbiosis.gateway.requests")
    }
    assert requests == {("gpt-test", 200): 2, ("_OTHER", 404): 1}, "an unknown model name is not an attribute"
    [cost] = otel.points("symbiosis.gateway.cost")
    assert cost.value == pytest.approx(2 * float(Decimal(11 * 1000 + 7 * 2000) / 1_000_000))
    assert cost.attributes == {
        "symbiosis.project.id": project,
        "symbiosis.model": "gpt-test",
        "symbiosis.currency": "EUR",
    }


def test_a_failed_attempt_gets_its_own_client_span_marked_as_an_error(
    otel, gateway_setup: Setup, live_gateway, upstream
):
    upstream.state.scripts["flaky"] = ["503", "ok"]
    Deployment.objects.filter(model__name="gpt-test").update(upstream_model="mock-script-flaky")
    from gateway.invalidation import publish_catalog_change

    publish_catalog_change()

    reply = httpx.post(
        f"{live_gateway}/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway_setup.secret}"},
        timeout=30,
    )

    assert reply.status_code == 200
    spans = _spans_of(otel, reply.headers["x-request-id"], count=3)
    failed, answered = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start)
    assert failed.status == ERROR and answered.status != ERROR
    assert failed.attributes["error.type"] == "upstream_error"
    assert failed.attributes["http.response.status_code"] == 503
    assert failed.end <= answered.start
    assert logged(1)[0].attempts[0]["status"] == 503


def test_prompt_and_completion_are_on_the_client_span_only_when_capture_is_enabled(
    receiver, gateway_setup: Setup, live_gateway
):
    telemetry.configure(endpoint=receiver.url, service_name="gateway-under-test", capture_content=True)
    try:
        raw = _sdk(live_gateway, gateway_setup.secret).chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}]
        )
        client = _one(_spans_of(receiver, raw.headers["x-request-id"]), CLIENT)
    finally:
        telemetry.shutdown()

    assert client.attributes["gen_ai.input.messages"] == (
        '[{"role":"system","parts":[{"type":"text","content":"be brief"}]},'
        f'{{"role":"user","parts":[{{"type":"text","content":"{PROMPT}"}}]}}]'
    )
    assert f"echo: {PROMPT}" in client.attributes["gen_ai.output.messages"]
    assert '"finish_reason":"stop"' in client.attributes["gen_ai.output.messages"]


def test_spans_join_the_callers_trace_when_it_sends_a_traceparent(otel, gateway_setup: Setup, live_gateway):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    sdk = _sdk(live_gateway, gateway_setup.secret, traceparent=f"00-{trace_id}-{parent}-01")
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    server = _one(_spans_of(otel, raw.headers["x-request-id"]), SERVER)
    assert (server.trace_id, server.parent_span_id) == (trace_id, parent)


def test_embeddings_export_an_embeddings_span(otel, gateway_setup: Setup, live_gateway):
    raw = _sdk(live_gateway, gateway_setup.secret).embeddings.with_raw_response.create(model="gpt-test", input="hi")

    client = _one(_spans_of(otel, raw.headers["x-request-id"]), CLIENT)
    assert client.name == "embeddings upstream-gpt"
    assert client.attributes["gen_ai.operation.name"] == "embeddings"
    assert client.attributes["gen_ai.usage.input_tokens"] == 4


def test_a_collector_that_is_down_never_slows_or_fails_requests_and_the_loss_is_counted(
    gateway_setup: Setup, live_gateway
):
    from tests.mock_upstream import free_port

    before = telemetry.dropped().get("span_export_failed", 0)
    telemetry.configure(endpoint=f"http://127.0.0.1:{free_port()}", export_timeout=0.5, metric_interval=3600)
    try:
        sdk = _sdk(live_gateway, gateway_setup.secret)
        timings = []
        for _ in range(20):
            started = time.monotonic()
            sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
            timings.append(time.monotonic() - started)
        telemetry.flush(timeout=5)
    finally:
        telemetry.shutdown(timeout=2)

    assert max(timings) < 0.5, timings
    assert telemetry.dropped()["span_export_failed"] - before >= 40  # two spans a request
