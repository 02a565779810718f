"""Browser tests: Playwright's async API driving Debian's Chromium against the gateway served by
uvicorn on the test database (`live_gateway`). Async, so the tests' own database work goes through
sync_to_async, as Django requires next to a running event loop.

Screenshots land in $SCREENSHOT_DIR (default: tests/e2e/screenshots, kept as CI artifacts)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).parent / "screenshots"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        return  # CI installs Chromium: a missing one must fail there, not skip
    skip = pytest.mark.skip(reason=f"needs Chromium at {CHROMIUM} (apt-get install -y chromium)")
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) at laptop size; page errors fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield opened
    await context.close()
    assert not errors, f"the page reported errors: {errors}"


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact (looked at before a change lands)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def sign_in_locally(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in through /accounts/login/ with a local username and password."""
    await page.goto(f"{base_url}/accounts/login/")
    await page.fill("input[name=login]", username)
    await page.fill("input[name=password]", password)
    await page.click("form#local-login button[type=submit]")
    await page.wait_for_url(f"{base_url}/**")


def session_cookie(user: Any) -> str:
    """A session of `user` made server-side (as signing in would), for a browser to carry."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def add_session(context: BrowserContext, base_url: str, user: Any) -> None:
    """Sign the browser context in as `user` (no sign-in page: its own tests cover that)."""
    cookie = await sync_to_async(session_cookie)(user)
    await context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])


async def signed_in(
    browser: Browser, base_url: str, user: Any, errors: list[str], *, width: int = 1280, accept_downloads: bool = False
) -> tuple[BrowserContext, Page]:
    """A context signed in as `user` and its page; page errors, CSP violations and 4xx/5xx
    answers (but the favicon) are appended to `errors`."""
    context = await browser.new_context(viewport={"width": width, "height": 800}, accept_downloads=accept_downloads)
    await add_session(context, base_url, user)
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
