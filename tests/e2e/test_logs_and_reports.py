"""The request log and the business-unit report in a real browser: a developer filters the log and
opens a row; a manager opens the unit report and downloads its CSV; markup in a logged prompt opens
no dialog. Screenshots: the log list (1280 and 375 px), a row, the units list and the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import Browser, expect

from billing import services as billing_services
from gateway import services
from tests.e2e.conftest import screenshot, signed_in
from tests.portal.conftest import World, build_world, seed_usage
from tests.portal.test_xss import REQUEST_ID as XSS_REQUEST_ID
from tests.portal.test_xss import build_hostile

pytestmark = pytest.mark.django_db(transaction=True)


def _busy_world() -> World:
    """The portal's world with a month of calls on project A (some failed), one detailed call, and
    last month's spend for the report."""
    world = build_world()
    seed_usage(project=world.project_a, key=world.key_a, days=20, per_day=3, errors_per_day=1)
    seed_usage(project=world.project_b, model="gpt-portal-mini", days=20, per_day=2, cost=Decimal("0.004"))
    now = datetime.now(UTC)
    services.record_request_logs(
        entries=[
            {
                "request_id": "req-e2e-detail",
                "created_at": now - timedelta(seconds=20),
                "endpoint": "chat",
                "key_id": world.key_a.id,
                "key_prefix": world.key_a.prefix,
                "project_id": world.project_a.id,
                "member_id": world.dev_a.id,
                "model": "gpt-portal",
                "answered_model": "gpt-portal-mini",
                "provider": "portal-upstream",
                "status_code": 200,
                "input_tokens": 812,
                "output_tokens": 164,
                "cached_tokens": 256,
                "cost": Decimal("0.000219"),
                "latency_ms": 1840.5,
                "ttft_ms": 310.2,
                "user_agent": "OpenAI/Python 1.55.3",
                "attempts": [
                    {
                        "model": "gpt-portal",
                        "deployment": 1,
                        "provider": "portal-upstream",
                        "status": 503,
                        "error": "upstream_unavailable",
                        "latency_ms": 42.0,
                    }
                ],
                "guardrails": [
                    {"where": "input", "check": "pii", "action": "redact", "count": 2, "kinds": ["email", "phone"]}
                ],
                "bodies": (
                    "full",
                    {
                        "model": "gpt-portal",
                        "messages": [
                            {"role": "system", "content": "You answer customers of the shop."},
                            {"role": "user", "content": "Where is my order 4711? Mail me at <EMAIL_1>."},
                        ],
                        "temperature": 0.2,
                    },
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Order 4711 left the warehouse today."},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 812, "completion_tokens": 164, "total_tokens": 976},
                    },
                ),
            }
        ]
    )
    last_month = now.replace(day=1) - timedelta(days=3)
    billing_services.record_usage(
        entries=[
            {
                "request_id": f"req-e2e-last-{i}",
                "created_at": last_month - timedelta(days=30 * (i % 6)),
                "project_id": world.project_a.id if i % 3 else world.project_b.id,
                "business_unit_id": world.unit.id,
                "model": "gpt-portal" if i % 2 else "gpt-portal-mini",
                "input_tokens": 2000,
                "output_tokens": 500,
                "cost": Decimal("0.35"),
            }
            for i in range(60)
        ]
    )
    billing_services.set_budget(target=world.unit, monthly_limit="50.00")
    return world


async def test_developer_filters_the_log_and_opens_a_row(browser: Browser, live_gateway: str) -> None:
    world = await sync_to_async(_busy_world)()
    errors: list[str] = []
    context, page = await signed_in(browser, live_gateway, world.dev_a, errors, accept_downloads=True)

    await page.goto(f"{live_gateway}/logs/")
    await expect(page.locator("table.log-table tbody tr")).to_have_count(50)
    await expect(page.locator("a[rel=next]")).to_be_visible()  # Older
    await screenshot(page, "logs-list")

    # Choosing a status updates the table in place and the address bar (a link to share).
    await page.select_option("select[name=status]", "error")
    await page.wait_for_url("**/logs/?status=error")
    rows = page.locator("table.log-table tbody tr")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_contain_text("502")
    await expect(page.locator("text=Some filters are not valid")).to_have_count(0)

    # A value the filter cannot read is named beside it, never a server error.
    await page.goto(f"{live_gateway}/logs/?from=yesterday&status=error")
    await expect(page.locator(".field.invalid")).to_contain_text("Enter a date and time like")
    await screenshot(page, "logs-list-invalid-filter", full_page=False)

    # A text search through the form's submit button, then clear.
    await page.select_option("select[name=status]", "")
    await page.wait_for_url("**/logs/")
    await page.fill("input[name=q]", "4711")
    await page.press("input[name=q]", "Enter")
    await page.wait_for_url("**/logs/?q=4711")
    await expect(rows).to_have_count(1)

    # Open the row: facts, verdicts, and the bodies pretty-printed.
    await rows.first.locator("a").first.click()
    await page.wait_for_url("**/logs/req-e2e-detail/**")
    await expect(page.locator("h1")).to_contain_text("gpt-portal")
    await expect(page.locator("#guardrails").locator("xpath=..")).to_contain_text("email, phone")
    await expect(page.locator("pre[aria-label='Request body']")).to_contain_text('"role": "system"')
    await expect(page.locator("pre[aria-label='Answer']")).to_contain_text("left the warehouse")
    await screenshot(page, "log-detail")
    await page.get_by_role("link", name="Back to the log").click()
    await page.wait_for_url("**/logs/?q=4711")
    await context.close()

    # The same list on a phone.
    context, phone = await signed_in(browser, live_gateway, world.dev_a, errors, width=375, accept_downloads=True)
    await phone.goto(f"{live_gateway}/logs/")
    await expect(phone.locator("table.log-table tbody tr")).to_have_count(50)
    await screenshot(phone, "logs-list-375", full_page=False)  # what a phone shows first (the page is long)
    await phone.locator("table.log-table").scroll_into_view_if_needed()
    await screenshot(phone, "logs-list-375-rows", full_page=False)
    await phone.goto(f"{live_gateway}/logs/req-e2e-detail/")
    await screenshot(phone, "log-detail-375", full_page=False)
    await context.close()
    assert not errors, errors


async def test_manager_opens_the_unit_report_and_downloads_the_csv(browser: Browser, live_gateway: str) -> None:
    world = await sync_to_async(_busy_world)()
    errors: list[str] = []
    context, page = await signed_in(browser, live_gateway, world.manager, errors, accept_downloads=True)

    await page.goto(f"{live_gateway}/")
    await page.get_by_role("link", name="Business units").click()
    await page.wait_for_url("**/units/")
    await expect(page.locator("table")).to_contain_text("Retail")
    await screenshot(page, "units-list")

    await page.get_by_role("link", name="Retail").click()
    await page.wait_for_url(f"**/units/{world.unit.id}/")
    await expect(page.locator(".chart canvas")).to_have_count(1)  # uPlot drew the trend
    await expect(page.locator("#by-project").locator("xpath=..")).to_contain_text("Checkout")
    await expect(page.locator("#by-model").locator("xpath=..")).to_contain_text("gpt-portal-mini")
    await screenshot(page, "unit-report")

    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename.startswith("retail-spend-")
    path = await download.path()
    text = path.read_text()
    assert text.splitlines()[0] == "month,project,model,requests,input_tokens,output_tokens,spend,currency"
    assert ",Checkout,gpt-portal," in text
    await context.close()

    context, phone = await signed_in(browser, live_gateway, world.manager, errors, width=375, accept_downloads=True)
    await phone.goto(f"{live_gateway}/units/{world.unit.id}/")
    await screenshot(phone, "unit-report-375")
    await context.close()
    assert not errors, errors


async def test_markup_in_a_logged_call_opens_no_dialog(browser: Browser, live_gateway: str) -> None:
    world = await sync_to_async(build_world)()
    hostile = await sync_to_async(build_hostile)(world)
    errors: list[str] = []
    dialogs: list[str] = []
    context, page = await signed_in(browser, live_gateway, world.manager, errors, accept_downloads=True)
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    for path in (
        f"/logs/{XSS_REQUEST_ID}/",
        "/logs/req-xss-0002/",
        "/logs/req-xss-0003/",
        "/logs/",
        f"/units/{hostile.unit.id}/",
    ):
        await page.goto(f"{live_gateway}{path}")
        await page.wait_for_load_state("load")
        assert await page.locator("img[src=x]").count() == 0, path
    await expect(page.locator("h1")).to_contain_text("<script>")  # shown as text
    await page.goto(f"{live_gateway}/logs/{XSS_REQUEST_ID}/")
    await screenshot(page, "log-detail-xss")
    await context.close()
    assert dialogs == []
    assert not [e for e in errors if "Content Security Policy" in e], errors
