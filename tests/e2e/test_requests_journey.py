"""A credit request in a real browser: the developer asks (the form prefilled from the link the
429 message gives), the manager approves it on /requests/ in another browser, the developer sees
it approved and the project's balance has grown."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client
from playwright.async_api import Browser, BrowserContext, Page, expect

from approvals.models import CreditRequest
from billing import selectors as billing_selectors
from tests.e2e.conftest import screenshot
from tests.portal.conftest import World, build_world

pytestmark = pytest.mark.django_db(transaction=True)


def _session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def _signed_in(browser: Browser, base_url: str, user: Any, errors: list[str]) -> tuple[BrowserContext, Page]:
    """A browser context carrying a session of `user` (created server-side, as a sign-in would)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    cookie = await sync_to_async(_session_cookie)(user)
    await context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/favicon.ico") else None
        ),
    )
    return context, page


def _balance(world: World) -> Decimal:
    return billing_selectors.project_money(project_ids=[world.project_a.id])[world.project_a.id].balance


async def test_developer_asks_for_credit_and_the_manager_approves_it(browser: Browser, live_gateway: str) -> None:
    world = await sync_to_async(build_world)()
    before = await sync_to_async(_balance)(world)
    errors: list[str] = []
    dev_context, dev = await _signed_in(browser, live_gateway, world.dev_a, errors)
    manager_context, manager = await _signed_in(browser, live_gateway, world.manager, errors)

    # The developer follows the 429 message's link: the project is chosen, its balance shown.
    await dev.goto(f"{live_gateway}/requests/credit/new/?project={world.project_a.id}")
    await expect(dev.locator("select[name=project]")).to_have_value(str(world.project_a.id))
    await expect(dev.locator("#project-money")).to_contain_text("Checkout this month")
    await dev.fill("input[name=amount]", "50.00")
    await dev.fill("textarea[name=reason]", "Load test of the new checkout before the sale.")
    await screenshot(dev, "requests-credit-form-1280")
    await dev.click("form.stack button[type=submit]")
    await dev.wait_for_url(f"{live_gateway}/requests/credit/*/")
    await expect(dev.locator(".page-head")).to_contain_text("Pending")
    await screenshot(dev, "requests-detail-pending-1280")
    request = await sync_to_async(CreditRequest.objects.get)()

    # The manager sees it waiting, with the project's money, and approves it (htmx, no reload).
    await manager.goto(f"{live_gateway}/requests/")
    card = manager.locator(f"#pending-credit-{request.id}")
    await expect(card).to_contain_text("Alice Archer")
    await expect(card).to_contain_text("Balance now")
    await screenshot(manager, "requests-manager-1280")
    await card.locator("button[value=approve]").click()
    await expect(manager.locator(f"#pending-credit-{request.id}")).to_contain_text("approved it")
    await screenshot(manager, "requests-manager-decided-1280")

    # The developer sees it approved; the ledger has the credit, once.
    await dev.goto(f"{live_gateway}/requests/")
    await expect(dev.locator("table")).to_contain_text("Approved")
    await screenshot(dev, "requests-developer-1280")
    await dev.set_viewport_size({"width": 375, "height": 740})
    await screenshot(dev, "requests-developer-375")
    await dev.goto(f"{live_gateway}/requests/credit/{request.id}/")
    await screenshot(dev, "requests-detail-approved-375")
    await dev.set_viewport_size({"width": 1280, "height": 800})
    await screenshot(dev, "requests-detail-approved-1280")
    assert await sync_to_async(_balance)(world) == before + Decimal("50.00")

    await dev_context.close()
    await manager_context.close()
    assert not errors, errors
