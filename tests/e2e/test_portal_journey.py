"""The whole story in one browser run, through a real OpenID provider (tests/e2e/op):

a developer signs in with SSO for the first time and lands on an empty dashboard, asks to join a
project; the unit's manager signs in with SSO (her role comes from an IdP group), approves it from
/requests/; the developer creates a key, uses it with the openai SDK, revokes it, sees the next
call refused, and finds that call in the request log; the manager reads the business-unit report;
removed from the group at the IdP, she loses the manager role at her next sign-in."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import Browser, Page, expect

from gateway import services
from gateway.models import BusinessUnit, Project, RequestLog, RoleMapping
from tests.conftest import _drain_request_logs, _wait_for_log_writes
from tests.e2e.conftest import CHROMIUM, screenshot  # noqa: F401 - the Chromium checks in conftest
from tests.e2e.op_server import OpenIDProvider, _op_processes, sso_provider  # noqa: F401 - fixtures
from tests.e2e.test_sign_in import sign_out, sso_sign_in
from tests.factories import DeploymentFactory, ModelFactory, ProviderFactory
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def idp(sso_provider, live_gateway: str) -> OpenIDProvider:  # type: ignore[no-untyped-def]  # noqa: F811
    return sso_provider(live_gateway)


def _organisation(upstream: MockUpstream) -> Project:
    """One unit with one project allowed `gpt-journey` (served by the mock upstream), and the IdP
    groups that make developers and the unit's managers."""
    _drain_request_logs()
    unit = services.create_business_unit(name="Retail")
    provider = ProviderFactory(name="journey-upstream", base_url=upstream.url)
    DeploymentFactory(model=ModelFactory(name="gpt-journey"), provider=provider, upstream_model="upstream-gpt")
    project = services.create_project(name="Checkout", business_unit=unit, allowed_models=["gpt-journey"])
    RoleMapping.objects.create(group="developers", role="developer")
    RoleMapping.objects.create(group="retail-leads", role="manager", business_unit=unit)
    return project


async def _call(base_url: str, secret: str) -> str:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0, timeout=10)
    try:
        reply = await client.chat.completions.create(
            model="gpt-journey", messages=[{"role": "user", "content": "Hello from the portal journey"}]
        )
    finally:
        await client.close()
    return reply.choices[0].message.content or ""


async def _new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    return await context.new_page()


async def test_sign_in_join_approve_key_use_revoke_log_report_and_lose_the_role(
    browser: Browser, page: Page, live_gateway: str, idp: OpenIDProvider, upstream: MockUpstream, settings
) -> None:
    settings.LOCAL_LOGIN = False
    base = live_gateway
    project = await sync_to_async(_organisation)(upstream)
    idp.set_user("devon", groups=["developers"], email="devon@corp.example", name="Devon Dev")
    idp.set_user("maria", groups=["developers", "retail-leads"], email="maria@corp.example", name="Maria Lead")
    try:
        # 1. First sign-in: the user is created; nothing to show yet but the way in.
        await sso_sign_in(page, base, "devon")
        assert page.url == f"{base}/"
        await expect(page.locator("main")).to_contain_text("Request access")
        await screenshot(page, "journey-empty-dashboard")

        # 2. Ask to join the project.
        await page.goto(f"{base}/requests/access/new/?what=join")
        await page.select_option("#id_project", label="Retail / Checkout")
        await page.fill("#id_reason", "I build the checkout's recommendations.")
        await page.click("main form button[type=submit]:has-text('Send request')")
        await expect(page.locator("main")).to_contain_text("Pending")

        # 3. The manager signs in (her role comes from the IdP) and approves from /requests/.
        manager = await _new_page(browser)
        try:
            await sso_sign_in(manager, base, "maria")
            await expect(manager.locator("nav.topnav")).to_contain_text("Business units")
            await manager.goto(f"{base}/requests/")
            card = manager.locator("main", has_text="Waiting for your decision")
            await expect(card).to_contain_text("Devon")
            await manager.click("button[name=decision][value=approve]")
            await expect(manager.locator("main")).to_contain_text("Approved")
        finally:
            await manager.context.close()

        # 4. The developer now sees the project and creates a key in the dialog.
        await page.goto(f"{base}/")
        await expect(page.locator(".project-card")).to_have_count(1)
        await page.goto(f"{base}/projects/{project.id}/keys/")
        await page.click(".page-head >> text=New key")
        await page.fill("#id_name", "journey-key")
        await page.click("#key-dialog button[type=submit]")
        secret = (await page.locator("#new-secret").text_content() or "").strip()
        assert secret.startswith("sk-sym-")
        await expect(page.locator("#key-dialog")).to_contain_text("will not be shown again")

        # 5. The key works with the official SDK...
        assert await _call(base, secret)
        await page.click("text=Done: I have saved the key")
        assert secret not in await page.content()

        # 6. ...until it is revoked; then the next call is refused.
        row = page.locator("#key-table tr", has_text="journey-key")
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await row.locator("button:has-text('Revoke')").click()
        await expect(page.locator("#key-table tr", has_text="journey-key")).to_contain_text("Revoked")
        deadline = time.monotonic() + 5
        while True:
            try:
                await _call(base, secret)
            except openai.AuthenticationError as refused:
                assert refused.status_code == 401
                break
            assert time.monotonic() < deadline, "the revoked key still worked after 5 s"
            await asyncio.sleep(0.1)

        # 7. The successful call is in the request log; its detail shows the prompt, escaped.
        await sync_to_async(_wait_for_log_writes)()
        logged = await sync_to_async(
            lambda: RequestLog.objects.filter(project_id=project.id, status_code=200).first()
        )()
        assert logged is not None
        await page.goto(f"{base}/logs/?project={project.id}")
        await expect(page.locator("main table")).to_contain_text("gpt-journey")
        await page.goto(f"{base}/logs/{logged.request_id}/")
        await expect(page.locator("main")).to_contain_text(logged.request_id)
        await screenshot(page, "journey-log-detail")

        # 8. The manager reads her unit's report; removed from the group, she loses it.
        unit_id = await sync_to_async(lambda: BusinessUnit.objects.get(name="Retail").id)()
        manager = await _new_page(browser)
        try:
            await sso_sign_in(manager, base, "maria")
            await manager.goto(f"{base}/units/{unit_id}/")
            await expect(manager.locator("h1")).to_contain_text("Retail")
            await expect(manager.locator("main")).to_contain_text("Checkout")
            await screenshot(manager, "journey-unit-report")
            await sign_out(manager, base)

            idp.set_user("maria", groups=["developers"], email="maria@corp.example", name="Maria Lead")
            await sso_sign_in(manager, base, "maria")
            await expect(manager.locator("nav.topnav")).not_to_contain_text("Business units")
            response = await manager.goto(f"{base}/units/{unit_id}/")
            assert response is not None and response.status == 404
        finally:
            await manager.context.close()
    finally:
        await sync_to_async(_wait_for_log_writes)()
