"""A credit request decided from the manager's mail, in a real browser: the developer asks in the
portal; the mail (tasks run in-process, eagerly; mail in Django's outbox) carries the link; the
manager opens it signed out, signs in, lands on the decision page, approves; the developer sees
the new balance."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import mail
from playwright.async_api import Browser, expect

from approvals.models import CreditRequest, State, Via
from gateway.celery import app as celery_app
from tests.e2e.conftest import add_session, screenshot
from tests.portal.conftest import build_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_process_mail(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.LOCAL_LOGIN = True
    celery_app.conf.task_always_eager = True
    mail.outbox = []
    yield
    celery_app.conf.changes.pop("task_always_eager", None)


def _manager_mail():  # type: ignore[no-untyped-def]
    [message] = [m for m in mail.outbox if m.to == ["maria@example.test"]]
    return message


async def test_manager_approves_from_the_mail_link_and_the_developer_sees_the_balance(
    browser: Browser, live_gateway: str, in_process_mail: None
) -> None:
    world = await sync_to_async(build_world)()
    developer_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await add_session(developer_context, live_gateway, world.dev_a)
    developer = await developer_context.new_page()

    await developer.goto(f"{live_gateway}/requests/credit/new/?project={world.project_a.id}")
    await developer.fill("input[name=amount]", "60.00")
    await developer.fill("textarea[name=reason]", "Load test of the new checkout before the sale.")
    await developer.click("form.stack button[type=submit]")
    await developer.wait_for_url(f"{live_gateway}/requests/credit/*/")
    request = await sync_to_async(CreditRequest.objects.get)()

    message = await sync_to_async(_manager_mail)()
    [link] = [line for line in message.body.splitlines() if line.startswith(settings.PUBLIC_URL + "/approvals/t/")]
    [(html, _)] = message.alternatives

    # The HTML mail as a mail client would show it.
    mail_context = await browser.new_context(viewport={"width": 800, "height": 900})
    mail_page = await mail_context.new_page()
    await mail_page.set_content(html)
    await expect(mail_page.locator("h1")).to_contain_text("Alice Archer asks for 60.00 EUR of credit for Checkout")
    await screenshot(mail_page, "approval-mail-html-800")
    await mail_page.set_viewport_size({"width": 375, "height": 800})
    await screenshot(mail_page, "approval-mail-html-375")
    await mail_context.close()

    # The manager opens the link signed out: sign-in first, then back to the token-free page.
    manager_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    manager = await manager_context.new_page()
    await manager.goto(link.replace(settings.PUBLIC_URL, live_gateway))
    await manager.wait_for_url(f"{live_gateway}/accounts/login/**")
    await manager.fill("input[name=login]", "maria")
    await manager.fill("input[name=password]", world.password)
    await manager.click("form#local-login button[type=submit]")
    decide_url = f"{live_gateway}/approvals/decide/credit/{request.id}/"
    await manager.wait_for_url(decide_url)
    await expect(manager.locator("h1")).to_contain_text("asks for 60.00 EUR of credit for Checkout")
    await expect(manager.locator("button[value=approve]")).to_be_visible()
    await screenshot(manager, "approval-decide-1280")
    await manager.set_viewport_size({"width": 375, "height": 800})
    await screenshot(manager, "approval-decide-375")
    await manager.set_viewport_size({"width": 1280, "height": 800})
    await manager.fill("textarea[name=comment]", "Good luck with the sale.")
    await manager.click("button[value=approve]")
    await manager.wait_for_url(f"{live_gateway}/requests/credit/{request.id}/")
    await expect(manager.locator(".messages")).to_contain_text("Request approved")
    await screenshot(manager, "approval-decided-1280")

    await sync_to_async(request.refresh_from_db)()
    assert (request.state, request.decided_via) == (State.APPROVED, Via.EMAIL)
    await developer.goto(f"{live_gateway}/projects/{world.project_a.id}/")
    await expect(developer.locator("body")).to_contain_text("160.00")
    await screenshot(developer, "approval-developer-balance-1280")
    told = [m for m in mail.outbox if m.to == ["alice@example.test"]]
    assert len(told) == 1 and "was approved" in told[0].subject
    assert Decimal("60.00") == request.amount
    await manager_context.close()
    await developer_context.close()
