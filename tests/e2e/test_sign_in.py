"""Signing in with a browser through a real OpenID provider (tests/e2e/op), and locally."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from playwright.async_api import Page

from gateway.models import BusinessUnit, RoleMapping
from tests.e2e.conftest import screenshot, sign_in_locally
from tests.e2e.op_server import OpenIDProvider, _op_processes, sso_provider  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


@pytest.fixture
def idp(sso_provider, live_gateway: str) -> OpenIDProvider:  # type: ignore[no-untyped-def]  # noqa: F811
    return sso_provider(live_gateway)


async def sso_sign_in(page: Page, base_url: str, username: str) -> None:
    await page.goto(f"{base_url}/accounts/login/")
    await page.click("form#sso-login button[type=submit]")
    await page.fill("input[name=login]", username)
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}/**")


async def sign_out(page: Page, base_url: str) -> None:
    """The portal's sign-out button, then the provider's confirmation (RP-initiated logout)."""
    await page.goto(f"{base_url}/accounts/logout/")
    await page.click("main form button[type=submit]")
    await page.click("button[name=logout][value=yes]")
    await page.wait_for_url(f"{base_url}/accounts/login/**")


def _user(username: str) -> User | None:
    return User.objects.filter(username=username).first()


async def test_developer_signs_in_through_the_provider_and_lands_on_the_dashboard(
    page: Page, live_gateway: str, idp: OpenIDProvider, settings
) -> None:
    settings.LOCAL_LOGIN = True
    idp.set_user("devon", groups=["developers"], email="devon@corp.example")
    await page.goto(f"{live_gateway}/accounts/login/")
    await screenshot(page, "sign-in-1280")
    await page.set_viewport_size({"width": 375, "height": 740})
    await screenshot(page, "sign-in-375")
    await page.set_viewport_size({"width": 1280, "height": 800})

    await sso_sign_in(page, live_gateway, "devon")
    assert page.url == f"{live_gateway}/"
    user = await sync_to_async(_user)("devon")
    assert user is not None and user.email == "devon@corp.example" and not user.is_superuser
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["sessionid"]["httpOnly"] and cookies["sessionid"]["sameSite"] == "Lax"


async def test_roles_follow_the_groups_and_go_when_the_group_is_removed(
    page: Page, live_gateway: str, idp: OpenIDProvider
) -> None:
    def mappings() -> BusinessUnit:
        unit = BusinessUnit.objects.create(name="Retail")
        RoleMapping.objects.create(group="gw-admins", role="admin")
        RoleMapping.objects.create(group="retail-leads", role="manager", business_unit=unit)
        return unit

    unit = await sync_to_async(mappings)()
    idp.set_user("rita", groups=["gw-admins", "retail-leads"])
    await sso_sign_in(page, live_gateway, "rita")
    rita = await sync_to_async(_user)("rita")
    assert rita.is_superuser and rita.is_staff
    assert await sync_to_async(lambda: list(unit.managers.values_list("username", flat=True)))() == ["rita"]

    idp.set_user("rita", groups=[])
    await sign_out(page, live_gateway)
    await sso_sign_in(page, live_gateway, "rita")  # the provider asks for the login again: its session ended
    rita = await sync_to_async(_user)("rita")
    assert not rita.is_superuser and not rita.is_staff
    assert not await sync_to_async(unit.managers.exists)()


async def test_a_user_outside_the_developer_group_sees_why(page: Page, live_gateway: str, idp: OpenIDProvider) -> None:
    await sync_to_async(RoleMapping.objects.create)(group="ai-developers", role="developer")
    idp.set_user("sam", groups=["sales"])
    await page.goto(f"{live_gateway}/accounts/login/")
    await page.click("form#sso-login button[type=submit]")
    await page.fill("input[name=login]", "sam")
    await page.fill("input[name=password]", "x")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live_gateway}/**")
    assert "ai-developers" in await page.inner_text("main")
    await screenshot(page, "sign-in-refused")


async def test_local_login_off_shows_no_local_form(
    page: Page, live_gateway: str, idp: OpenIDProvider, settings
) -> None:
    settings.LOCAL_LOGIN = False
    await page.goto(f"{live_gateway}/accounts/login/")
    assert await page.locator("form#local-login").count() == 0
    assert await page.locator("form#sso-login").count() == 1
    # A hand-made POST of the local form is refused.
    response = await page.evaluate(
        """async () => {
            const csrf = document.querySelector('input[name=csrfmiddlewaretoken]').value;
            const body = new URLSearchParams({csrfmiddlewaretoken: csrf, login: 'x', password: 'y'});
            const r = await fetch('/accounts/login/', {method: 'POST', body});
            return r.status;
        }"""
    )
    assert response == 403


async def test_local_login_works_and_does_not_follow_next_to_another_site(
    page: Page, live_gateway: str, settings
) -> None:
    settings.LOCAL_LOGIN = True
    settings.OIDC_ISSUER = ""
    await sync_to_async(User.objects.create)(username="lou", password=make_password("a good password"))
    await sign_in_locally(page, live_gateway, "lou", "a good password")
    assert page.url == f"{live_gateway}/"
    await page.context.clear_cookies()

    await page.goto(f"{live_gateway}/accounts/login/?next=https://evil.example/")
    await screenshot(page, "sign-in-local-only")
    await page.fill("input[name=login]", "lou")
    await page.fill("input[name=password]", "a good password")
    await page.click("form#local-login button[type=submit]")
    await page.wait_for_url(f"{live_gateway}/**")
    assert page.url == f"{live_gateway}/"
