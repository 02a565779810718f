"""GET /api/v1/request-logs: newest first, filtered, in keyset pages (the cursor in headers)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import openai
import pytest

from gateway import services
from gateway.models import Deployment, Model, Provider
from tests.conftest import Setup, logged
from tests.factories import DeploymentFactory, ModelFactory, ProjectFactory
from tests.gateway.request_logs.conftest import at, insert_rows, log_row

pytestmark = pytest.mark.django_db(transaction=True)

FIXED_FIELDS = {
    "request_id",
    "created_at",
    "project",
    "key_prefix",
    "model",
    "deployment",
    "status_code",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "stream",
}
T0 = at("2026-11-01T12:00:00+00:00")


def _list(api, **params):
    return api.client.get("/api/v1/request-logs", {k: v for k, v in params.items() if v is not None})


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["request_id"] for row in response.json()]


def _sdk(live_gateway: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=secret, max_retries=0)


def _ask(sdk: openai.OpenAI, text: str, *, model: str = "gpt-test", stream: bool = False) -> None:
    messages = [{"role": "user", "content": text}]
    if stream:
        list(sdk.chat.completions.create(model=model, messages=messages, stream=True))
    else:
        sdk.chat.completions.create(model=model, messages=messages)


def test_lists_requests_through_the_gateway_newest_first_with_the_fixed_fields(api, gateway_setup: Setup, live_gateway):
    deployment = Deployment.objects.get(model__name="gpt-test")
    services.set_deployment_prices(deployment=deployment, input_price=Decimal("2.50"), output_price=Decimal("10.00"))
    sdk = _sdk(live_gateway, gateway_setup.secret)
    _ask(sdk, "first")
    _ask(sdk, "second", stream=True)
    older, newer = logged(2)

    response = _list(api, project=gateway_setup.project.id, limit=10)

    assert _ids(response) == [newer.request_id, older.request_id]
    streamed, answered = response.json()
    assert answered.keys() >= FIXED_FIELDS and streamed.keys() >= FIXED_FIELDS
    assert "request_body" not in answered and "response_body" not in answered
    assert answered["project"] == gateway_setup.project.id
    assert answered["key"] == gateway_setup.key_id and answered["key_prefix"] == gateway_setup.secret[:13]
    assert (answered["model"], answered["answered_model"], answered["provider"]) == ("gpt-test", "gpt-test", "mock")
    assert answered["deployment"] == deployment.id
    assert (answered["status_code"], answered["input_tokens"], answered["output_tokens"]) == (200, 11, 7)
    assert answered["cost"] == "0.0000975"  # 11 x 2.50 + 7 x 10.00 per million
    assert (answered["stream"], streamed["stream"]) == (False, True)
    assert all(0 < row["ttft_ms"] <= row["latency_ms"] for row in (answered, streamed))
    assert answered["endpoint"] == "chat/completions" and answered["bodies"] in {"full", "redacted", "metadata"}
    assert "X-Next-Cursor" not in response.headers and "Link" not in response.headers


def test_filters_by_key_model_status_and_text(api, gateway_setup: Setup, live_gateway, settings):
    settings.LOG_BODIES = "full"
    assert api.patch(f"/projects/{gateway_setup.project.id}", {"log_bodies": "full"}).status_code == 200
    DeploymentFactory(
        model=ModelFactory(name="gpt-other"), provider=Provider.objects.get(name="mock"), upstream_model="other"
    )
    gateway_setup.project.allowed_models.add(Model.objects.get(name="gpt-other"))
    second_key = services.create_virtual_key(project=gateway_setup.project, name="second")
    sdk = _sdk(live_gateway, gateway_setup.secret)
    _ask(sdk, "tell me about zebras")
    _ask(sdk, "and about lions", model="gpt-other")
    _ask(_sdk(live_gateway, second_key.secret), "hello from the second key")
    with pytest.raises(openai.NotFoundError):
        _ask(sdk, "x", model="no-such-model")
    zebras, lions, second, refused = logged(4)
    project = gateway_setup.project.id

    assert _ids(_list(api, project=project, key=second_key.key.id)) == [second.request_id]
    assert _ids(_list(api, project=project, model="gpt-other")) == [lions.request_id]
    assert _ids(_list(api, project=project, status="404")) == [refused.request_id]
    assert _ids(_list(api, project=project, status="error")) == [refused.request_id]
    assert len(_ids(_list(api, project=project, status="ok"))) == 3
    assert _ids(_list(api, project=project, q="zebras")) == [zebras.request_id]
    assert _ids(_list(api, project=ProjectFactory().id)) == []


def test_time_range_takes_iso_datetimes_start_included_end_excluded(api):
    insert_rows(*(log_row(request_id=f"h{n}", created_at=T0 + timedelta(hours=n)) for n in range(4)))

    assert _ids(_list(api, start="2026-11-01T13:00:00Z", end="2026-11-01T15:00:00+00:00")) == ["h2", "h1"]
    assert _ids(_list(api, start="2026-11-01T15:00:00+01:00")) == ["h3", "h2"]  # 14:00 UTC
    assert _ids(_list(api, end="2026-11-01T13:00:00")) == ["h0"]  # no offset: UTC


def test_pages_follow_the_next_cursor_to_the_end_without_gaps_or_repeats(api):
    project = ProjectFactory()
    # 120 rows, in pairs with the same created_at, inserted out of order
    rows = insert_rows(
        *(log_row(project=project, created_at=T0 + timedelta(seconds=(n * 7 % 120) // 2)) for n in range(120))
    )
    newest_first = [r.request_id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]

    seen, cursors, response = [], [], _list(api, project=project.id, limit=50)
    while True:
        seen += _ids(response)
        if "X-Next-Cursor" not in response.headers:
            break
        cursor = response.headers["X-Next-Cursor"]
        cursors.append(cursor)
        link = response.headers["Link"]
        assert link.startswith("<http://testserver/api/v1/request-logs?") and link.endswith('>; rel="next"')
        query = parse_qs(urlsplit(link[1 : link.index(">")]).query)
        assert query == {"project": [str(project.id)], "limit": ["50"], "cursor": [cursor]}
        response = _list(api, project=project.id, limit=50, cursor=cursor)

    assert seen == newest_first and len(cursors) == 2
    assert "Link" not in response.headers


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-11-01T12:00:00 01:00"}, "end"),  # an unencoded + arrives as a space
        ({"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "end"),
        ({"status": "teapot"}, "status"),
    ],
)
def test_bad_input_gets_400_naming_the_field(api, params, field):
    response = _list(api, **params)

    assert response.status_code == 400
    assert response.json()["field"] == field and response.json()["detail"]


def test_listing_needs_an_admin_token(anonymous_api):
    assert _list(anonymous_api).status_code == 401
