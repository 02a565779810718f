"""Reading the audit log: GET /api/v1/audit-events (administrators only, filters, keyset pages),
the CSV export (API and admin), and the admin's read-only list."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client
from django.urls import reverse

from gateway import services
from gateway.models import AuditEvent
from tests.audit.conftest import events
from tests.factories import UserFactory
from tests.gateway.admin_api.conftest import BASE, Api
from tests.portal.conftest import World

pytestmark = pytest.mark.django_db


def _csv_rows(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_lists_events_newest_first_with_the_fixed_fields(world: World, api: Api) -> None:
    api.patch(f"/keys/{world.key_a.id}", {"rpm_limit": 3})
    response = api.get("/audit-events?limit=2")
    assert response.status_code == 200
    first = response.json()[0]
    assert {"id", "created_at", "actor", "action", "object_type", "object_id", "source", "changes"} <= first.keys()
    assert first["action"] == "key.update" and first["source"] == "api"
    assert first["actor"]["type"] == "admin_token" and first["actor"]["id"] == str(world.admin.pk)
    assert first["changes"] == {"rpm_limit": {"before": None, "after": 3}}
    ids = [row["id"] for row in response.json()]
    assert ids == sorted(ids, reverse=True)


def test_filters_by_action_object_type_actor_source_and_since(world: World, api: Api) -> None:
    api.post(f"/keys/{world.key_a.id}/revoke")
    assert [e["action"] for e in api.get("/audit-events?action=key.revoke").json()] == ["key.revoke"]
    assert {e["action"] for e in api.get("/audit-events?action=key.").json()} == {"key.create", "key.revoke"}
    assert {e["object_type"] for e in api.get("/audit-events?object_type=budget").json()} == {"budget"}
    assert [e["action"] for e in api.get("/audit-events?actor=admin_token").json()] == ["key.revoke"]
    assert [e["action"] for e in api.get("/audit-events?source=api").json()] == ["key.revoke"]
    revoke = events(action="key.revoke")[0]
    since = revoke.created_at.isoformat().replace("+", "%2B")
    assert [e["id"] for e in api.get(f"/audit-events?since={since}").json()] == [revoke.id]
    assert api.get("/audit-events?since=yesterday").status_code == 400
    assert api.get("/audit-events?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z").json()["field"] == "until"


def test_pages_follow_the_next_cursor_to_the_end(world: World, api: Api) -> None:
    total = AuditEvent.objects.count()
    seen: list[int] = []
    url = "/audit-events?limit=3"
    while True:
        response = api.get(url)
        seen += [row["id"] for row in response.json()]
        if "X-Next-Cursor" not in response:
            break
        assert 'rel="next"' in response["Link"]
        url = f"/audit-events?limit=3&cursor={response['X-Next-Cursor']}"
    assert len(seen) == total == len(set(seen))
    assert api.get("/audit-events?cursor=abc").status_code == 400
    assert api.get("/audit-events?limit=0").status_code == 400


def test_only_administrators_may_read_it(world: World) -> None:
    assert Api(None).get("/audit-events").status_code == 401
    assert Api("sk-sym-not-an-admin-token").get("/audit-events").status_code == 401
    developer = Client()
    developer.force_login(world.dev_a)  # a portal session is not an API credential
    assert developer.get(BASE + "/audit-events").status_code == 401
    assert developer.get(BASE + "/audit-events.csv").status_code == 401


def test_the_api_cannot_write_change_or_delete_events(world: World, api: Api) -> None:
    event = AuditEvent.objects.order_by("id").first()
    assert api.post("/audit-events", {"action": "forged"}).status_code == 405
    assert api.client.delete(f"{BASE}/audit-events/{event.id}").status_code == 404
    assert AuditEvent.objects.filter(action="forged").count() == 0


def test_csv_export_streams_every_selected_event(world: World, api: Api) -> None:
    api.post(f"/keys/{world.key_a.id}/revoke")
    for path in ("/audit-events.csv?action=key.", "/audit-events?action=key.&format=csv"):
        response = api.get(path)
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert response.streaming
        rows = _csv_rows(response)
        assert [row["action"] for row in rows] == ["key.revoke", "key.create"]
        assert json.loads(rows[0]["changes"])["revoked_at"]["before"] is None
        assert rows[0]["hash"] == events(action="key.revoke")[0].hash
    assert api.get("/audit-events?format=xml").status_code == 400


def test_csv_cells_never_start_a_spreadsheet_formula(world: World, api: Api) -> None:
    services.create_business_unit(name='=HYPERLINK("http://evil.test")')
    [row] = [
        row
        for row in _csv_rows(api.get("/audit-events.csv?action=business_unit.create"))
        if "HYPERLINK" in row["object_label"]
    ]
    assert row["object_label"].startswith("'=")


def test_request_id_comes_from_a_sane_header_or_is_made(world: World, api: Api) -> None:
    api.client.defaults["HTTP_X_REQUEST_ID"] = "bad id with spaces\n"
    response = api.patch(f"/keys/{world.key_a.id}", {"rpm_limit": 9})
    made = events(action="key.update")[0].request_id
    assert len(made) == 32 and made == response["X-Request-ID"]


# --- the admin ---


def test_admin_list_is_read_only_and_filters(world: World) -> None:
    client = Client()
    client.force_login(world.admin)
    services.revoke_key(key=world.key_a)
    changelist = reverse("admin:gateway_auditevent_changelist")
    page = client.get(changelist + "?action=key.revoke")
    assert page.status_code == 200
    assert list(page.context["cl"].queryset.values_list("action", flat=True)) == ["key.revoke"]
    event = events(action="key.revoke")[0]
    detail = client.get(reverse("admin:gateway_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200 and "revoked_at" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    assert client.get(reverse("admin:gateway_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:gateway_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert (
        client.post(reverse("admin:gateway_auditevent_change", args=[event.pk]), {"action": "forged"}).status_code
        == 403
    )
    assert AuditEvent.objects.get(pk=event.pk).action == "key.revoke"


def test_admin_exports_the_selected_events_as_csv(world: World) -> None:
    client = Client()
    client.force_login(world.admin)
    chosen = events()[:2]
    response = client.post(
        reverse("admin:gateway_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [e.pk for e in chosen]},
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert sorted(int(row["id"]) for row in _csv_rows(response)) == sorted(e.pk for e in chosen)


def test_staff_without_the_view_permission_cannot_see_the_audit_log(world: World) -> None:
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("admin:gateway_auditevent_changelist")).status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "cursor=99999999999999999999999",
        "cursor=%D9%A3",  # an Arabic-Indic digit: isdigit() but not a number the database takes
        "since=0001-01-01T00:00:00%2B14:00",
        "until=9999-12-31T23:59:59-14:00",
        "limit=100000000000000000000",
        "actor=%00",
        "action=" + "a" * 300,
    ],
)
def test_hostile_filters_get_a_400_naming_the_field(world: World, api: Api, query: str) -> None:
    response = api.get(f"/audit-events?{query}")
    assert response.status_code in (400, 422), response.content
    assert response.json()["detail"]
