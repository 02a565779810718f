"""A developer's first minute in a real browser: sign in, open the dashboard and the project,
create a key in the dialog, see it once, use it with the openai SDK, revoke it (confirming), and
the next call is refused. Screenshots of the dashboard (1280 and 375 px), the project overview, the
keys list, the key-created dialog, the usage tab and the model catalogue."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import Page, expect

from gateway.models import Deployment, Provider
from tests.conftest import _drain_request_logs, _wait_for_log_writes
from tests.e2e.conftest import screenshot, sign_in_locally
from tests.mock_upstream import MockUpstream
from tests.portal.conftest import World, build_world, seed_usage

pytestmark = pytest.mark.django_db(transaction=True)


def _world_served_by(upstream: MockUpstream) -> World:
    """The portal's test world, its models served by the mock upstream, with 30 days of traffic."""
    _drain_request_logs()
    world = build_world()
    Provider.objects.filter(name="portal-upstream").update(base_url=upstream.url, kind="openai_compatible")
    Deployment.objects.filter(provider__name="portal-upstream").update(upstream_model="upstream-gpt")
    seed_usage(project=world.project_a, key=world.key_a, days=30, per_day=4, errors_per_day=0)
    seed_usage(project=world.project_a, key=world.key_a, days=3, per_day=0, errors_per_day=1)
    seed_usage(project=world.project_a, key=world.key_a, model="gpt-portal-mini", days=12, per_day=2)
    from gateway import services

    services.notify(users=[world.dev_a], kind="budget", title="Checkout reached 50% of its budget", link="/")
    return world


async def _call(base_url: str, secret: str) -> str:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0, timeout=10)
    try:
        reply = await client.chat.completions.create(
            model="gpt-portal", messages=[{"role": "user", "content": "Hello from the journey"}]
        )
    finally:
        await client.close()
    return reply.choices[0].message.content or ""


async def test_developer_creates_uses_and_revokes_a_key(
    page: Page, live_gateway: str, upstream: MockUpstream, settings
) -> None:
    settings.LOCAL_LOGIN = True
    settings.OIDC_ISSUER = ""
    world = await sync_to_async(_world_served_by)(upstream)
    try:
        await _journey(page, live_gateway, world)
    finally:
        await sync_to_async(_wait_for_log_writes)()


async def _journey(page: Page, base: str, world: World) -> None:
    await sign_in_locally(page, base, world.dev_a.username, world.password)
    await page.goto(f"{base}/")
    await expect(page.locator("h1")).to_have_text("Dashboard")
    await expect(page.locator(".project-card")).to_have_count(1)
    await page.wait_for_selector("#requests-chart + *, .chart[data-drawn]")
    await screenshot(page, "dashboard-1280")

    await page.click(".project-card h3 a")
    await expect(page.locator("h1")).to_have_text("Checkout")
    await screenshot(page, "project-overview-1280")

    await page.click("nav.tabs >> text=Keys")
    await expect(page.locator("#key-table")).to_contain_text("checkout-web")
    await page.click(".page-head >> text=New key")
    dialog = page.locator("#key-dialog")
    await expect(dialog).to_be_visible()
    await page.fill("#id_name", "journey")
    await page.click("#key-dialog button[type=submit]")
    secret_box = page.locator("#new-secret")
    await expect(secret_box).to_be_visible()
    secret = (await secret_box.text_content() or "").strip()
    assert secret.startswith("sk-")
    await expect(page.locator("[data-copy='#new-secret']")).to_be_visible()
    await expect(dialog).to_contain_text("will not be shown again")
    await screenshot(page, "key-created-dialog-1280", full_page=False)

    assert await _call(base, secret)  # the new key works at once

    await page.click("text=Done: I have saved the key")
    await expect(page.locator("#key-table")).to_contain_text("journey")
    assert secret not in await page.content()
    await screenshot(page, "keys-list-1280")

    row = page.locator("#key-table tr", has_text="journey")
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await row.locator("button:has-text('Revoke')").click()
    await expect(page.locator("#key-table")).to_contain_text("is revoked")
    await expect(page.locator("#key-table tr", has_text="journey")).to_contain_text("Revoked")

    deadline = time.monotonic() + 5
    while True:
        try:
            await _call(base, secret)
        except openai.AuthenticationError as refused:
            assert refused.status_code == 401
            break
        assert time.monotonic() < deadline, "the revoked key still worked after 5 s"
        await asyncio.sleep(0.1)

    await page.click("nav.tabs >> text=Usage")
    await expect(page.locator("h2#by-model-title")).to_be_visible()
    await page.wait_for_selector(".chart[data-drawn]")
    await screenshot(page, "project-usage-1280")

    await page.goto(f"{base}/models/")
    await expect(page.locator("h1")).to_have_text("Models")
    await screenshot(page, "models-1280")

    await page.set_viewport_size({"width": 375, "height": 812})
    await page.goto(f"{base}/")
    await page.wait_for_selector(".chart[data-drawn]")
    await screenshot(page, "dashboard-375")
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the dashboard scrolls sideways at 375 px ({overflow} px)"
