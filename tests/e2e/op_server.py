"""A real OpenID provider for the sign-in tests: tests/e2e/op/server.mjs (panva's oidc-provider)
run with the node on PATH, one process per gateway base URL for the whole session.

`sso_provider(public_url)` (a fixture factory) starts it, or reuses the one already running for
that URL, points the gateway's settings at it (OIDC_*, PUBLIC_URL; the in-process server reads
them at each request) and returns an `OpenIDProvider`: its issuer, `set_user` to write an account
(and change its groups between sign-ins), and `access_token` to get a user's access token through
the authorization-code flow driven with httpx (as a script would, without a browser)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.mock_upstream import free_port

OP_DIR = Path(__file__).parent / "op"
CALLBACK_PATH = "/accounts/oidc/sso/login/callback/"
CLIENT_ID = "symbiosis-gateway"


@dataclass
class OpenIDProvider:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    accounts_file: Path
    process: subprocess.Popen
    log: Path
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set_user(
        self, username: str, *, groups: list[Any] | str | None = None, email: str | None = None, **claims: Any
    ) -> None:
        """Create or change an account at the provider (read again at every sign-in)."""
        account = self.accounts.setdefault(username, {"email": f"{username}@example.org", "name": username.title()})
        if email is not None:
            account["email"] = email
        if groups is not None:
            account["groups"] = groups
        account.update(claims)
        self._write()

    def reset(self) -> None:
        self.accounts.clear()
        self._write()

    def _write(self) -> None:
        temporary = self.accounts_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.accounts))
        temporary.replace(self.accounts_file)

    def access_token(self, username: str, *, scope: str = "openid email profile") -> str:
        """USERNAME's access token, through the authorization-code flow (login form, code, token)."""
        with httpx.Client(timeout=10) as client:
            query = {
                "client_id": self.client_id,
                "response_type": "code",
                "scope": scope,
                "redirect_uri": self.redirect_uri,
                "state": secrets.token_urlsafe(8),
                "nonce": secrets.token_urlsafe(8),
            }
            response = client.get(f"{self.issuer}/auth", params=query)
            for _ in range(10):
                location = response.headers.get("location")
                assert response.is_redirect and location, f"the provider answered {response.status_code}"
                url = urljoin(str(response.url), location)
                if url.startswith(self.redirect_uri):
                    code = parse_qs(urlsplit(url).query)["code"][0]
                    break
                if "/interaction/" in url:
                    client.get(url)
                    response = client.post(url, data={"prompt": "login", "login": username, "password": "any"})
                else:
                    response = client.get(url)
            else:
                raise AssertionError("the provider never redirected back with a code")
            token = client.post(
                f"{self.issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
            )
            token.raise_for_status()
            return token.json()["access_token"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_provider(public_url: str) -> OpenIDProvider:
    node = shutil.which("node")
    if node is None or not (OP_DIR / "node_modules" / "oidc-provider").exists():
        if os.environ.get("CI"):
            raise RuntimeError("the test OpenID provider needs node and `npm ci --prefix tests/e2e/op` (make clients)")
        pytest.skip("needs node and tests/e2e/op/node_modules (make clients)")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="test-op-"))
    accounts_file = workdir / "accounts.json"
    accounts_file.write_text("{}")
    log = workdir / "op.log"
    secret = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "OP_PORT": str(port),
        "OP_ACCOUNTS": str(accounts_file),
        "OP_CLIENT_ID": CLIENT_ID,
        "OP_CLIENT_SECRET": secret,
        "OP_REDIRECT_URI": public_url + CALLBACK_PATH,
        "OP_POST_LOGOUT_REDIRECT_URI": public_url + "/accounts/login/",
    }
    with log.open("wb") as out:
        process = subprocess.Popen([node, str(OP_DIR / "server.mjs")], env=env, stdout=out, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}"
    provider = OpenIDProvider(issuer, CLIENT_ID, secret, public_url + CALLBACK_PATH, accounts_file, process, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return provider
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"the test OpenID provider did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def _op_processes() -> Iterator[dict[str, OpenIDProvider]]:
    running: dict[str, OpenIDProvider] = {}
    yield running
    for provider in running.values():
        provider.stop()


@pytest.fixture
def sso_provider(_op_processes: dict[str, OpenIDProvider], settings: Any) -> Callable[[str], OpenIDProvider]:
    """sso_provider(public_url): the provider for a gateway at PUBLIC_URL, with no accounts yet,
    and the gateway's settings pointing at it for this test."""

    def configure(public_url: str) -> OpenIDProvider:
        provider = _op_processes.get(public_url)
        if provider is None or provider.process.poll() is not None:
            provider = _op_processes[public_url] = start_provider(public_url)
        provider.reset()
        settings.PUBLIC_URL = public_url
        settings.OIDC_ISSUER = provider.issuer
        settings.OIDC_CLIENT_ID = provider.client_id
        settings.OIDC_CLIENT_SECRET = provider.client_secret
        settings.OIDC_PROVIDER_NAME = "Test IdP"
        return provider

    return configure
