"""A credit request in a real browser: the developer asks (the form prefilled from the link the
429 message gives), the manager approves it on /requests/ in another browser, the developer sees
it approved and the project's balance has grown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import Browser, expect

from approvals.models import CreditRequest
from billing import selectors as billing_selectors
from tests.e2e.conftest import screenshot, signed_in
from tests.portal.conftest import World, build_world

pytestmark = pytest.mark.django_db(transaction=True)


def _balance(world: World) -> Decimal:
    return billing_selectors.project_money(project_ids=[world.project_a.id])[world.project_a.id].balance


async def test_developer_asks_for_credit_and_the_manager_approves_it(browser: Browser, live_gateway: str) -> None:
    world = await sync_to_async(build_world)()
    before = await sync_to_async(_balance)(world)
    errors: list[str] = []
    dev_context, dev = await signed_in(browser, live_gateway, world.dev_a, errors)
    manager_context, manager = await signed_in(browser, live_gateway, world.manager, errors)

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
