"""People: users, the identity provider's groups and the roles they grant, business-unit managers.

Roles (README: "Roles from the identity provider"):
- admin: `is_staff` and `is_superuser` (the Django admin, the management API, every portal page);
- manager: in `BusinessUnit.managers` of one unit;
- developer: may sign in through SSO at all. When at least one developer mapping exists, an SSO
  user in no mapped group is refused (`sign_in_refusal`); with none, everyone the IdP lets through
  is a developer. Inside the portal a developer sees the projects they are a member of.

At every SSO sign-in `sync_idp_roles` makes the admin and manager roles follow the groups claim,
and keeps the claim's groups (IdpGroups, read by `idp_groups_of`: approval rules match on them).
Only what the identity provider granted is taken away: each role it grants is recorded in
IdpRoleGrant, so a local superuser or a manager added by hand keeps the role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from gateway import audit
from gateway.errors import ValidationFailed
from gateway.models import BusinessUnit, IdpGroups, IdpRoleGrant, Role, RoleMapping

MAX_GROUPS = 1000  # a claim with more is cut (after dropping what is not a group name)
MAX_GROUP_LENGTH = RoleMapping._meta.get_field("group").max_length


# --- reading the groups claim ---


def groups_from_claims(*, claims: Iterable[Mapping[str, Any] | None], claim: str | None = None) -> set[str]:
    """The group names in CLAIM (default: OIDC_GROUPS_CLAIM) of each claims set (the ID token,
    userinfo). A list of strings or a single string is accepted; anything else (numbers, objects,
    empty or over-long names) is ignored, never an error."""
    name = claim or settings.OIDC_GROUPS_CLAIM
    groups: set[str] = set()
    for claims_set in claims:
        if not isinstance(claims_set, Mapping):
            continue
        value = claims_set.get(name)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for item in values:
            if isinstance(item, str) and 0 < len(item.strip()) <= MAX_GROUP_LENGTH and "\x00" not in item:
                groups.add(item.strip())
            if len(groups) >= MAX_GROUPS:
                return groups
    return groups


# --- selectors ---


def list_role_mappings() -> QuerySet[RoleMapping]:
    return RoleMapping.objects.select_related("business_unit")


def matching_role_mappings(*, groups: Iterable[str]) -> list[RoleMapping]:
    return list(list_role_mappings().filter(group__in=list(groups)))


def idp_groups_of(*, user: AbstractBaseUser) -> set[str]:
    """The groups the user was in at their last SSO sign-in (empty: none, or never signed in
    through SSO)."""
    groups = IdpGroups.objects.filter(user_id=user.pk).values_list("groups", flat=True).first()
    return set(groups or [])


def sign_in_refusal(*, groups: Iterable[str]) -> str | None:
    """Why an SSO user in GROUPS may not sign in, or None. Developer mappings gate sign-in: when
    one exists, a user must be in some mapped group."""
    developer_groups = sorted(set(RoleMapping.objects.filter(role=Role.DEVELOPER).values_list("group", flat=True)))
    if not developer_groups or matching_role_mappings(groups=groups):
        return None
    named = ", ".join(f"“{group}”" for group in developer_groups)
    return (
        f"Your account is not in a group that may use this gateway. Access is granted to members of {named}: "
        "ask your identity provider's administrator to add you, then sign in again."
    )


def list_users() -> QuerySet[AbstractBaseUser]:
    User = get_user_model()
    return User.objects.order_by("username").prefetch_related(
        Prefetch("managed_units", queryset=BusinessUnit.objects.order_by("id")),
        Prefetch("idp_role_grants", queryset=IdpRoleGrant.objects.order_by("id")),
        "socialaccount_set",
    )


@dataclass(frozen=True)
class UserRole:
    role: str
    business_unit: int | None = None
    source: str = "manual"  # "manual" (the admin, the API, a local superuser) or "idp"


def user_roles(*, user: AbstractBaseUser) -> list[UserRole]:
    """USER's roles, where each came from. Reads `managed_units` and `idp_role_grants`, so a list
    from `list_users` costs no further query."""
    if not user.is_active:
        return []
    granted = {(g.role, g.business_unit_id) for g in user.idp_role_grants.all()}

    def source(role: str, unit: int | None) -> str:
        return "idp" if (role, unit) in granted else "manual"

    roles = []
    if user.is_superuser:
        roles.append(UserRole(Role.ADMIN.value, None, source(Role.ADMIN, None)))
    roles += [UserRole(Role.MANAGER.value, unit.id, source(Role.MANAGER, unit.id)) for unit in user.managed_units.all()]
    roles.append(UserRole(Role.DEVELOPER.value))
    return roles


def user_to_link(*, email: str | None, email_verified: bool, provider: str) -> AbstractBaseUser | None:
    """The pre-provisioned user a first SSO sign-in is linked to: the one active user whose email
    is EMAIL (any case), when the identity provider says the address is verified and that user is
    not linked to another account of PROVIDER yet. Otherwise None (a new user is created)."""
    if not email or not email_verified:
        return None
    candidates = list(get_user_model().objects.filter(email__iexact=email.strip(), is_active=True)[:2])
    if len(candidates) != 1 or candidates[0].socialaccount_set.filter(provider=provider).exists():
        return None
    return candidates[0]


# --- services ---


@dataclass
class RoleChanges:
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)


@transaction.atomic(durable=True)
def sync_idp_roles(*, user: AbstractBaseUser, groups: Iterable[str]) -> RoleChanges:
    """Make USER's admin and manager roles follow the identity provider's GROUPS: grant what the
    mappings say, take away what the IdP granted earlier and no longer does."""
    before = _user_state(user)
    changes = _sync_idp_roles(user=user, groups=groups)
    if changes.granted or changes.revoked:
        audit.record(
            action="user.roles.sync",
            target=user,
            object_type="user",
            before=before,
            after=(_user_state(user) or {}) | {"granted": changes.granted, "revoked": changes.revoked},
        )
    return changes


def _user_state(user: AbstractBaseUser) -> dict[str, Any] | None:
    """A user as the audit log shows it: the password only as set or not, and the units it manages."""
    return audit.stored_snapshot(user, exclude=("last_login",), many=("managed_units",))


def _sync_idp_roles(*, user: AbstractBaseUser, groups: Iterable[str]) -> RoleChanges:
    groups = set(groups)
    mappings = matching_role_mappings(groups=groups)
    wants_admin = any(m.role == Role.ADMIN for m in mappings)
    wanted_units = {m.business_unit_id for m in mappings if m.role == Role.MANAGER}
    user = type(user).objects.select_for_update().get(pk=user.pk)
    IdpGroups.objects.update_or_create(user=user, defaults={"groups": sorted(groups), "seen_at": timezone.now()})
    grants = {(g.role, g.business_unit_id): g for g in IdpRoleGrant.objects.filter(user=user)}
    changes = RoleChanges()

    admin_grant = grants.get((Role.ADMIN, None))
    if wants_admin and not (user.is_superuser and user.is_staff):
        user.is_superuser = user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
        if admin_grant is None:
            IdpRoleGrant.objects.create(user=user, role=Role.ADMIN)
        changes.granted.append("admin")
    elif not wants_admin and admin_grant is not None:
        user.is_superuser = user.is_staff = False
        user.save(update_fields=["is_superuser", "is_staff"])
        admin_grant.delete()
        changes.revoked.append("admin")

    managed = set(user.managed_units.values_list("id", flat=True))
    for unit_id in sorted(wanted_units - managed):
        BusinessUnit.managers.through.objects.create(businessunit_id=unit_id, user_id=user.pk)
        IdpRoleGrant.objects.get_or_create(user=user, role=Role.MANAGER, business_unit_id=unit_id)
        changes.granted.append(f"manager of unit {unit_id}")
    for (role, unit_id), grant in grants.items():
        if role == Role.MANAGER and unit_id not in wanted_units:
            BusinessUnit.managers.through.objects.filter(businessunit_id=unit_id, user_id=user.pk).delete()
            grant.delete()
            changes.revoked.append(f"manager of unit {unit_id}")
    return changes


@transaction.atomic(durable=True)
def create_user(*, username: str, email: str, password: str | None = None) -> AbstractBaseUser:
    """A user who can sign in through SSO (linked by verified email at the first sign-in) and, where
    local sign-in is on and a password is given, with that password."""
    User = get_user_model()
    username = (username or "").strip()
    email = (email or "").strip()
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise ValidationFailed(
            "Username may contain only letters, digits and @ . + - _ (and must not be empty).", field="username"
        ) from None
    if len(username) > User._meta.get_field("username").max_length:
        raise ValidationFailed("Username is too long (at most 150 characters).", field="username")
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationFailed(f"Not a valid email address: {email!r}.", field="email") from None
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationFailed(f"A user named {username!r} already exists.", field="username")
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationFailed(f"A user with the email {email!r} already exists.", field="email")
    if password is not None:
        if not settings.LOCAL_LOGIN:
            raise ValidationFailed(
                "Local sign-in is off (LOCAL_LOGIN), so users have no password: leave it out; "
                "the user signs in through single sign-on.",
                field="password",
            )
        candidate = User(username=username, email=email)
        try:
            password_validation.validate_password(password, user=candidate)
        except ValidationError as exc:
            raise ValidationFailed(" ".join(exc.messages), field="password") from None
    user = User.objects.create_user(username=username, email=email, password=password)
    audit.record(action="user.create", target=user, object_type="user", after=_user_state(user))
    return user


@transaction.atomic(durable=True)
def create_admin(*, username: str, password: str, email: str = "", reset_password: bool = False) -> AbstractBaseUser:
    """A superuser who signs in with PASSWORD (`manage.py create_admin`: the first administrator).
    An existing user is refused unless RESET_PASSWORD, which gives it PASSWORD and the admin role."""
    User = get_user_model()
    username = (username or "").strip()
    email = (email or "").strip()
    if not settings.LOCAL_LOGIN:
        raise ValidationFailed(
            "Local sign-in is off (LOCAL_LOGIN), so a password would not let anyone in: set LOCAL_LOGIN=true, "
            "or sign in through single sign-on with an admin role mapping (README: Roles from the identity provider).",
            field="password",
        )
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise ValidationFailed(
            "Username may contain only letters, digits and @ . + - _ (and must not be empty).", field="username"
        ) from None
    if len(username) > User._meta.get_field("username").max_length:
        raise ValidationFailed("Username is too long (at most 150 characters).", field="username")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationFailed(f"Not a valid email address: {email!r}.", field="email") from None
    user = User.objects.select_for_update().filter(username__iexact=username).first()
    if user is not None and not reset_password:
        raise ValidationFailed(
            f"A user named {user.get_username()!r} already exists: pass --reset-password to make it an "
            "administrator with a new password.",
            field="username",
        )
    candidate = user or User(username=username, email=email)
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages), field="password") from None
    if user is None:
        user = User.objects.create_superuser(username=username, email=email, password=password)
        audit.record(action="user.admin.create", target=user, object_type="user", after=_user_state(user))
        return user
    before = _user_state(user)
    user.set_password(password)
    user.is_active = user.is_staff = user.is_superuser = True
    if email:
        user.email = email
    user.save()
    audit.record(action="user.admin.reset", target=user, object_type="user", before=before, after=_user_state(user))
    return user


@transaction.atomic(durable=True)
def create_role_mapping(*, group: str, role: str, business_unit: BusinessUnit | None) -> RoleMapping:
    group = (group or "").strip()
    if not group:
        raise ValidationFailed("group must not be empty.", field="group")
    if len(group) > MAX_GROUP_LENGTH:
        raise ValidationFailed(f"group is too long (at most {MAX_GROUP_LENGTH} characters).", field="group")
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of: {', '.join(Role.values)}.", field="role")
    if role == Role.MANAGER and business_unit is None:
        raise ValidationFailed("A manager mapping needs the business unit its members manage.", field="business_unit")
    if role != Role.MANAGER and business_unit is not None:
        raise ValidationFailed(f"Only manager mappings name a business unit, not {role}.", field="business_unit")
    if RoleMapping.objects.filter(group=group, role=role, business_unit=business_unit).exists():
        raise ValidationFailed("This mapping exists already.", field="group")
    mapping = RoleMapping.objects.create(group=group, role=role, business_unit=business_unit)
    audit.record(action="role_mapping.create", target=mapping, after=audit.snapshot(mapping))
    return mapping


@transaction.atomic(durable=True)
def delete_role_mapping(*, mapping: RoleMapping) -> None:
    """Roles it granted are taken away at each user's next sign-in (not at once)."""
    audit.record_deletion(action="role_mapping.delete", target=mapping, delete=mapping.delete)


@transaction.atomic(durable=True)
def add_business_unit_manager(*, unit: BusinessUnit, user: AbstractBaseUser) -> None:
    """Make USER a manager of UNIT by hand: kept whatever the identity provider says later (an
    earlier grant by the IdP becomes a manual one)."""
    if not user.is_active:
        raise ValidationFailed(f"{user.get_username()!r} is not active.", field="user")
    before = _user_state(user)
    unit.managers.add(user)
    IdpRoleGrant.objects.filter(user=user, role=Role.MANAGER, business_unit=unit).delete()
    audit.record(
        action="business_unit.manager.add", target=user, object_type="user", before=before, after=_user_state(user)
    )


@transaction.atomic(durable=True)
def remove_business_unit_manager(*, unit: BusinessUnit, user: AbstractBaseUser) -> None:
    if not unit.managers.filter(pk=user.pk).exists():
        raise ValidationFailed(f"{user.get_username()!r} is not a manager of {unit.name!r}.", field="user")
    before = _user_state(user)
    unit.managers.remove(user)
    IdpRoleGrant.objects.filter(user=user, role=Role.MANAGER, business_unit=unit).delete()
    audit.record(
        action="business_unit.manager.remove", target=user, object_type="user", before=before, after=_user_state(user)
    )


@transaction.atomic(durable=True)
def create_sso_user(*, provider: str, claims: Mapping[str, Any]) -> AbstractBaseUser:
    """A user for an identity-provider account seen first on the management API (a bearer token
    of someone who never signed in to the portal): named after preferred_username, linked by sub."""
    from allauth.socialaccount.models import SocialAccount

    User = get_user_model()
    wanted = claims.get("preferred_username")
    base = wanted.strip() if isinstance(wanted, str) else ""
    try:
        UnicodeUsernameValidator()(base)
    except ValidationError:
        base = ""
    base = (base or "sso-user")[:140]
    username, n = base, 1
    while User.objects.filter(username__iexact=username).exists():
        n += 1
        username = f"{base}{n}"
    email = claims.get("email")
    user = User.objects.create_user(username=username, email=email if isinstance(email, str) else "")
    SocialAccount.objects.create(
        user=user, provider=provider, uid=str(claims["sub"]), extra_data={"userinfo": dict(claims)}
    )
    audit.record(action="user.create", target=user, object_type="user", after=_user_state(user))
    return user


@transaction.atomic(durable=True)
def link_sso_account(*, user: AbstractBaseUser, provider: str, claims: Mapping[str, Any]) -> None:
    """Record that USER is the identity provider's account `sub` (once)."""
    from allauth.socialaccount.models import SocialAccount

    SocialAccount.objects.get_or_create(
        provider=provider, uid=str(claims["sub"]), defaults={"user": user, "extra_data": {"userinfo": dict(claims)}}
    )
