"""Structured widgets instead of raw JSON: a model's fallbacks as an ordered picker, a budget's
thresholds as numbers, a guardrail policy's checks as a table of check x action and its deny
lists one term a line. The services validate what they produce; their errors sit beside the field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from billing import services as billing_services
from billing.models import Budget
from gateway import selectors
from gateway.models import GuardrailPolicy, Model
from tests.factories import DeploymentFactory, ModelFactory, ProjectFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _deployments(provider_pk: int) -> dict[str, object]:
    return {
        "deployments-TOTAL_FORMS": "1",
        "deployments-INITIAL_FORMS": "0",
        "deployments-MIN_NUM_FORMS": "0",
        "deployments-MAX_NUM_FORMS": "1000",
        "deployments-0-provider": provider_pk,
        "deployments-0-upstream_model": "meta-llama/Llama-3-70B",
        "deployments-0-weight": "1",
        "deployments-0-priority": "0",
        "deployments-0-enabled": "on",
    }


def _model_form(**fallbacks: str) -> dict[str, object]:
    return {"name": "llama-3-70b", "enabled": "on", **_deployments(ProviderFactory().pk), **fallbacks}


# --- a model's fallbacks ---


def test_fallbacks_are_offered_as_an_ordered_picker_of_the_other_models(client: Client) -> None:
    ModelFactory(name="gpt-4o")
    model = DeploymentFactory(model=ModelFactory(name="claude")).model

    page = client.get(reverse("admin:gateway_model_change", args=[model.pk])).content.decode()

    assert 'name="fallbacks_0"' in page and 'name="fallbacks_2"' in page
    assert '<option value="gpt-4o">gpt-4o</option>' in page
    assert '<option value="claude">' not in page  # not itself


def test_fallbacks_are_saved_in_the_order_picked(client: Client) -> None:
    ModelFactory(name="gpt-4o")
    ModelFactory(name="gpt-4o-mini")

    response = client.post(
        reverse("admin:gateway_model_add"),
        _model_form(fallbacks_0="gpt-4o-mini", fallbacks_1="", fallbacks_2="gpt-4o"),
    )

    assert response.status_code == 302
    assert Model.objects.get(name="llama-3-70b").fallbacks == ["gpt-4o-mini", "gpt-4o"]


def test_unknown_fallback_is_refused_beside_the_field(client: Client) -> None:
    response = client.post(reverse("admin:gateway_model_add"), _model_form(fallbacks_0="no-such-model"))

    assert response.status_code == 200
    assert "no-such-model" in " ".join(response.context["adminform"].form.errors["fallbacks"])
    assert not Model.objects.filter(name="llama-3-70b").exists()


# --- a budget's thresholds ---


def _budget_form(project_pk: int, **thresholds: str) -> dict[str, object]:
    return {"scope": "project", "project": project_pk, "monthly_limit": "100.00", "hard": "on", **thresholds}


def test_budget_form_names_the_currency_and_offers_number_boxes(client: Client) -> None:
    page = client.get(reverse("admin:billing_budget_add")).content.decode()

    assert "Monthly limit (EUR)" in page
    assert 'type="number" name="thresholds_0"' in page


def test_thresholds_are_saved_as_numbers_when_typed_in_boxes(client: Client) -> None:
    project = ProjectFactory()

    response = client.post(
        reverse("admin:billing_budget_add"),
        _budget_form(project.pk, thresholds_0="80", thresholds_1="", thresholds_2="50", thresholds_3="100"),
    )

    assert response.status_code == 302
    assert Budget.objects.get().thresholds == [50, 80, 100]


@pytest.mark.parametrize("typed", ["2000", "0", "abc", "1.5"])
def test_bad_threshold_is_refused_beside_the_field(client: Client, typed: str) -> None:
    response = client.post(reverse("admin:billing_budget_add"), _budget_form(ProjectFactory().pk, thresholds_0=typed))

    assert response.status_code == 200
    assert "thresholds" in response.context["adminform"].form.errors
    assert not Budget.objects.exists()


def test_thresholds_change_keeps_the_budget_target(client: Client) -> None:
    project = ProjectFactory()
    budget = billing_services.set_budget(target=project, monthly_limit=Decimal(100))

    response = client.post(
        reverse("admin:billing_budget_change", args=[budget.pk]),
        {"monthly_limit": "150.00", "thresholds_0": "90", "webhook_url": ""},
    )

    assert response.status_code == 302
    budget.refresh_from_db()
    assert (budget.project_id, budget.thresholds, budget.monthly_limit) == (project.pk, [90], Decimal(150))


# --- a guardrail policy ---


def _policy_form(**fields: str) -> dict[str, str]:
    return {"scope": "organisation", "classifier_kind": "moderation", "max_input_tokens": "", **fields}


def test_checks_are_a_table_of_check_by_action(client: Client) -> None:
    page = client.get(reverse("admin:gateway_guardrailpolicy_add")).content.decode()

    assert 'name="input__pii" value="redact"' in page
    assert 'name="input__prompt_injection" value="block"' in page
    assert 'name="input__prompt_injection" value="redact"' not in page  # a verdict on a whole text
    assert '<textarea name="denylist"' in page


def test_policy_is_saved_from_the_table_and_the_lines(client: Client) -> None:
    response = client.post(
        reverse("admin:gateway_guardrailpolicy_add"),
        _policy_form(
            input__pii="redact",
            input__secrets="block",
            input__prompt_injection="",
            output__secrets="redact",
            denylist="project falcon\n\n  re:\\bcodename\\b  \n",
            denied_betas="files-api-*\n",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:500]
    _, floor, _ = selectors.guardrail_policies(project=None)
    assert floor.input == {"pii": "redact", "secrets": "block"}
    assert floor.output == {"secrets": "redact"}
    assert floor.denylist == ("project falcon", "re:\\bcodename\\b")
    assert floor.denied_betas == ("files-api-*",)


def test_policy_page_shows_the_stored_choices_and_lines(client: Client) -> None:
    client.post(
        reverse("admin:gateway_guardrailpolicy_add"),
        _policy_form(input__pii="flag", denylist="alpha\nbeta"),
    )

    page = client.get(reverse("admin:gateway_guardrailpolicy_change", args=[GuardrailPolicy.objects.get().pk]))

    html = page.content.decode()
    assert "name='input__pii' value='flag' aria-label='pii flag' checked" in html.replace('"', "'")
    assert "alpha\nbeta</textarea>" in html


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"input__prompt_injection": "redact"}, "input", "cannot redact"),
        ({"denylist": "re:("}, "denylist", "denylist"),
        ({"input__classifier": "block"}, "classifier_model", "classifier_model"),
        ({"denied_betas": "not a beta!"}, "denied_betas", "denied_betas"),
    ],
)
def test_policy_error_is_shown_beside_its_field(
    client: Client, fields: dict[str, str], field: str, message: str
) -> None:
    response = client.post(reverse("admin:gateway_guardrailpolicy_add"), _policy_form(**fields))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, [])), errors
    assert not GuardrailPolicy.objects.exists()


# --- permissions: a staff user who may only view changes nothing ---


def test_changed_forms_refuse_a_staff_user_without_the_permission(staff_client: Client) -> None:
    model = DeploymentFactory().model
    budget = billing_services.set_budget(target=ProjectFactory(), monthly_limit=Decimal(100))

    refused = [
        staff_client.post(reverse("admin:gateway_model_change", args=[model.pk]), {"fallbacks_0": ""}),
        staff_client.post(reverse("admin:gateway_guardrailpolicy_add"), _policy_form(input__pii="block")),
        staff_client.post(reverse("admin:billing_budget_change", args=[budget.pk]), {"thresholds_0": "10"}),
    ]

    assert [response.status_code for response in refused] == [403, 403, 403]
    assert not GuardrailPolicy.objects.exists()
    budget.refresh_from_db()
    assert budget.thresholds != [10]


def test_new_budget_offers_the_default_thresholds(client: Client) -> None:
    page = client.get(reverse("admin:billing_budget_add")).content.decode()

    assert 'name="thresholds_0" value="50"' in page and 'name="thresholds_2" value="100"' in page
