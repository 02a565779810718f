"""Whatever a client, a model or a colleague typed renders inert: every portal page that can show a
prompt, a completion, a model, key, project or unit name, an error code, a user agent or a
guardrail verdict escapes it. (The browser check, that no dialog opens on the log detail page, is
in tests/e2e/test_logs_and_reports.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from billing import services as billing_services
from gateway import services
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory, UserFactory

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
BOTH = f"{SCRIPT}{IMG}"
RAW = (SCRIPT, IMG, "<script>alert", "<img src=x")
REQUEST_ID = "req-xss-0001"


@dataclass
class Hostile:
    unit: Any
    project: Any
    key: Any


def build_hostile(world: Any) -> Hostile:
    """A unit, project, key, member, model and provider named with markup, and a request-log row
    and ledger debit whose every free-text field carries it."""
    unit = services.create_business_unit(name=f"Unit {BOTH}")
    unit.managers.add(world.manager)
    project = services.create_project(name=f"Project {BOTH}", business_unit=unit)
    colleague = UserFactory(username="mallory", first_name=SCRIPT, last_name=IMG)
    services.add_member(project=project, user=world.dev_a, role="owner")
    services.add_member(project=project, user=colleague)
    key = services.create_virtual_key(project=project, name=f"key {BOTH}", created_by=colleague).key
    provider = ProviderFactory(name=f"provider {BOTH}", approved=True)
    DeploymentFactory(
        model=ModelFactory(name=f"model{BOTH}"),
        provider=provider,
        upstream_model=BOTH,
        input_price=Decimal("1"),
        output_price=Decimal("2"),
    )
    now = datetime.now(UTC) - timedelta(minutes=2)
    entry = {
        "request_id": REQUEST_ID,
        "created_at": now,
        "endpoint": "chat",
        "key_id": key.id,
        "key_prefix": key.prefix,
        "project_id": project.id,
        "member_id": colleague.id,
        "model": BOTH,
        "answered_model": f"{IMG}{SCRIPT}",
        "provider": BOTH,
        "status_code": 400,
        "error_code": IMG,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": Decimal("0.001"),
        "latency_ms": 10.0,
        "user_agent": BOTH,
        "attempts": [{"model": BOTH, "provider": BOTH, "status": BOTH, "error": IMG, "latency_ms": 1}],
        "guardrails": [{"where": BOTH, "check": BOTH, "action": BOTH, "count": BOTH, "kinds": [BOTH], BOTH: BOTH}],
        "bodies": (
            "full",
            {"model": BOTH, "messages": [{"role": "user", "content": BOTH}]},
            {"choices": [{"message": {"role": "assistant", "content": BOTH}}]},
        ),
    }
    services.record_request_logs(
        entries=[entry, entry | {"request_id": "req-xss-0002", "bodies": ("full", BOTH, BOTH)}]
    )
    services.record_request_logs(
        entries=[
            entry
            | {
                "request_id": "req-xss-0003",
                "stream": True,
                "bodies": ("full", {"stream": True}, {"stream": True, "content": BOTH}),
            }
        ]
    )
    billing_services.record_usage(
        entries=[
            {
                "request_id": REQUEST_ID,
                "created_at": now,
                "project_id": project.id,
                "business_unit_id": unit.id,
                "key_id": key.id,
                "key_prefix": key.prefix,
                "model": BOTH,
                "input_tokens": 10,
                "output_tokens": 5,
                "cost": Decimal("0.001"),
            }
        ]
    )
    services.notify(users=[world.dev_a], kind="budget", title=BOTH, body=BOTH, link="/", project_id=project.id)
    return Hostile(unit=unit, project=project, key=key)


@pytest.fixture
def hostile(world):  # type: ignore[no-untyped-def]
    return build_hostile(world)


def pages(h: Hostile) -> list[tuple[str, str, dict[str, str]]]:
    """(what, url, query) of every page that can show the hostile values."""
    p = h.project.id
    return [
        ("dashboard", reverse("portal:dashboard"), {}),
        ("project", reverse("portal:project", args=[p]), {}),
        ("project usage", reverse("portal:project-usage", args=[p]), {}),
        ("project members", reverse("portal:project-members", args=[p]), {}),
        ("project ledger", reverse("portal:project-ledger", args=[p]), {}),
        ("keys", reverse("portal:project-keys", args=[p]), {}),
        ("log list", reverse("portal:logs"), {}),
        ("log list, filtered", reverse("portal:logs"), {"model": BOTH, "q": BOTH, "status": BOTH, "from": BOTH}),
        ("log list, by project", reverse("portal:logs"), {"project": str(p)}),
        ("log detail", reverse("portal:log-detail", args=[REQUEST_ID]), {"model": BOTH}),
        ("log detail, text bodies", reverse("portal:log-detail", args=["req-xss-0002"]), {}),
        ("log detail, stream", reverse("portal:log-detail", args=["req-xss-0003"]), {}),
        ("models", reverse("portal:models"), {}),
        ("requests", reverse("portal:requests"), {}),
        ("units", reverse("portal:units"), {}),
        ("unit report", reverse("portal:unit-report", args=[h.unit.id]), {}),
    ]


def assert_inert(html: str, what: str) -> None:
    for raw in RAW:
        assert raw not in html, f"{what}: {raw!r} is not escaped"


@pytest.mark.parametrize("persona", ["dev_a", "manager", "admin"])
def test_markup_in_every_field_renders_inert_on_every_page(world, hostile, login_as, persona):
    client = login_as(world.persona(persona))
    client.raise_request_exception = False  # a broken page is reported with the others, below
    shown, broken = [], []
    for what, url, query in pages(hostile):
        for htmx in (False, True):
            response = client.get(url, query, headers={"HX-Request": "true"} if htmx else {})
            if response.status_code == 404:
                continue  # not theirs (units for a developer) or a page still being built
            if response.status_code != 200:
                broken.append(f"{what}: {response.status_code}")
                continue
            html = response.content.decode()
            assert_inert(html, f"{what} as {persona}{' (htmx)' if htmx else ''}")
            shown.append(what)
    assert not broken, broken
    assert {"log list", "log detail", "log detail, stream"} <= set(shown)
    if persona != "dev_a":
        assert {"units", "unit report"} <= set(shown)


def test_log_detail_shows_the_escaped_text_of_prompt_completion_and_verdicts(world, hostile, login_as):
    html = login_as(world.dev_a).get(reverse("portal:log-detail", args=[REQUEST_ID])).content.decode()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert html.count(escaped) >= 6  # prompt, completion, model, user agent, verdicts, ...
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html  # the error code


def test_csv_is_an_attachment_the_browser_never_renders(world, hostile, login_as):
    response = login_as(world.manager).get(reverse("portal:unit-report-csv", args=[hostile.unit.id]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "<" not in response["Content-Disposition"]
    text = response.content.decode()
    assert BOTH.replace('"', '""') in text  # the data as it is, quoted as CSV quotes
    assert "\n'" not in text and ",'Project" not in text  # names not starting with a formula stay as they are
