"""gateway.identity: the groups claim read safely, roles following the identity provider, and only
the roles it granted taken away."""

from __future__ import annotations

import pytest

from gateway import identity
from gateway.models import IdpRoleGrant, RoleMapping
from tests.factories import BusinessUnitFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("claims", "groups"),
    [
        ([{"groups": ["a", "b"]}], {"a", "b"}),
        ([{"groups": "a"}], {"a"}),
        ([{"groups": [" a ", "", 3, None, {"x": 1}, ["b"], "c" * 256]}], {"a"}),
        ([{"groups": {"a": True}}], set()),
        ([{"groups": 7}, None, "junk"], set()),
        ([{"groups": ["a"]}, {"groups": ["b"]}], {"a", "b"}),  # the ID token and userinfo
        ([{"roles": ["a"]}], set()),
    ],
)
def test_groups_claim_accepts_a_list_or_a_string_and_ignores_junk(claims, groups) -> None:
    assert identity.groups_from_claims(claims=claims) == groups


def test_groups_claim_name_is_configurable(settings) -> None:
    settings.OIDC_GROUPS_CLAIM = "roles"
    assert identity.groups_from_claims(claims=[{"roles": ["a"], "groups": ["b"]}]) == {"a"}


def test_admin_role_is_granted_and_taken_away_with_the_group() -> None:
    RoleMapping.objects.create(group="admins", role="admin")
    user = UserFactory()
    assert identity.sync_idp_roles(user=user, groups={"admins"}).granted == ["admin"]
    user.refresh_from_db()
    assert user.is_superuser and user.is_staff
    assert identity.sync_idp_roles(user=user, groups=set()).revoked == ["admin"]
    user.refresh_from_db()
    assert not user.is_superuser and not user.is_staff and not IdpRoleGrant.objects.exists()


def test_a_local_superuser_keeps_the_role_outside_the_admin_group() -> None:
    RoleMapping.objects.create(group="admins", role="admin")
    root = UserFactory(is_superuser=True, is_staff=True)
    identity.sync_idp_roles(user=root, groups={"admins"})
    identity.sync_idp_roles(user=root, groups=set())
    root.refresh_from_db()
    assert root.is_superuser and root.is_staff


def test_manager_roles_follow_the_groups_unit_by_unit() -> None:
    north, south = BusinessUnitFactory(), BusinessUnitFactory()
    RoleMapping.objects.create(group="north-leads", role="manager", business_unit=north)
    RoleMapping.objects.create(group="south-leads", role="manager", business_unit=south)
    user = UserFactory()
    identity.sync_idp_roles(user=user, groups={"north-leads", "south-leads"})
    assert set(user.managed_units.all()) == {north, south}
    identity.sync_idp_roles(user=user, groups={"south-leads"})
    assert set(user.managed_units.all()) == {south}


def test_a_manager_by_hand_keeps_the_unit_and_an_idp_grant_becomes_manual_when_added_by_hand() -> None:
    unit = BusinessUnitFactory()
    RoleMapping.objects.create(group="leads", role="manager", business_unit=unit)
    by_hand, from_idp = UserFactory(), UserFactory()
    identity.add_business_unit_manager(unit=unit, user=by_hand)
    identity.sync_idp_roles(user=by_hand, groups={"leads"})
    identity.sync_idp_roles(user=by_hand, groups=set())
    identity.sync_idp_roles(user=from_idp, groups={"leads"})
    identity.add_business_unit_manager(unit=unit, user=from_idp)  # now it is the API's
    identity.sync_idp_roles(user=from_idp, groups=set())
    assert set(unit.managers.all()) == {by_hand, from_idp}


def test_removing_a_mapping_takes_its_role_away_at_the_next_sync() -> None:
    mapping = RoleMapping.objects.create(group="admins", role="admin")
    user = UserFactory()
    identity.sync_idp_roles(user=user, groups={"admins"})
    identity.delete_role_mapping(mapping=mapping)
    identity.sync_idp_roles(user=user, groups={"admins"})
    user.refresh_from_db()
    assert not user.is_superuser


def test_sign_in_is_open_to_everyone_without_developer_mappings() -> None:
    RoleMapping.objects.create(group="admins", role="admin")
    assert identity.sign_in_refusal(groups=set()) is None


def test_developer_mappings_gate_sign_in_and_name_the_group() -> None:
    RoleMapping.objects.create(group="ai-devs", role="developer")
    RoleMapping.objects.create(group="admins", role="admin")
    assert "“ai-devs”" in identity.sign_in_refusal(groups={"sales"})
    assert identity.sign_in_refusal(groups={"ai-devs"}) is None
    assert identity.sign_in_refusal(groups={"admins"}) is None


def test_user_roles_say_where_each_role_came_from() -> None:
    unit = BusinessUnitFactory()
    RoleMapping.objects.create(group="leads", role="manager", business_unit=unit)
    user = UserFactory(is_superuser=True, is_staff=True)
    identity.sync_idp_roles(user=user, groups={"leads"})
    roles = identity.user_roles(user=identity.list_users().get(pk=user.pk))
    assert roles == [
        identity.UserRole("admin", None, "manual"),
        identity.UserRole("manager", unit.id, "idp"),
        identity.UserRole("developer", None, "manual"),
    ]


def test_groups_of_the_last_sign_in_are_kept_for_the_approval_rules() -> None:
    user, other = UserFactory(), UserFactory()
    assert identity.idp_groups_of(user=user) == set()  # never signed in through SSO

    identity.sync_idp_roles(user=user, groups={"staff", "cn=devs,ou=groups,dc=corp"})
    assert identity.idp_groups_of(user=user) == {"staff", "cn=devs,ou=groups,dc=corp"}
    identity.sync_idp_roles(user=user, groups=iter(["ops"]))  # any iterable, read once
    assert identity.idp_groups_of(user=user) == {"ops"}
    assert identity.idp_groups_of(user=other) == set()
