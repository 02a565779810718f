"""The Django admin as an operator's cockpit, in a real browser at 1,400 and 1,024 px: the list
pages fit the screen (no horizontal scrolling), a key's secret has a copy button, a project's page
shows its money. Screenshots of each page at both widths land in tests/e2e/screenshots/admin-*.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import Browser, Page, expect

from billing import services as billing_services
from gateway import services
from tests.e2e.conftest import screenshot, signed_in
from tests.portal.conftest import World, build_world, seed_usage

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = (1400, 1024)


def _cockpit_world() -> World:
    world = build_world()
    seed_usage(project=world.project_a, key=world.key_a, days=14, per_day=3, errors_per_day=1)
    billing_services.grant_credits(
        project=world.project_a, amount="250.00", reason="Pilot credit", idempotency_key="e2e-grant", actor="root"
    )
    body = {
        "model": "gpt-portal",
        "messages": [
            {"role": "system", "content": "You answer customers of the shop."},
            {"role": "user", "content": "Where is my order 4711?"},
        ],
        "temperature": 0.2,
    }
    services.record_request_logs(
        entries=[
            {
                "request_id": "req-e2e-admin",
                "created_at": datetime.now(UTC) - timedelta(seconds=30),
                "endpoint": "chat",
                "key_id": world.key_a.id,
                "key_prefix": world.key_a.prefix,
                "project_id": world.project_a.id,
                "model": "gpt-portal",
                "answered_model": "gpt-portal-mini",
                "provider": "portal-upstream",
                "status_code": 200,
                "input_tokens": 812,
                "output_tokens": 164,
                "cost": Decimal("0.000219"),
                "latency_ms": 1840.5,
                "ttft_ms": 310.2,
                "user_agent": "OpenAI/Python 1.55.3 with a rather long user agent string that goes on",
                "bodies": ("full", body, {"choices": [{"message": {"role": "assistant", "content": "On its way."}}]}),
            }
        ]
    )
    return world


async def _no_horizontal_scroll(page: Page) -> None:
    """Neither the page nor a list's own box (Django's `.results` scrolls by itself) scrolls sideways."""
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways: {widths[0]} px in a {widths[1]} px window"
    boxes = await page.evaluate(
        "[...document.querySelectorAll('#changelist .results')].map(b => [b.scrollWidth, b.clientWidth])"
    )
    for inner, outer in boxes:
        assert inner <= outer, f"{page.url}: the list is {inner} px wide in a {outer} px box"


@pytest.mark.parametrize("width", WIDTHS)
async def test_admin_pages_fit_the_screen_and_are_captured(browser: Browser, live_gateway: str, width: int) -> None:
    world = await sync_to_async(_cockpit_world)()
    errors: list[str] = []
    context, page = await signed_in(browser, live_gateway, world.admin, errors, width=width)
    admin = f"{live_gateway}/admin"
    lists = {
        "index": "/",
        "requestlogs": "/gateway/requestlog/",
        "ledger": "/billing/ledgerentry/",
        "keys": "/gateway/virtualkey/",
        "projects": "/gateway/project/",
        "models": "/gateway/model/",
        "budgets": "/billing/budget/",
        "prices": "/billing/pricelistentry/",
    }
    for name, path in lists.items():
        await page.goto(admin + path)
        await screenshot(page, f"admin-{name}-{width}")
        await _no_horizontal_scroll(page)

    await page.goto(f"{admin}/gateway/requestlog/?q=req-e2e-admin")
    await page.locator("th.field-when a").first.click()
    await expect(page.locator("pre.cockpit-body").first).to_contain_text('"messages": [')
    await screenshot(page, f"admin-requestlog-row-{width}")

    pages = {
        "model": f"/gateway/model/{world.model.pk}/change/",
        "guardrails-add": "/gateway/guardrailpolicy/add/",
        "budget-add": "/billing/budget/add/",
    }
    for name, path in pages.items():
        await page.goto(admin + path)
        await screenshot(page, f"admin-{name}-{width}")
        await _no_horizontal_scroll(page)

    await page.goto(f"{admin}/billing/budget/add/")
    await expect(page.locator(".form-row.field-project")).to_be_visible()
    await expect(page.locator(".form-row.field-key")).to_be_hidden()
    await page.select_option("select[name=scope]", "key")
    await expect(page.locator(".form-row.field-key")).to_be_visible()
    await expect(page.locator(".form-row.field-project")).to_be_hidden()

    await page.goto(f"{admin}/gateway/project/{world.project_a.pk}/change/")
    await expect(page.locator("#project-money")).to_contain_text("Spent this month")
    await expect(page.locator("#project-keys")).to_contain_text("checkout-web")
    await expect(page.locator("#project-requests")).to_contain_text("gpt-portal")
    await screenshot(page, f"admin-project-{width}")
    await page.get_by_role("link", name="Grant credit…").click()
    await screenshot(page, f"admin-grant-credit-{width}")

    await page.goto(f"{admin}/gateway/virtualkey/{world.key_a.pk}/change/")
    await screenshot(page, f"admin-key-{width}")
    await page.get_by_role("link", name="Rotate…").click()
    await screenshot(page, f"admin-key-rotate-{width}")
    await page.get_by_role("button", name="Rotate: issue a new key").click()
    await expect(page.locator("#issued-key")).to_contain_text("sk-sym-")
    await expect(page.get_by_role("button", name="Copy")).to_be_visible()
    await screenshot(page, f"admin-key-issued-{width}")

    await context.close()
    assert not errors, errors
