"""The request pages: /requests/, the access and credit forms, a request's page, cancel and decide.
Every URL for every persona; 404 for what a user may not see; forms valid and invalid."""

from __future__ import annotations

import pytest
from django.urls import reverse

from approvals import services
from approvals.models import AccessRequest, CreditRequest, State
from tests.portal.conftest import PERSONAS

pytestmark = pytest.mark.django_db

LIST = reverse("portal:requests")
ACCESS = reverse("portal:request-access")
CREDIT = reverse("portal:request-credit")


def _credit(world, amount="50.00"):  # type: ignore[no-untyped-def]
    return services.file_credit_request(user=world.dev_a, project=world.project_a, amount=amount, reason="Load test")


def _url(name: str, request) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"portal:{name}", kwargs={"kind": request.KIND, "request_id": request.id})


# --- the permission matrix ---


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("url", [LIST, ACCESS, CREDIT])
def test_request_pages_open_for_everyone_signed_in_and_send_others_to_sign_in(world, login_as, persona, url):
    response = login_as(world.persona(persona)).get(url)

    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    else:
        assert response.status_code == 200


DETAIL_STATUS = {"anonymous": 302, "dev_a": 200, "dev_b": 404, "manager": 200, "admin": 200}


@pytest.mark.parametrize("persona", PERSONAS)
def test_request_page_is_404_for_those_who_neither_asked_nor_decide(world, login_as, persona):
    request = _credit(world)

    response = login_as(world.persona(persona)).get(_url("request-detail", request))

    assert response.status_code == DETAIL_STATUS[persona]
    if response.status_code == 200:
        assert "Checkout" in response.text and "Load test" in response.text
        assert ("Your decision" in response.text) == (persona in ("manager", "admin"))
        assert ("Cancel request" in response.text) == (persona == "dev_a")


DECIDE_STATUS = {"anonymous": 302, "dev_a": 302, "dev_b": 404, "manager": 302, "admin": 302}


@pytest.mark.parametrize("persona", PERSONAS)
def test_decide_approves_only_for_approvers(world, login_as, persona):
    request = _credit(world)

    client = login_as(world.persona(persona))
    response = client.post(_url("request-decide", request), {"decision": "approve"})

    assert response.status_code == DECIDE_STATUS[persona]
    request.refresh_from_db()
    assert (request.state == State.APPROVED) == (persona in ("manager", "admin"))
    if persona == "dev_a":
        assert "You cannot decide your own request" in client.get(response["Location"]).text


def test_denial_without_a_comment_shows_the_form_again_with_the_error_beside_the_comment(world, login_as):
    request = _credit(world)

    response = login_as(world.manager).post(_url("request-decide", request), {"decision": "deny", "comment": ""})

    assert response.status_code == 400
    comment_field = response.text.split('for="decision-comment"')[1].split("</div>")[0]
    assert "Say why you deny it" in comment_field


CANCEL_STATE = {
    "anonymous": "pending",
    "dev_a": "cancelled",
    "dev_b": "pending",
    "manager": "pending",
    "admin": "pending",
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_cancel_works_only_for_the_requester(world, login_as, persona):
    request = _credit(world)

    response = login_as(world.persona(persona)).post(_url("request-cancel", request))

    assert response.status_code == {"anonymous": 302, "dev_b": 404}.get(persona, 302)
    request.refresh_from_db()
    assert request.state == CANCEL_STATE[persona]


@pytest.mark.parametrize("name", ["request-decide", "request-cancel"])
def test_state_changes_refuse_get(world, login_as, name):
    request = _credit(world)
    assert login_as(world.manager).get(_url(name, request)).status_code == 405


def test_unknown_kind_or_id_is_404(world, login_as):
    client = login_as(world.admin)
    request = _credit(world)
    assert client.get(f"/requests/bogus/{request.id}/").status_code == 404
    assert client.get(f"/requests/credit/{request.id + 99}/").status_code == 404
    assert client.post(f"/requests/bogus/{request.id}/decide/", {"decision": "approve"}).status_code == 404


# --- /requests/ ---


def test_list_shows_decisions_on_top_for_approvers_and_own_requests_below(world, login_as):
    request = _credit(world)

    manager_page = login_as(world.manager).get(LIST).text
    developer_page = login_as(world.dev_a).get(LIST).text

    assert "Waiting for your decision" in manager_page and f"pending-credit-{request.id}" in manager_page
    assert "Approve" in manager_page and "Balance now" in manager_page
    assert "Waiting for your decision" not in developer_page
    assert "My requests" in developer_page and "Pending" in developer_page and "Managers of Retail" in developer_page


def test_list_has_an_empty_state_with_the_next_actions(world, login_as):
    page = login_as(world.newcomer).get(LIST).text
    assert "You have not asked for anything yet" in page and CREDIT in page and ACCESS in page


def test_list_costs_the_same_queries_for_many_requests(world, login_as, django_assert_max_num_queries):
    client = login_as(world.manager)
    _credit(world)
    with django_assert_max_num_queries(30) as few:
        client.get(LIST)
    for i in range(8):
        services.file_new_project_request(user=world.newcomer, business_unit=world.unit, name=f"P{i}", reason="x")
    services.file_credit_request(user=world.dev_b, project=world.project_b, amount="5", reason="x")
    services.file_join_request(user=world.newcomer, project=world.project_b, reason="x")
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        response = client.get(LIST)
    assert response.text.count('class="card decision"') == 11
    assert len(many.captured_queries) == len(few.captured_queries)


def test_htmx_approval_replaces_the_card_with_the_outcome(world, login_as):
    request = _credit(world)

    response = login_as(world.manager).post(
        _url("request-decide", request), {"decision": "approve", "from": "list"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert f'id="pending-credit-{request.id}"' in response.text and "Approved" in response.text
    assert "<html" not in response.text


def test_htmx_denial_without_a_comment_keeps_the_form_with_the_error(world, login_as):
    request = _credit(world)

    response = login_as(world.manager).post(
        _url("request-decide", request), {"decision": "deny", "from": "list"}, HTTP_HX_REQUEST="true"
    )

    assert "Say why you deny it" in response.text and 'name="decision" value="deny"' in response.text
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_plain_post_from_the_list_redirects_back_with_a_message(world, login_as):
    request = _credit(world)
    client = login_as(world.manager)

    response = client.post(_url("request-decide", request), {"decision": "deny", "comment": "Not now", "from": "list"})

    assert response.status_code == 302 and response["Location"] == LIST
    assert "Request denied" in client.get(LIST).text


def test_second_decision_says_it_was_already_decided(world, login_as):
    request = _credit(world)
    services.approve_request(kind="credit", request_id=request.id, by=world.admin)

    client = login_as(world.manager)
    response = client.post(_url("request-decide", request), {"decision": "deny", "comment": "x"})

    assert response.status_code == 302
    assert "already approved" in client.get(response["Location"]).text
    request.refresh_from_db()
    assert request.state == State.APPROVED


# --- the credit form ---


def test_credit_form_is_prefilled_with_a_visible_project_and_shows_its_balance(world, login_as):
    page = login_as(world.dev_a).get(CREDIT, {"project": world.project_a.id}).text
    assert f'<option value="{world.project_a.id}" selected>' in page and "Checkout this month" in page


def test_credit_form_ignores_a_project_the_user_cannot_see(world, login_as):
    page = login_as(world.dev_a).get(CREDIT, {"project": world.project_b.id}).text
    assert "Search" not in page and " selected>" not in page.split('name="project"')[1].split("</select>")[0]


def test_credit_form_files_the_request_and_opens_its_page(world, login_as):
    response = login_as(world.dev_a).post(
        CREDIT, {"project": world.project_a.id, "amount": "75.50", "reason": "Evaluation"}
    )

    request = CreditRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/requests/credit/{request.id}/"
    assert (str(request.amount), request.requester) == ("75.50", world.dev_a)


@pytest.mark.parametrize("amount", ["-1", "abc", "NaN", "1.001", "99999999999"])
def test_credit_form_shows_the_error_beside_the_amount(world, login_as, amount):
    response = login_as(world.dev_a).post(CREDIT, {"project": world.project_a.id, "amount": amount, "reason": "x"})

    assert response.status_code == 400
    amount_field = response.text.split('for="id_amount"')[1].split('class="field')[0]
    assert "errorlist" in amount_field and not CreditRequest.objects.exists()


def test_credit_form_refuses_a_project_the_user_cannot_see(world, login_as):
    response = login_as(world.dev_b).post(CREDIT, {"project": world.project_a.id, "amount": "5", "reason": "x"})
    assert response.status_code == 400 and not CreditRequest.objects.exists()


def test_credit_form_refuses_a_duplicate_with_a_clear_message(world, login_as):
    _credit(world)
    response = login_as(world.dev_a).post(CREDIT, {"project": world.project_a.id, "amount": "5", "reason": "x"})
    assert response.status_code == 400 and "already have a pending credit request" in response.text


def test_credit_form_refuses_nul_bytes_and_long_reasons(world, login_as):
    client = login_as(world.dev_a)
    for reason in ("a\x00b", "x" * 2001, ""):
        response = client.post(CREDIT, {"project": world.project_a.id, "amount": "5", "reason": reason})
        assert response.status_code == 400
    assert not CreditRequest.objects.exists()


def test_credit_form_tells_a_newcomer_to_join_a_project_first(world, login_as):
    assert "You are in no project yet" in login_as(world.newcomer).get(CREDIT).text


def test_htmx_project_change_returns_only_the_money_panel(world, login_as):
    response = login_as(world.dev_a).get(CREDIT, {"project": world.project_a.id}, HTTP_HX_REQUEST="true")
    assert 'id="project-money"' in response.text and "<form" not in response.text


# --- the access form ---


def test_join_form_lists_other_projects_and_files_a_request(world, login_as):
    client = login_as(world.newcomer)
    page = client.get(ACCESS).text
    assert "Retail / Checkout" in page and "Retail / Search" in page

    response = client.post(ACCESS, {"what": "join", "project": world.project_a.id, "reason": "New on the team"})

    request = AccessRequest.objects.get()
    assert response.status_code == 302 and (request.kind, request.project) == ("join", world.project_a)


def test_new_project_form_shows_a_taken_name_beside_the_name(world, login_as):
    response = login_as(world.newcomer).post(
        ACCESS, {"what": "new_project", "business_unit": world.unit.id, "name": "Checkout", "reason": "x"}
    )

    assert response.status_code == 400
    name_field = response.text.split('for="id_name"')[1].split('class="field')[0]
    assert "already has a project named Checkout" in name_field


def test_model_form_offers_only_models_the_project_lacks_and_files_a_request(world, login_as):
    client = login_as(world.dev_b)
    page = client.get(ACCESS, {"what": "model"}).text
    assert f'value="{world.project_b.id}:{world.other_model.id}"' in page
    assert f'value="{world.project_b.id}:{world.model.id}"' not in page  # B may use it already

    choice = f"{world.project_b.id}:{world.other_model.id}"
    response = client.post(ACCESS, {"what": "model", "choice": choice, "reason": "cheaper"})

    assert response.status_code == 302 and AccessRequest.objects.get().model == world.other_model


def test_model_form_refuses_a_made_up_choice(world, login_as):
    response = login_as(world.dev_b).post(
        ACCESS, {"what": "model", "choice": f"{world.project_a.id}:{world.other_model.id}", "reason": "x"}
    )
    assert response.status_code == 400 and not AccessRequest.objects.exists()


def test_request_page_shows_the_history_and_the_decision(world, login_as):
    request = _credit(world)
    services.deny_request(kind="credit", request_id=request.id, by=world.manager, comment="Use the Q3 budget")

    page = login_as(world.dev_a).get(_url("request-detail", request)).text

    assert "History" in page and "Denied" in page and "Use the Q3 budget" in page and "Maria Manager" in page
    assert "Your decision" not in page and "Cancel request" not in page
