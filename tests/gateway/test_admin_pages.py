"""The Django admin: every page loads, writes go through the services, and secrets stay hidden.

Tests that save run with `transaction=True`: outside a test transaction Django enforces the
services' `atomic(durable=True)`, exactly as in production.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Model as DjangoModel
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

from gateway import crypto, services
from gateway.models import AdminToken, BusinessUnit, Deployment, Membership, Model, Project, Provider, VirtualKey
from tests.factories import (
    BusinessUnitFactory,
    DeploymentFactory,
    MembershipFactory,
    ModelFactory,
    ProjectFactory,
    ProviderFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SECRET_PATTERN = re.compile(r"sk-sym-[A-Za-z0-9_-]{20,}")
MODELS: dict[str, type[DjangoModel]] = {
    "businessunit": BusinessUnit,
    "project": Project,
    "provider": Provider,
    "model": Model,
    "virtualkey": VirtualKey,
    "admintoken": AdminToken,
}
# session, user, two counts, the rows, a prefetch and the list filters' choices (5 to 7 today)
MAX_CHANGELIST_QUERIES = 8


@pytest.fixture
def client(client: Client, admin_user: AbstractBaseUser) -> Client:
    client.force_login(admin_user)
    return client


@pytest.fixture
def rows() -> None:
    """A few rows of every model, each with related rows a changelist might look up one by one."""
    for n in range(3):
        unit = BusinessUnitFactory()
        unit.managers.add(UserFactory())
        model = DeploymentFactory().model
        project = ProjectFactory(business_unit=unit, allowed_models=[model])
        MembershipFactory(project=project)
        services.create_virtual_key(project=project, name=f"key {n}")
        services.issue_admin_token(username=f"ops{n}")


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def _pages_of(client: Client, obj: DjangoModel, model: str) -> str:
    """The object's change page, its history and its changelist, as one text."""
    return "".join(
        _page(client, reverse(f"admin:gateway_{model}_{view}", args=args))
        for view, args in [("change", [obj.pk]), ("history", [obj.pk]), ("changelist", [])]
    )


def _management_form(prefix: str, *, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


# --- every page loads ---


@pytest.mark.parametrize("model", MODELS)
def test_changelist_loads_with_bounded_queries_when_rows_exist(
    client: Client, rows: None, model: str, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        response = client.get(reverse(f"admin:gateway_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("model", [m for m in MODELS if m != "admintoken"])
def test_add_page_loads_when_admin_is_logged_in(client: Client, model: str) -> None:
    assert client.get(reverse(f"admin:gateway_{model}_add")).status_code == 200


@pytest.mark.parametrize("model", MODELS)
def test_change_page_loads_when_the_row_exists(client: Client, rows: None, model: str) -> None:
    obj = MODELS[model]._default_manager.first()
    assert client.get(reverse(f"admin:gateway_{model}_change", args=[obj.pk])).status_code == 200


def test_admin_token_cannot_be_added_when_using_the_admin(client: Client) -> None:
    assert client.get(reverse("admin:gateway_admintoken_add")).status_code == 403


# --- providers: the API key is write-only ---


@pytest.mark.django_db(transaction=True)
def test_provider_key_is_stored_encrypted_and_never_shown_when_added_through_the_admin(
    client: Client, admin_user: AbstractBaseUser
) -> None:
    api_key = "sk-live-upstream-5b0c1f7e9a"
    response = client.post(
        reverse("admin:gateway_provider_add"),
        {"name": "openai", "kind": Provider.Kind.OPENAI, "base_url": "", "api_key": api_key, "approved": "on"},
    )

    assert response.status_code == 302
    provider = Provider.objects.get(name="openai")
    assert provider.api_key_encrypted != api_key
    assert crypto.decrypt_secret(provider.api_key_encrypted, what="test") == api_key
    pages = _pages_of(client, provider, "provider")
    assert api_key not in pages
    assert provider.api_key_encrypted not in pages
    assert "not set" not in _page(client, reverse("admin:gateway_provider_change", args=[provider.pk]))


@pytest.mark.django_db(transaction=True)
def test_provider_keeps_its_key_when_the_field_is_left_blank(client: Client) -> None:
    provider = ProviderFactory(name="local", base_url="http://127.0.0.1:9/v1")
    stored = provider.api_key_encrypted

    response = client.post(
        reverse("admin:gateway_provider_change", args=[provider.pk]),
        {"name": "local-vllm", "base_url": "http://10.0.0.5:8000/v1", "api_key": "", "approved": "on"},
    )

    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.name == "local-vllm"
    assert provider.api_key_encrypted == stored
    assert crypto.decrypt_secret(provider.api_key_encrypted, what="test") == "sk-upstream-test-secret"


@pytest.mark.django_db(transaction=True)
def test_provider_key_is_replaced_or_removed_when_the_admin_says_so(client: Client) -> None:
    provider = ProviderFactory()
    url = reverse("admin:gateway_provider_change", args=[provider.pk])
    form = {"name": provider.name, "base_url": provider.base_url, "approved": "on"}

    client.post(url, {**form, "api_key": "sk-new-key-0001"})
    provider.refresh_from_db()
    assert crypto.decrypt_secret(provider.api_key_encrypted, what="test") == "sk-new-key-0001"

    client.post(url, {**form, "api_key": "", "remove_api_key": "on"})
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""
    assert "not set" in _page(client, url)


@pytest.mark.django_db(transaction=True)
def test_service_error_is_shown_on_the_form_when_a_provider_lacks_its_base_url(client: Client) -> None:
    response = client.post(
        reverse("admin:gateway_provider_add"),
        {"name": "vllm", "kind": Provider.Kind.OPENAI_COMPATIBLE, "base_url": "", "api_key": "sk-typed"},
    )

    assert response.status_code == 200
    assert "base_url is required" in response.content.decode()
    assert "sk-typed" not in response.content.decode()
    assert not Provider.objects.exists()


# --- projects, models: saved together with their inline rows ---


@pytest.mark.django_db(transaction=True)
def test_project_is_created_with_its_models_and_members_when_added_through_the_admin(client: Client) -> None:
    unit, model, user = BusinessUnitFactory(), ModelFactory(name="gpt-4o"), UserFactory()

    response = client.post(
        reverse("admin:gateway_project_add"),
        {
            "name": "Shop",
            "business_unit": unit.pk,
            "allowed_models": [model.pk],
            **_management_form("memberships", total=1),
            "memberships-0-user": user.pk,
            "memberships-0-role": Membership.Role.OWNER,
        },
    )

    assert response.status_code == 302
    project = Project.objects.get(name="Shop")
    assert list(project.allowed_models.values_list("name", flat=True)) == ["gpt-4o"]
    assert project.memberships.get().role == Membership.Role.OWNER


@pytest.mark.django_db(transaction=True)
def test_model_is_created_with_its_deployments_when_added_through_the_admin(client: Client) -> None:
    provider = ProviderFactory()

    response = client.post(
        reverse("admin:gateway_model_add"),
        {
            "name": "llama-3-70b",
            "enabled": "on",
            **_management_form("deployments", total=1),
            "deployments-0-provider": provider.pk,
            "deployments-0-upstream_model": "meta-llama/Llama-3-70B",
            "deployments-0-weight": "3",
            "deployments-0-priority": "0",
            "deployments-0-enabled": "on",
        },
    )

    assert response.status_code == 302
    deployment = Deployment.objects.get(model__name="llama-3-70b")
    assert (deployment.provider, deployment.upstream_model, deployment.weight) == (
        provider,
        "meta-llama/Llama-3-70B",
        3,
    )


def _model_with_output_price(client: Client, price: str) -> HttpResponse:
    return client.post(
        reverse("admin:gateway_model_add"),
        {
            "name": "llama-3-70b",
            "enabled": "on",
            **_management_form("deployments", total=1),
            "deployments-0-provider": ProviderFactory().pk,
            "deployments-0-upstream_model": "meta-llama/Llama-3-70B",
            "deployments-0-weight": "1",
            "deployments-0-priority": "0",
            "deployments-0-enabled": "on",
            "deployments-0-output_price": price,
        },
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sent", ["1e30", "2.47e38", "1" * 40, "NaN", "Infinity", "1e-30", "abc"])
def test_model_admin_shows_a_form_error_on_the_price_when_a_deployment_price_does_not_fit(
    client: Client, sent: str
) -> None:
    response = _model_with_output_price(client, sent)

    assert response.status_code == 200
    [inline] = response.context["inline_admin_formsets"]
    assert "output_price" in inline.formset.errors[0]
    assert not Model.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_model_admin_shows_the_services_error_naming_the_price_when_a_deployment_price_is_negative(
    client: Client,
) -> None:
    response = _model_with_output_price(client, "-1")

    assert response.status_code == 200
    [message] = response.context["adminform"].form.non_field_errors()
    assert message.startswith("deployments.0.output_price must be a decimal number from 0 to 999999.999999")
    assert not Model.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_model_keeps_its_deployments_when_only_the_model_changes(client: Client) -> None:
    deployment = DeploymentFactory()
    model = deployment.model

    response = client.post(
        reverse("admin:gateway_model_change", args=[model.pk]),
        {
            "description": "now described",
            "enabled": "on",
            **_management_form("deployments", total=1, initial=1),
            "deployments-0-id": deployment.pk,
            "deployments-0-model": model.pk,
            "deployments-0-provider": deployment.provider_id,
            "deployments-0-upstream_model": deployment.upstream_model,
            "deployments-0-weight": deployment.weight,
            "deployments-0-priority": deployment.priority,
            "deployments-0-enabled": "on",
        },
    )

    assert response.status_code == 302
    model.refresh_from_db()
    assert model.description == "now described"
    assert list(model.deployments.values_list("pk", flat=True)) == [deployment.pk]


# --- virtual keys: the secret is shown once, the hash never ---


@pytest.mark.django_db(transaction=True)
def test_secret_is_shown_once_when_a_key_is_added_through_the_admin(
    client: Client, admin_user: AbstractBaseUser
) -> None:
    project = ProjectFactory()

    response = client.post(
        reverse("admin:gateway_virtualkey_add"),
        {"project": project.pk, "name": "ci", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert not response.cookies.get("messages"), "the secret must not travel in the messages cookie"
    page = response.content.decode()
    secrets = SECRET_PATTERN.findall(page)
    assert len(secrets) == 1
    key = VirtualKey.objects.get(name="ci")
    assert hashlib.sha256(secrets[0].encode()).hexdigest() == key.key_hash
    assert key.created_by == admin_user
    later = _pages_of(client, key, "virtualkey")
    assert secrets[0] not in later
    assert key.key_hash not in later
    assert key.prefix in later


def test_secret_and_hash_are_hidden_when_a_key_change_page_is_viewed(client: Client) -> None:
    issued = services.create_virtual_key(project=ProjectFactory(), name="ci")

    page = _page(client, reverse("admin:gateway_virtualkey_change", args=[issued.key.pk]))

    assert issued.secret not in page
    assert issued.key.key_hash not in page
    assert issued.key.prefix in page


@pytest.mark.django_db(transaction=True)
def test_service_error_is_shown_on_the_form_when_a_key_asks_for_a_model_outside_its_project(
    client: Client,
) -> None:
    project, other = ProjectFactory(), ModelFactory(name="not-for-this-project")

    response = client.post(
        reverse("admin:gateway_virtualkey_add"),
        {"project": project.pk, "name": "ci", "allowed_models": [other.pk], "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200
    assert "not allowed for the project: not-for-this-project" in response.content.decode()
    assert not VirtualKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_selected_keys_are_revoked_when_the_revoke_action_runs(client: Client) -> None:
    project = ProjectFactory()
    chosen = [services.create_virtual_key(project=project, name=f"k{n}").key for n in range(2)]
    untouched = services.create_virtual_key(project=project, name="keep").key

    response = client.post(
        reverse("admin:gateway_virtualkey_changelist"),
        {"action": "revoke_keys", "_selected_action": [key.pk for key in chosen]},
    )

    assert response.status_code == 302
    assert all(VirtualKey.objects.get(pk=key.pk).revoked_at is not None for key in chosen)
    untouched.refresh_from_db()
    assert untouched.revoked_at is None


def test_key_cannot_be_edited_when_issued(client: Client) -> None:
    key = services.create_virtual_key(project=ProjectFactory(), name="ci").key

    response = client.post(reverse("admin:gateway_virtualkey_change", args=[key.pk]), {"name": "renamed"})

    assert response.status_code == 403
    key.refresh_from_db()
    assert key.name == "ci"


# --- admin tokens: listed and revoked, never shown ---


def test_token_secret_and_hash_are_hidden_when_admin_pages_list_tokens(client: Client) -> None:
    issued = services.issue_admin_token(username="ops")

    pages = _pages_of(client, issued.token, "admintoken")

    assert issued.secret not in pages
    assert issued.token.token_hash not in pages
    assert issued.token.prefix in pages


@pytest.mark.django_db(transaction=True)
def test_selected_tokens_are_revoked_when_the_revoke_action_runs(client: Client) -> None:
    token = services.issue_admin_token(username="ops").token

    response = client.post(
        reverse("admin:gateway_admintoken_changelist"), {"action": "revoke_tokens", "_selected_action": [token.pk]}
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


# --- guardrail policies: validated by the service, the floor cannot be deleted ---


@pytest.mark.django_db(transaction=True)
def test_organisation_guardrail_floor_is_saved_through_the_admin(client: Client) -> None:
    from gateway import selectors
    from gateway.models import GuardrailPolicy

    response = client.post(
        reverse("admin:gateway_guardrailpolicy_add"),
        {
            "scope": "organisation",
            "input": '{"secrets": "block", "pii": "redact"}',
            "output": '{"secrets": "redact"}',
            "denylist": '["project falcon"]',
            "max_input_tokens": "",
            "classifier_kind": "moderation",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    _, floor, _ = selectors.guardrail_policies(project=None)
    assert floor.input == {"secrets": "block", "pii": "redact"} and floor.denylist == ("project falcon",)
    assert GuardrailPolicy.objects.get().scope == "organisation"


@pytest.mark.django_db(transaction=True)
def test_bad_guardrail_action_is_shown_on_the_form(client: Client) -> None:
    from gateway.models import GuardrailPolicy

    response = client.post(
        reverse("admin:gateway_guardrailpolicy_add"),
        {
            "scope": "organisation",
            "input": '{"pii": "explode"}',
            "output": "{}",
            "denylist": "[]",
            "classifier_kind": "chat",
        },
    )

    assert response.status_code == 200
    assert "unknown action" in response.content.decode()
    assert not GuardrailPolicy.objects.exists()
