"""The request-log browser (/logs/) and one row in detail (/logs/<request_id>/)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from gateway import services

pytestmark = pytest.mark.django_db

LOGS = reverse("portal:logs")
_ids = itertools.count(1)


def log_row(project: Any, *, key: Any = None, minutes_ago: float = 1, **fields: Any) -> str:
    """One request-log row written as the log writer writes it; returns its request id."""
    request_id = fields.pop("request_id", f"req-test-{next(_ids):06d}")
    entry = {
        "request_id": request_id,
        "created_at": datetime.now(UTC) - timedelta(minutes=minutes_ago),
        "endpoint": "chat",
        "key_id": key.id if key else None,
        "key_prefix": key.prefix if key else "",
        "project_id": project.id if project else None,
        "model": "gpt-portal",
        "answered_model": "gpt-portal",
        "provider": "portal-upstream",
        "status_code": 200,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cost": Decimal("0.0125"),
        "latency_ms": 420.0,
    } | fields
    services.record_request_logs(entries=[entry])
    return request_id


def detail_url(request_id: str) -> str:
    return reverse("portal:log-detail", args=[request_id])


def request_ids(html: str) -> list[str]:
    return re.findall(r"/logs/(req-[\w-]+)/", html)


# --- the list ---


def test_developer_sees_only_rows_of_their_projects(world, login_as):
    mine = log_row(world.project_a, key=world.key_a)
    theirs = log_row(world.project_b)
    response = login_as(world.dev_a).get(LOGS)
    assert response.status_code == 200
    assert mine in request_ids(response.content.decode())
    assert theirs not in response.content.decode()


def test_manager_and_administrator_see_every_project_of_the_unit(world, login_as):
    a, b = log_row(world.project_a), log_row(world.project_b)
    for user in (world.manager, world.admin):
        html = login_as(user).get(LOGS).content.decode()
        assert {a, b} <= set(request_ids(html))


def test_rows_show_status_model_key_project_tokens_cost_and_latency(world, login_as):
    log_row(
        world.project_a,
        key=world.key_a,
        model="gpt-portal",
        answered_model="gpt-portal-mini",
        input_tokens=12345,
        output_tokens=678,
        cost=Decimal("0.000123"),
        latency_ms=1234.0,
    )
    html = login_as(world.dev_a).get(LOGS).content.decode()
    assert "200 OK" in html
    assert "→ gpt-portal-mini" in html  # the answered model, when a fallback answered
    assert world.key_a.prefix in html
    assert "Checkout" in html
    assert "12,345" in html and "678" in html
    assert "€0.000123" in html  # a small amount keeps its digits
    assert "1,234 ms" in html


def test_filters_narrow_by_status_model_key_and_project(world, login_as):
    ok = log_row(world.project_a, key=world.key_a)
    failed = log_row(world.project_a, key=world.key_a, status_code=502, error_code="upstream_error", cost=None)
    other_model = log_row(world.project_a, model="gpt-portal-mini", answered_model="gpt-portal-mini")
    keyless = log_row(world.project_a)
    b = log_row(world.project_b)
    client = login_as(world.manager)

    def ids(**query: Any) -> set[str]:
        response = client.get(LOGS, query)
        assert response.status_code == 200
        return set(request_ids(response.content.decode()))

    assert ids(status="error") == {failed}
    assert ids(status="502") == {failed}
    assert ids(status="ok") == {ok, other_model, keyless, b}
    assert ids(model="gpt-portal-mini") == {other_model}
    assert ids(key=world.key_a.id) == {ok, failed}
    assert ids(project=world.project_b.id) == {b}


def test_time_range_keeps_rows_between_from_and_to(world, login_as):
    old = log_row(world.project_a, minutes_ago=60 * 24 * 3)
    recent = log_row(world.project_a, minutes_ago=5)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    until = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    client = login_as(world.dev_a)
    assert set(request_ids(client.get(LOGS, {"from": since}).content.decode())) == {recent}
    assert set(request_ids(client.get(LOGS, {"to": until}).content.decode())) == {old}


def test_text_search_finds_words_of_the_request_or_the_answer(world, login_as):
    hit = log_row(
        world.project_a,
        bodies=("full", {"messages": [{"role": "user", "content": "where is the zanzibar invoice"}]}, None),
    )
    log_row(world.project_a, bodies=("full", {"messages": [{"role": "user", "content": "hello"}]}, None))
    html = login_as(world.dev_a).get(LOGS, {"q": "zanzibar"}).content.decode()
    assert set(request_ids(html)) == {hit}


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"from": "yesterday"}, "from", "Enter a date and time like"),
        ({"from": "2026-12-02T10:00", "to": "2026-12-01T10:00"}, "to", "Choose a time after"),
        ({"status": "teapot"}, "status", "Choose a status"),
        ({"status": "999"}, "status", "Choose a status"),
        ({"key": "abc"}, "key", "Choose one of the keys of your projects"),
        ({"model": "m" * 300}, "model", "at most 128 characters"),
    ],
)
def test_invalid_filter_shows_a_message_beside_it_when_given(world, login_as, query, field, message):
    log_row(world.project_a)
    response = login_as(world.dev_a).get(LOGS, query)
    assert response.status_code == 200
    html = response.content.decode()
    block = html.split(f'for="id_{field}"', 1)[1].split('<div class="field', 1)[0]
    assert message in block
    assert request_ids(html) == []


def test_project_of_another_team_is_refused_like_one_that_does_not_exist(world, login_as):
    log_row(world.project_b)
    client = login_as(world.dev_a)
    theirs = client.get(LOGS, {"project": world.project_b.id}).content.decode()
    missing = client.get(LOGS, {"project": 999999}).content.decode()
    assert "Choose one of your projects." in theirs and "Choose one of your projects." in missing
    assert "Search" not in theirs.split("<form", 1)[1].split("</form>")[0]  # B is not even a choice


def test_stale_cursor_asks_to_start_again_when_it_is_not_valid(world, login_as):
    response = login_as(world.dev_a).get(LOGS, {"cursor": "not-a-cursor"})
    assert response.status_code == 200
    assert "no longer valid" in response.content.decode()


def test_pages_go_older_then_newer_and_back_to_the_newest(world, login_as):
    ids = [log_row(world.project_a, minutes_ago=i) for i in range(120)]  # ids[0] is the newest
    client = login_as(world.dev_a)
    first = client.get(LOGS, {"status": "ok"})
    html = first.content.decode()
    assert request_ids(html) == ids[:50]
    older = re.search(r'href="([^"]*cursor=[^"]*)"[^>]*rel="next"', html).group(1).replace("&amp;", "&")
    assert "status=ok" in older  # the filters stay
    second = client.get(older).content.decode()
    assert request_ids(second) == ids[50:100]
    newer = re.search(r'href="([^"]*newer=[^"]*)"', second).group(1).replace("&amp;", "&")
    assert request_ids(client.get(newer).content.decode()) == ids[:50]
    third = client.get(re.search(r'href="([^"]*cursor=[^"]*)"[^>]*rel="next"', second).group(1).replace("&amp;", "&"))
    third_html = third.content.decode()
    assert request_ids(third_html) == ids[100:]
    assert "No older rows" in third_html
    assert 'href="/logs/?status=ok"' in third_html  # Newest
    back = re.search(r'href="([^"]*newer=[^"]*)"', third_html).group(1).replace("&amp;", "&")
    assert request_ids(client.get(back).content.decode()) == ids[50:100]


def test_htmx_gets_only_the_browser_and_a_clean_address(world, login_as):
    log_row(world.project_a)
    response = login_as(world.dev_a).get(
        LOGS, {"project": "", "status": "ok", "model": "", "q": ""}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="log-browser">')
    assert "<html" not in html
    assert response["HX-Push-Url"] == "/logs/?status=ok"
    assert "HX-Request" in response["Vary"]


def test_every_htmx_link_and_form_also_works_without_htmx(world, login_as):
    for i in range(60):
        log_row(world.project_a, minutes_ago=i)
    html = login_as(world.dev_a).get(LOGS, {"status": "ok"}).content.decode()
    for tag in re.findall(r"<(?:a|form)\b[^>]*hx-get[^>]*>", html):
        assert 'href="' in tag or 'action="' in tag, tag


def test_empty_state_offers_a_key_when_there_are_no_rows(world, login_as):
    html = login_as(world.dev_a).get(LOGS).content.decode()
    assert "No requests yet" in html
    filtered = login_as(world.dev_a).get(LOGS, {"status": "error"}).content.decode()
    assert "No requests match these filters" in filtered


def test_newcomer_without_projects_is_offered_to_join_one(world, login_as):
    log_row(world.project_a)
    html = login_as(world.newcomer).get(LOGS).content.decode()
    assert "No projects yet" in html
    assert reverse("portal:request-access") in html


def test_anonymous_is_sent_to_sign_in(world, login_as):
    response = login_as(None).get(LOGS)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_list_queries_stay_bounded_when_the_page_is_full(world, login_as, django_assert_max_num_queries):
    for i in range(50):
        log_row(world.project_a, key=world.key_a, minutes_ago=i)
    client = login_as(world.dev_a)
    client.get(LOGS)  # warm caches (sessions, content types)
    with django_assert_max_num_queries(12):
        response = client.get(LOGS, {"status": "ok", "q": "x"})
    with django_assert_max_num_queries(12):
        response = client.get(LOGS)
    assert len(request_ids(response.content.decode())) == 50


# --- one row ---


def test_detail_shows_the_facts_of_a_call(world, login_as):
    request_id = log_row(
        world.project_a,
        key=world.key_a,
        member_id=world.dev_a.id,
        answered_model="gpt-portal-mini",
        status_code=200,
        stream=True,
        input_tokens=1000,
        output_tokens=20,
        cached_tokens=400,
        usage_estimated=True,
        ttft_ms=210.0,
        latency_ms=900.0,
        user_agent="OpenAI/Python 1.55",
        attempts=[
            {
                "model": "gpt-portal",
                "deployment": 1,
                "provider": "portal-upstream",
                "status": 503,
                "error": "upstream_unavailable",
                "latency_ms": 30.0,
            }
        ],
        guardrails=[{"where": "input", "check": "pii", "action": "redact", "count": 2, "kinds": ["email", "phone"]}],
    )
    response = login_as(world.dev_a).get(detail_url(request_id))
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        request_id,
        "gpt-portal-mini",
        "fallback",
        "checkout-web",
        world.key_a.prefix,
        "Alice Archer",
        "1,000",
        "400 cached",
        "estimated",
        "210 ms",
        "900 ms",
        "OpenAI/Python 1.55",
        "upstream_unavailable",
        "email, phone",
        "redact",
    ):
        assert text in html, text


def test_detail_pretty_prints_json_bodies_and_marks_the_policy(world, login_as):
    request_id = log_row(
        world.project_a,
        bodies=(
            "full",
            {"model": "gpt-portal", "messages": [{"role": "user", "content": "hi"}]},
            {"id": "x", "choices": []},
        ),
    )
    html = login_as(world.dev_a).get(detail_url(request_id)).content.decode()
    assert "Full bodies" in html
    assert "{\n  &quot;model&quot;: &quot;gpt-portal&quot;,\n  &quot;messages&quot;: [" in html


def test_detail_shows_a_streams_answer_as_its_text(world, login_as):
    request_id = log_row(
        world.project_a, stream=True, bodies=("full", {"stream": True}, {"stream": True, "content": "Hello there"})
    )
    html = login_as(world.dev_a).get(detail_url(request_id)).content.decode()
    assert "reassembled from the stream" in html
    assert ">Hello there</pre>" in html


def test_detail_marks_truncated_bodies_and_shows_them_as_text(world, login_as, settings):
    settings.LOG_BODY_MAX_BYTES = 40
    request_id = log_row(world.project_a, bodies=("full", {"messages": [{"content": "x" * 200}]}, None))
    html = login_as(world.dev_a).get(detail_url(request_id)).content.decode()
    assert "Truncated" in html
    assert "[truncated:" in html
    assert "Shown as stored" in html


def test_detail_says_when_the_policy_kept_no_bodies(world, login_as):
    request_id = log_row(world.project_a, bodies=("metadata", {"messages": []}, {"choices": []}))
    html = login_as(world.dev_a).get(detail_url(request_id)).content.decode()
    assert "Metadata only" in html
    assert "keeps only metadata" in html


@pytest.mark.parametrize(("persona", "status"), [("dev_a", 200), ("dev_b", 404), ("manager", 200), ("admin", 200)])
def test_detail_of_a_row_is_404_for_who_may_not_see_its_project(world, login_as, persona, status):
    request_id = log_row(world.project_a)
    assert login_as(world.persona(persona)).get(detail_url(request_id)).status_code == status


def test_detail_of_a_row_without_project_is_only_for_administrators(world, login_as):
    request_id = log_row(None, status_code=401, error_code="invalid_api_key", cost=None)
    assert login_as(world.manager).get(detail_url(request_id)).status_code == 404
    assert login_as(world.admin).get(detail_url(request_id)).status_code == 200


def test_detail_of_a_missing_row_is_404(world, login_as):
    assert login_as(world.admin).get(detail_url("req-nothing")).status_code == 404


def test_detail_links_back_to_the_filtered_log(world, login_as):
    request_id = log_row(world.project_a)
    html = login_as(world.dev_a).get(detail_url(request_id), {"status": "ok", "junk": "x"}).content.decode()
    assert 'href="/logs/?status=ok"' in html


def test_guardrail_verdict_with_odd_fields_is_shown_as_text(world, login_as):
    request_id = log_row(
        world.project_a, guardrails=[{"check": "denylist", "action": "block", "pattern": "secret-*"}, "odd"]
    )
    html = login_as(world.dev_a).get(detail_url(request_id)).content.decode()
    assert "denylist" in html
    assert json.dumps({"pattern": "secret-*"}).replace('"', "&quot;") in html
