"""Signing in through the real OpenID provider (tests/e2e/op), driven without a browser: the user
is created or linked, roles follow the groups claim, refusals are readable, sign-out ends the
provider's session too."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from gateway import identity
from gateway.models import RoleMapping
from tests.factories import BusinessUnitFactory
from tests.identity.conftest import sso_sign_in

pytestmark = pytest.mark.django_db
User = get_user_model()


def _signed_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_first_sign_in_creates_the_user_with_the_providers_email(idp) -> None:
    idp.set_user("alice", groups=["devs"], email="alice@corp.example")
    client = Client()
    response = sso_sign_in(client, idp, "alice")
    assert response.status_code == 302 and response["Location"] == "/"
    user = _signed_in_user(client)
    assert user.username == "alice" and user.email == "alice@corp.example"
    assert not user.is_superuser and not user.has_usable_password()


def test_redirect_uri_comes_from_public_url_not_the_host_header(idp) -> None:
    response = Client().post("/accounts/oidc/sso/login/", HTTP_HOST="127.0.0.1")
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["redirect_uri"] == ["http://testserver/accounts/oidc/sso/login/callback/"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}


def test_admin_group_makes_a_superuser_and_losing_it_takes_the_role_away(idp) -> None:
    RoleMapping.objects.create(group="gw-admins", role="admin")
    idp.set_user("root2", groups=["gw-admins", "other"])
    client = Client()
    sso_sign_in(client, idp, "root2")
    user = _signed_in_user(client)
    assert user.is_superuser and user.is_staff

    idp.set_user("root2", groups=["other"])
    client = Client()
    sso_sign_in(client, idp, "root2")
    user.refresh_from_db()
    assert not user.is_superuser and not user.is_staff


def test_manager_group_manages_its_unit_until_removed_from_the_group(idp) -> None:
    unit = BusinessUnitFactory(name="Retail")
    RoleMapping.objects.create(group="retail-managers", role="manager", business_unit=unit)
    idp.set_user("maria", groups="retail-managers")  # a single string is accepted too
    sso_sign_in(Client(), idp, "maria")
    maria = User.objects.get(username="maria")
    assert list(unit.managers.all()) == [maria]

    idp.set_user("maria", groups=[])
    sso_sign_in(Client(), idp, "maria")
    assert not unit.managers.exists()


def test_a_manager_added_by_hand_keeps_the_role_whatever_the_groups_say(idp) -> None:
    unit = BusinessUnitFactory()
    idp.set_user("hand", groups=[])
    sso_sign_in(Client(), idp, "hand")
    user = User.objects.get(username="hand")
    identity.add_business_unit_manager(unit=unit, user=user)
    sso_sign_in(Client(), idp, "hand")
    assert list(unit.managers.all()) == [user]


def test_user_in_no_mapped_group_is_refused_when_developer_mappings_exist(idp) -> None:
    RoleMapping.objects.create(group="ai-developers", role="developer")
    idp.set_user("outsider", groups=["marketing"])
    client = Client()
    response = sso_sign_in(client, idp, "outsider")
    assert response.status_code == 403
    assert "ai-developers" in response.content.decode()
    assert _signed_in_user(client) is None and not User.objects.filter(username="outsider").exists()

    idp.set_user("outsider", groups=["ai-developers"])
    assert sso_sign_in(client, idp, "outsider").status_code == 302
    assert _signed_in_user(client).username == "outsider"


def test_junk_in_the_groups_claim_is_ignored(idp) -> None:
    RoleMapping.objects.create(group="gw-admins", role="admin")
    idp.set_user("junk", groups=[1, None, {"name": "gw-admins"}, ["gw-admins"], "", "x" * 300])
    client = Client()
    assert sso_sign_in(client, idp, "junk").status_code == 302
    assert not _signed_in_user(client).is_superuser


def test_a_pre_provisioned_user_is_linked_by_verified_email(idp) -> None:
    existing = identity.create_user(username="bob.local", email="Bob@Corp.example")
    idp.set_user("bob", email="bob@corp.example", email_verified=True)
    client = Client()
    sso_sign_in(client, idp, "bob")
    assert _signed_in_user(client) == existing
    assert not User.objects.filter(username="bob").exists()
    assert existing.socialaccount_set.get().uid == "bob"


def test_an_unverified_email_is_not_linked_to_the_existing_user(idp) -> None:
    existing = identity.create_user(username="carol", email="carol@corp.example")
    idp.set_user("carol", email="carol@corp.example", email_verified=False)
    client = Client()
    sso_sign_in(client, idp, "carol")
    user = _signed_in_user(client)
    assert user != existing and user.username != "carol"  # a new user, with a username of its own


def test_next_is_followed_after_sign_in_when_it_stays_on_the_gateway(idp) -> None:
    idp.set_user("nina")
    assert sso_sign_in(Client(), idp, "nina", next_url="/logs/").headers["Location"] == "/logs/"


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example/x", "http://evil.example"])
def test_next_to_another_site_is_not_followed_after_sign_in(idp, evil) -> None:
    idp.set_user("nick")
    assert sso_sign_in(Client(), idp, "nick", next_url=evil).headers["Location"] == "/"


def test_sign_out_ends_the_providers_session_with_the_id_token(idp) -> None:
    idp.set_user("olga")
    client = Client()
    sso_sign_in(client, idp, "olga")
    response = client.post("/accounts/logout/")
    assert _signed_in_user(client) is None
    parts = urlsplit(response["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{idp.issuer}/session/end"
    query = parse_qs(parts.query)
    assert query["client_id"] == [idp.client_id]
    assert query["post_logout_redirect_uri"] == ["http://testserver/accounts/login/"]
    assert query["id_token_hint"][0].count(".") == 2


def test_local_sign_out_stays_local(admin_user, idp) -> None:
    client = Client()
    client.force_login(admin_user)
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"


def test_provider_outage_shows_a_readable_page(idp, settings) -> None:
    settings.OIDC_ISSUER = "http://127.0.0.1:9"  # nothing listens there
    response = Client().post("/accounts/oidc/sso/login/")
    assert response.status_code == 503
    assert "does not answer" in response.content.decode()


def test_sso_paths_are_404_when_sso_is_not_configured(settings) -> None:
    settings.OIDC_ISSUER = ""
    assert Client().post("/accounts/oidc/sso/login/").status_code == 404
    assert Client().get("/accounts/oidc/sso/login/callback/?code=x&state=y").status_code == 404
