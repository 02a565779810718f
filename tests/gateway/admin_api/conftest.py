"""An authenticated JSON client for the management API, with a real admin token."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from gateway import services

BASE = "/api/v1"


class Api:
    """Django's test client, speaking JSON to /api/v1 with one Authorization header."""

    def __init__(self, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = Client(headers=headers)

    def get(self, path: str) -> Any:
        return self.client.get(BASE + path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.client.post(BASE + path, json.dumps(body or {}), content_type="application/json")

    def patch(self, path: str, body: Any) -> Any:
        return self.client.patch(BASE + path, json.dumps(body), content_type="application/json")

    def delete(self, path: str) -> Any:
        return self.client.delete(BASE + path)


@pytest.fixture
def admin_token(admin_user) -> services.IssuedToken:  # type: ignore[no-untyped-def]
    return services.issue_admin_token(username=admin_user.username)


@pytest.fixture
def api(admin_token: services.IssuedToken) -> Api:
    return Api(admin_token.secret)


@pytest.fixture
def anonymous(db) -> Api:  # type: ignore[no-untyped-def]
    return Api(None)
