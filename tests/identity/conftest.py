"""Fixtures for sign-in, roles and the people endpoints: the management API client (tests/gateway/
admin_api), the real OpenID provider (tests/e2e/op_server.py), and a sign-in through it driven with
Django's test client on one side and httpx (playing the browser at the provider) on the other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from django.test import Client

from tests.e2e.op_server import OpenIDProvider, _op_processes, sso_provider  # noqa: F401 - fixtures
from tests.gateway.admin_api.conftest import Api, admin_token, anonymous, api  # noqa: F401 - fixtures

GATEWAY = "http://testserver"


@pytest.fixture
def idp(sso_provider: Callable[[str], OpenIDProvider]) -> OpenIDProvider:  # noqa: F811
    """The real OpenID provider, configured for the test client's gateway (PUBLIC_URL http://testserver)."""
    return sso_provider(GATEWAY)


def sso_sign_in(client: Client, idp: OpenIDProvider, username: str, *, next_url: str | None = None) -> Any:
    """Sign USERNAME in through the provider: POST the sign-in button, log in at the provider,
    come back to the callback. Returns the gateway's answer to the callback."""
    data = {"next": next_url} if next_url else {}
    start = client.post("/accounts/oidc/sso/login/", data)
    assert start.status_code == 302, start.content[:500]
    url = start["Location"]
    assert url.startswith(idp.issuer), url
    with httpx.Client(timeout=10) as browser:
        response = browser.get(url)
        for _ in range(10):
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(GATEWAY):
                break
            if "/interaction/" in location:
                browser.get(location)
                response = browser.post(location, data={"prompt": "login", "login": username, "password": "x"})
            else:
                response = browser.get(location)
        else:
            raise AssertionError("the provider never sent the browser back")
    parts = urlsplit(location)
    assert parts.path == "/accounts/oidc/sso/login/callback/"
    return client.get(parts.path, parse_qs(parts.query))
