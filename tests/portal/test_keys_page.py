"""A project's keys: the list, create in a dialog (the secret shown once), revoke, rotate; who may."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.urls import reverse

from gateway import services
from gateway.models import VirtualKey
from gateway.secrets_format import digest
from tests.conftest import wait_for
from tests.factories import UserFactory
from tests.portal.conftest import seed_usage

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"sk-[A-Za-z0-9_\-]{20,}")


def keys_url(world, project=None):
    return reverse("portal:project-keys", args=[(project or world.project_a).id])


def create_url(world, project=None):
    return reverse("portal:project-key-create", args=[(project or world.project_a).id])


def revoke_url(world, key):
    return reverse("portal:project-key-revoke", args=[key.project_id, key.id])


def rotate_url(world, key):
    return reverse("portal:project-key-rotate", args=[key.project_id, key.id])


# --- who may ---


@pytest.mark.parametrize(
    ("persona", "status"), [("dev_a", 200), ("dev_b", 404), ("manager", 200), ("admin", 200), ("newcomer", 404)]
)
def test_key_list_answers_by_persona(world, login_as, persona, status):
    assert login_as(world.persona(persona)).get(keys_url(world)).status_code == status


@pytest.mark.parametrize("url", ["keys", "create", "revoke", "rotate"])
def test_key_pages_send_anonymous_people_to_sign_in(world, login_as, url):
    target = {
        "keys": keys_url(world),
        "create": create_url(world),
        "revoke": revoke_url(world, world.key_a),
        "rotate": rotate_url(world, world.key_a),
    }[url]
    client = login_as(None)
    response = client.get(target) if url == "keys" else client.post(target)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={target}")


@pytest.mark.parametrize("persona", ["dev_b", "newcomer"])
def test_outsiders_cannot_create_revoke_or_rotate(world, login_as, persona):
    client = login_as(world.persona(persona))
    assert client.post(create_url(world), {"name": "sneaky"}).status_code == 404
    assert client.post(revoke_url(world, world.key_a)).status_code == 404
    assert client.post(rotate_url(world, world.key_a), {"grace": "1h"}).status_code == 404
    world.key_a.refresh_from_db()
    assert world.key_a.revoked_at is None and world.key_a.expires_at is None
    assert VirtualKey.objects.filter(name="sneaky").count() == 0


def test_a_key_of_another_project_is_a_404_even_for_a_member(world, login_as):
    other = services.create_virtual_key(project=world.project_b, name="b-key").key
    url = reverse("portal:project-key-revoke", args=[world.project_a.id, other.id])
    assert login_as(world.dev_a).post(url).status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


@pytest.mark.parametrize("persona", ["manager", "admin"])
def test_managers_and_administrators_may_revoke(world, login_as, persona):
    assert login_as(world.persona(persona)).post(revoke_url(world, world.key_a)).status_code == 302
    world.key_a.refresh_from_db()
    assert world.key_a.revoked_at is not None


@pytest.mark.parametrize("url", ["create", "revoke", "rotate"])
def test_state_changing_views_refuse_get(world, login_as, url):
    target = {
        "create": create_url(world),
        "revoke": revoke_url(world, world.key_a),
        "rotate": rotate_url(world, world.key_a),
    }
    assert login_as(world.dev_a).get(target[url]).status_code == 405


# --- the list ---


def test_list_shows_prefix_status_models_limits_and_last_use_never_the_secret(world, login_as):
    seed_usage(project=world.project_a, key=world.key_a, days=1, per_day=1)
    services.create_virtual_key(
        project=world.project_a, name="batch", allowed_models=["gpt-portal-mini"], rpm_limit=60, tpm_limit=90_000
    )
    page = login_as(world.dev_a).get(keys_url(world)).content.decode()
    assert f"{world.key_a.prefix}…" in page
    assert world.secret_a not in page and not SECRET.search(page.replace(world.key_a.prefix, ""))
    assert "checkout-web" in page and "batch" in page
    assert "60 req/min" in page and "90,000 tok/min" in page
    assert "gpt-portal-mini" in page
    assert ">Active<" in page
    assert "by Alice Archer" in page
    assert page.count("Never") >= 1  # the batch key was never used


def test_list_shows_revoked_expiring_and_expired_keys_with_words(world, login_as):
    services.revoke_key(key=world.key_a)
    services.create_virtual_key(project=world.project_a, name="soon", expires_at=datetime.now(UTC) + timedelta(days=2))
    old = services.create_virtual_key(project=world.project_a, name="old").key
    VirtualKey.objects.filter(pk=old.pk).update(expires_at=datetime.now(UTC) - timedelta(days=1))
    page = login_as(world.dev_a).get(keys_url(world)).content.decode()
    assert ">Revoked<" in page and ">Expiring<" in page and ">Expired<" in page


def test_empty_list_says_what_keys_are_for(world, login_as):
    page = login_as(world.dev_b).get(keys_url(world, world.project_b)).content.decode()
    assert "No keys yet" in page and "?new=1" in page


def test_new_opens_the_dialog(world, login_as):
    page = login_as(world.dev_a).get(keys_url(world) + "?new=1").content.decode()
    assert '<dialog id="key-dialog" aria-labelledby="key-dialog-title" data-open>' in page


def test_key_list_queries_are_bounded_with_fifty_keys(world, login_as, django_assert_max_num_queries):
    for n in range(50):
        services.create_virtual_key(
            project=world.project_a, name=f"key {n}", created_by=world.dev_a, allowed_models=["gpt-portal"]
        )
    client = login_as(world.dev_a)
    with django_assert_max_num_queries(14):
        page = client.get(keys_url(world)).content.decode()
    assert "key 49" in page


# --- create ---


def test_create_shows_the_secret_once_with_snippets_and_no_store(world, login_as, settings):
    settings.PUBLIC_URL = "https://ai.example.test"
    client = login_as(world.dev_a)
    response = client.post(
        create_url(world),
        {"name": "mobile app", "models": ["gpt-portal-mini"], "rpm_limit": "30", "expires_on": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    key = VirtualKey.objects.get(name="mobile app")
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', page).group(1)
    assert secret.startswith(key.prefix)
    assert VirtualKey.objects.get(key_hash=digest(secret)) == key
    assert "it will not be shown again" in page
    assert 'data-copy="#new-secret"' in page
    for needle in (
        'base_url="https://ai.example.test/v1"',  # Python
        'baseURL: "https://ai.example.test/v1"',  # TypeScript
        '.baseUrl("https://ai.example.test/v1")',  # Java
        'Endpoint = new Uri("https://ai.example.test/v1")',  # C#
        "curl https://ai.example.test/v1/chat/completions",
        'ANTHROPIC_BASE_URL="https://ai.example.test"',
        "gpt-portal-mini",
    ):
        assert needle in page, needle
    assert "<html" not in page  # htmx: only the dialog's content
    assert key.created_by == world.dev_a and key.rpm_limit == 30
    assert [m.name for m in key.allowed_models.all()] == ["gpt-portal-mini"]

    # never again: not in the list, not on any page
    for url in (
        keys_url(world),
        keys_url(world) + "?new=1",
        reverse("portal:dashboard"),
        reverse("portal:project", args=[world.project_a.id]),
    ):
        assert secret not in client.get(url).content.decode()


def test_create_as_a_plain_post_renders_the_page_with_the_secret_open(world, login_as):
    response = login_as(world.dev_a).post(create_url(world), {"name": "no-js"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "<html" in page and "data-open" in page and 'id="new-secret"' in page
    assert "Key created: no-js" in page


def test_create_with_an_expiry_date_ends_the_key_at_the_end_of_that_day(world, login_as):
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    login_as(world.dev_a).post(create_url(world), {"name": "temp", "expires_on": day.isoformat()})
    key = VirtualKey.objects.get(name="temp")
    assert key.expires_at == datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
        ({"name": "x", "expires_on": "2001-01-01"}, "expires_on", "Pick today or a later day."),
        ({"name": "x", "expires_on": "soon"}, "expires_on", "Enter a valid date."),
        ({"name": "x", "models": ["not-a-model"]}, "models", "Select a valid choice."),
        ({"name": "x", "rpm_limit": "0"}, "rpm_limit", "greater than or equal to 1"),
        ({"name": "x", "tpm_limit": "many"}, "tpm_limit", "Enter a whole number."),
    ],
)
def test_create_refuses_invalid_input_beside_the_field(world, login_as, data, field, message):
    client = login_as(world.dev_a)
    response = client.post(create_url(world), data, headers={"HX-Request": "true"})
    assert response.status_code == 200  # htmx swaps only 2xx answers
    page = response.content.decode()
    assert message in page
    assert (
        re.search(r'class="field invalid">\s*<(label|legend)[^>]*>', page) or 'fieldset class="field invalid"' in page
    )
    assert f'id="id_{field}' in page
    assert "new-secret" not in page
    assert VirtualKey.objects.count() == 1
    assert client.post(create_url(world), data).status_code == 400  # the plain form


def test_create_puts_a_service_refusal_beside_the_models(world, login_as):
    # the project loses a model between the form being shown and sent: the service refuses it
    page_models = ["gpt-portal-mini"]
    client = login_as(world.dev_a)
    world.project_a.allowed_models.remove(world.other_model)
    response = client.post(create_url(world), {"name": "x", "models": page_models}, headers={"HX-Request": "true"})
    assert "Select a valid choice" in response.content.decode()


# --- revoke ---


def test_revoke_with_htmx_answers_the_table_and_the_key_is_revoked(world, login_as):
    response = login_as(world.dev_a).post(revoke_url(world, world.key_a), headers={"HX-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 200 and 'id="key-table"' in page and "<html" not in page
    assert "is revoked" in page and ">Revoked<" in page
    world.key_a.refresh_from_db()
    assert world.key_a.revoked_at is not None


def test_revoke_asks_for_confirmation_in_the_page(world, login_as):
    page = login_as(world.dev_a).get(keys_url(world)).content.decode()
    assert 'hx-confirm="Revoke the key' in page and 'data-confirm="Revoke the key' in page


# --- rotate ---


def test_rotate_shows_the_new_secret_once_and_the_old_key_expires_after_the_grace(world, login_as):
    client = login_as(world.dev_a)
    before = datetime.now(UTC)
    response = client.post(rotate_url(world, world.key_a), {"grace": "1d"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "Key rotated: checkout-web" in page and "keeps working until" in page
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', page).group(1)
    new_key = VirtualKey.objects.exclude(pk=world.key_a.pk).get()
    assert VirtualKey.objects.get(key_hash=digest(secret)) == new_key
    world.key_a.refresh_from_db()
    assert before + timedelta(hours=23) < world.key_a.expires_at <= datetime.now(UTC) + timedelta(days=1)
    listing = client.get(keys_url(world)).content.decode()
    assert secret not in listing and ">Expiring<" in listing
    assert "in 23 hours" in listing or "in 1 day" in listing


def test_rotate_refuses_an_unknown_grace_and_a_revoked_key(world, login_as):
    client = login_as(world.dev_a)
    response = client.post(rotate_url(world, world.key_a), {"grace": "forever"})
    assert response.status_code == 302
    assert VirtualKey.objects.count() == 1
    services.revoke_key(key=world.key_a)
    response = client.post(rotate_url(world, world.key_a), {"grace": "1h"}, headers={"HX-Request": "true"})
    assert "Only an active key can be rotated" in response.content.decode()
    assert response["HX-Retarget"] == "#key-table"
    assert VirtualKey.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_revoked_key_is_refused_on_v1_right_after_revoke(gateway_setup, live_gateway, client):
    developer = UserFactory(username="live-dev")
    services.add_member(project=gateway_setup.project, user=developer)
    client.force_login(developer)
    call = {
        "url": f"{live_gateway}/v1/chat/completions",
        "headers": {"Authorization": f"Bearer {gateway_setup.secret}"},
        "json": {"model": gateway_setup.model, "messages": [{"role": "user", "content": "hi"}]},
    }
    assert httpx.post(**call, timeout=10).status_code == 200

    revoke = reverse("portal:project-key-revoke", args=[gateway_setup.project.id, gateway_setup.key_id])
    assert client.post(revoke).status_code == 302

    refused = wait_for(lambda: (r := httpx.post(**call, timeout=10)).status_code == 401 and r, timeout=5)
    assert refused and refused.status_code == 401
    assert (
        refused.json()["error"]["code"] in {"invalid_api_key", "key_revoked", "revoked_key"} or refused.json()["error"]
    )
