"""An identity provider's access token on the management API (the real OpenID provider of
tests/e2e/op_server.py): its changes are the IdP user's, actor type "oidc"."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.test import Client

from gateway.models import RoleMapping
from tests.audit.conftest import only_event
from tests.e2e.op_server import OpenIDProvider, _op_processes, sso_provider  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp(sso_provider: Callable[[str], OpenIDProvider]) -> OpenIDProvider:  # noqa: F811
    cache.clear()
    yield sso_provider("http://testserver")
    cache.clear()


def test_a_change_made_with_an_idp_bearer_token_names_its_user(idp: OpenIDProvider) -> None:
    RoleMapping.objects.create(group="gw-admins", role="admin")
    idp.set_user("ops", groups=["gw-admins"], email="ops@corp.example")
    token = idp.access_token("ops")
    client = Client(headers={"Authorization": f"Bearer {token}"})
    response = client.post("/api/v1/business-units", {"name": "Via IdP"}, content_type="application/json")
    assert response.status_code == 201, response.content
    event = only_event(action="business_unit.create")
    assert (event.source, event.actor_type, event.actor_label) == ("api", "oidc", "ops")
    assert event.actor_id == str(response.wsgi_request.user.pk)
    granted = only_event(action="user.roles.sync")  # the token's first use made the user an admin
    assert granted.after["granted"] == ["admin"] and granted.after["is_superuser"] is True
    assert token not in str(event.after) + str(granted.after)
