"""Decision links: opening one only checks it and redirects to a token-free page; the signed-in
approver decides there with a POST (via=email), once. Every abuse gets a page that says why, a
4xx status, and changes nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core import signing
from django.test import Client
from django.urls import reverse

from approvals import selectors, services, tokens
from approvals.models import CreditRequest, RequestEvent, State, Via
from billing import selectors as billing_selectors

pytestmark = pytest.mark.django_db


def balance(project) -> Decimal:  # type: ignore[no-untyped-def]
    return billing_selectors.project_money(project_ids=[project.id])[project.id].balance


def credit(world, *, by=None, project=None) -> CreditRequest:  # type: ignore[no-untyped-def]
    return services.file_credit_request(
        user=by or world.dev_a, project=project or world.project_a, amount="50.00", reason="Load test next week"
    )


def link(request, user, **kwargs) -> str:  # type: ignore[no-untyped-def]
    return reverse("approvals:open-link", kwargs={"token": tokens.make_token(request=request, user=user, **kwargs)})


def decide_page(request) -> str:  # type: ignore[no-untyped-def]
    return reverse("approvals:decide", kwargs={"kind": request.KIND, "request_id": request.pk})


def snapshot(request) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """What must not change when a link is refused."""
    request.refresh_from_db()
    return (request.state, request.decided_at, RequestEvent.objects.count(), balance(request.project))


def signed_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


# --- the happy path ---


def test_link_keeps_the_token_out_of_the_address_and_changes_nothing_when_opened_without_a_session(world):
    request = credit(world)
    before = snapshot(request)
    url = link(request, world.manager)

    answer = Client().get(url)

    assert answer.status_code == 302
    assert answer["Location"] == decide_page(request)
    assert answer["Referrer-Policy"] == "no-referrer"
    assert "no-store" in answer["Cache-Control"]
    assert snapshot(request) == before


def test_anonymous_visitor_is_sent_to_sign_in_and_back_when_following_the_link(world):
    request = credit(world)
    client = Client()

    answer = client.get(link(request, world.manager), follow=False)
    page = client.get(answer["Location"])

    assert page.status_code == 302
    assert page["Location"] == f"/accounts/login/?next={decide_page(request)}"
    assert tokens.SALT not in page["Location"]


def test_approver_sees_the_request_and_the_form_when_opening_the_link_signed_in(world):
    request = credit(world)
    client = signed_in(world.manager)
    before = snapshot(request)

    page = client.get(link(request, world.manager), follow=True)

    assert page.status_code == 200
    assert page.redirect_chain == [(decide_page(request), 302)]
    text = page.content.decode()
    assert "Alice Archer asks for 50.00 EUR of credit for Checkout" in text
    assert "Load test next week" in text and 'value="approve"' in text and 'value="deny"' in text
    assert snapshot(request) == before


def test_approver_approves_once_via_email_when_posting_from_the_page(world, django_capture_on_commit_callbacks):
    request = credit(world)
    client = signed_in(world.manager)
    client.get(link(request, world.manager))
    before = balance(world.project_a)

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(decide_page(request), {"decision": "approve", "comment": "Go ahead"})

    assert answer.status_code == 302 and answer["Location"] == selectors.request_path(request)
    request.refresh_from_db()
    assert (request.state, request.decided_by, request.decided_via) == (State.APPROVED, world.manager, Via.EMAIL)
    assert balance(world.project_a) == before + Decimal("50.00")
    assert [e.via for e in selectors.request_events(request=request)] == [Via.PORTAL, Via.EMAIL]


def test_a_denial_needs_a_comment_when_posted_from_the_page(world):
    request = credit(world)
    client = signed_in(world.manager)
    client.get(link(request, world.manager))

    refused = client.post(decide_page(request), {"decision": "deny", "comment": ""})
    denied = client.post(decide_page(request), {"decision": "deny", "comment": "Use the Q3 budget"})

    assert refused.status_code == 400 and "Say why you deny it" in refused.content.decode()
    assert denied.status_code == 302
    request.refresh_from_db()
    assert (request.state, request.decided_via, request.decision_comment) == (
        State.DENIED,
        Via.EMAIL,
        "Use the Q3 budget",
    )


def test_post_without_csrf_token_is_refused_and_changes_nothing(world):
    request = credit(world)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.manager)
    client.get(link(request, world.manager))
    before = snapshot(request)

    answer = client.post(decide_page(request), {"decision": "approve"})

    assert answer.status_code == 403
    assert snapshot(request) == before


# --- abuse: each refused with a page that says why, nothing changed ---


def test_replay_is_refused_when_the_link_was_used(world):
    request = credit(world)
    client = signed_in(world.manager)
    url = link(request, world.manager)
    client.get(url)
    client.post(decide_page(request), {"decision": "approve"})
    after = snapshot(request)

    reopened = client.get(url)
    reposted = client.post(decide_page(request), {"decision": "approve"})

    assert reopened.status_code == 409 and "already approved" in reopened.content.decode()
    assert reposted.status_code == 403 and "Open the link from your mail" in reposted.content.decode()
    assert snapshot(request) == after


def test_expired_link_is_refused_when_opened_or_used(world, settings):
    settings.APPROVAL_LINK_MAX_AGE_HOURS = 24
    start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        request = credit(world)
        url = link(request, world.manager)
        client = signed_in(world.manager)
        client.get(url)  # opened in time...
    before = snapshot(request)

    with time_machine.travel(start + dt.timedelta(hours=25), tick=False):
        posted = client.post(decide_page(request), {"decision": "approve"})  # ...used too late
        opened = signed_in(world.manager).get(url)

    assert posted.status_code == 410 and opened.status_code == 410
    assert "This link has expired" in opened.content.decode()
    assert snapshot(request) == before


def test_link_for_another_request_decides_nothing_there(world):
    mine = credit(world)
    other = credit(world, by=world.dev_b, project=world.project_b)
    client = signed_in(world.manager)
    client.get(link(mine, world.manager))
    before = snapshot(other)

    answer = client.post(decide_page(other), {"decision": "approve"})

    assert answer.status_code == 403 and "no link for this request" in answer.content.decode()
    assert snapshot(other) == before
    assert CreditRequest.objects.get(pk=mine.pk).state == State.PENDING


@pytest.mark.parametrize("forge", ["another purpose", "another salt", "tampered", "garbage"])
def test_link_made_for_another_purpose_or_not_by_us_is_refused(world, forge):
    request = credit(world)
    payload = {"k": "credit", "r": request.pk, "u": world.manager.pk, "p": "decide", "v": tokens.version_of(request)}
    token = {
        "another purpose": tokens.make_token(request=request, user=world.manager, purpose="unsubscribe"),
        "another salt": signing.dumps(payload, salt="approvals.something-else"),
        "tampered": tokens.make_token(request=request, user=world.manager)[:-3] + "AAA",
        "garbage": "not-a-token",
    }[forge]
    client = signed_in(world.manager)
    before = snapshot(request)

    answer = client.get(reverse("approvals:open-link", kwargs={"token": token}))

    assert answer.status_code == 400
    assert "This link" in answer.content.decode()
    assert client.post(decide_page(request), {"decision": "approve"}).status_code == 403
    assert snapshot(request) == before


def test_link_is_refused_when_the_request_was_cancelled_after_the_mail(world):
    request = credit(world)
    url = link(request, world.manager)
    services.cancel_request(kind="credit", request_id=request.pk, by=world.dev_a)
    before = snapshot(request)

    answer = signed_in(world.manager).get(url)

    assert answer.status_code == 409 and "cancelled by the requester" in answer.content.decode()
    assert snapshot(request) == before


def test_link_is_refused_when_the_request_was_decided_elsewhere_after_it_was_opened(world):
    request = credit(world)
    client = signed_in(world.manager)
    client.get(link(request, world.manager))
    services.approve_request(kind="credit", request_id=request.pk, by=world.admin)  # in the portal
    before = snapshot(request)

    answer = client.post(decide_page(request), {"decision": "deny", "comment": "no"})

    assert answer.status_code == 409 and "already approved" in answer.content.decode()
    assert snapshot(request) == before
    assert request.decided_by == world.admin


@pytest.mark.parametrize("who", ["dev_b", "admin", "dev_a"])
def test_link_is_refused_when_used_by_someone_it_was_not_sent_to(world, who):
    request = credit(world)
    url = link(request, world.manager)
    before = snapshot(request)
    opened_signed_in = signed_in(world.persona(who)).get(url)
    # anonymous first (a forwarded mail), then signed in as someone else
    client = Client()
    client.get(url)
    client.force_login(world.persona(who))
    page = client.get(decide_page(request))
    posted = client.post(decide_page(request), {"decision": "approve"})

    assert opened_signed_in.status_code == 403 and "sent to another approver" in opened_signed_in.content.decode()
    assert page.status_code == 403 and posted.status_code == 403
    assert snapshot(request) == before


def test_self_approval_is_refused_even_with_a_link_made_for_the_requester(world):
    request = credit(world, by=world.manager)  # a manager asks; the administrators decide
    url = link(request, world.manager)
    client = signed_in(world.manager)
    before = snapshot(request)

    opened = client.get(url)
    with pytest.raises(tokens.LinkRefused, match="your own request"):
        services.decide_by_link(
            token=tokens.make_token(request=request, user=world.manager), by=world.manager, approve=True
        )

    assert opened.status_code == 403 and "You cannot decide your own request" in opened.content.decode()
    assert snapshot(request) == before
    assert selectors.approvers_of(request) == [world.admin]


def test_decision_page_shows_nothing_to_decide_to_an_approver_who_lost_the_role(world):
    request = credit(world)
    client = signed_in(world.manager)
    client.get(link(request, world.manager))
    world.unit.managers.remove(world.manager)
    before = snapshot(request)

    page = client.get(decide_page(request))
    posted = client.post(decide_page(request), {"decision": "approve"})

    assert page.status_code in (200, 404)
    assert 'value="approve"' not in page.content.decode()
    assert posted.status_code in (403, 404)
    assert snapshot(request) == before
