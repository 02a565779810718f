"""Reads of access and credit requests: who decides them, who may see them, what waits for whom.

Who decides (the approvers), evaluated when asked (so a manager removed from a unit stops deciding
its requests at once):

- join a project: its owners; a project without owners, its business unit's managers;
- create a project: the managers of the business unit it would belong to;
- use a model in a project: administrators;
- credit for a project: the managers of the project's business unit.

Nobody decides their own request (four eyes, administrators included). When that leaves nobody
(the requester is the unit's only manager, the unit has none), administrators are the approvers,
so no request waits forever. Administrators may also decide any pending request (they are the
escalation step of issue 12), but only the requests above are listed as waiting for them.

Who may see a request: its requester, its approvers, whoever decided it, administrators, and the
people responsible for what it is about (the managers of the unit, the owners of the project).
Everyone else gets NotVisible (404 on pages), the same answer as for a request that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse

from approvals.models import AccessRequest, CreditRequest, RequestEvent, State
from billing import selectors as billing_selectors
from gateway import selectors as gateway_selectors
from gateway.selectors import NotVisible, is_administrator, visible_projects

if TYPE_CHECKING:  # names for type hints only: approvals reaches the core through its selectors and services
    from gateway.models import BusinessUnit, Model, Project

User = get_user_model()
AnyRequest = AccessRequest | CreditRequest
TABLES: dict[str, type[AccessRequest] | type[CreditRequest]] = {"access": AccessRequest, "credit": CreditRequest}
MY_REQUESTS_LIMIT = 200
PENDING_LIMIT = 200

_ACCESS_RELATED = ("requester", "decided_by", "project__business_unit", "business_unit", "model", "created_project")
_CREDIT_RELATED = ("requester", "decided_by", "project__business_unit")


def table_of(kind: str) -> type[AccessRequest] | type[CreditRequest]:
    """The table of a kind of request ("access" or "credit"); any other kind is not visible."""
    try:
        return TABLES[kind]
    except (KeyError, TypeError):
        raise NotVisible("No such request.", field="kind") from None


def kind_of(request: AnyRequest) -> str:
    return request.KIND


def request_path(request: AnyRequest) -> str:
    """The request's page in the portal (a path; mails prefix PUBLIC_URL)."""
    return reverse("portal:request-detail", kwargs={"kind": request.KIND, "request_id": request.pk})


# --- who decides ---


def _active_managers(unit_id: int | None) -> QuerySet[Any]:
    return User.objects.filter(managed_units__id=unit_id, is_active=True)


def _administrators() -> QuerySet[Any]:
    return User.objects.filter(is_superuser=True, is_active=True)


def administrators() -> QuerySet[Any]:
    """The active administrators (superusers): the last approvers, and where requests escalate to."""
    return _administrators()


def designated_approvers(request: AnyRequest) -> QuerySet[Any]:
    """The approvers the rules name, before excluding the requester (see the module's docstring)."""
    if isinstance(request, CreditRequest):
        return _active_managers(request.project.business_unit_id)
    if request.kind == AccessRequest.Kind.JOIN:
        owners = gateway_selectors.project_owners(project_id=request.project_id)
        if owners.exclude(pk=request.requester_id).exists():
            return owners
        return _active_managers(request.project.business_unit_id)
    if request.kind == AccessRequest.Kind.NEW_PROJECT:
        return _active_managers(request.business_unit_id)
    return _administrators()


def approvers_of(request: AnyRequest) -> list[Any]:
    """Who decides this request: the designated approvers but the requester, or, if that leaves
    nobody, the administrators but the requester. Ordered by username."""
    people = list(designated_approvers(request).exclude(pk=request.requester_id).order_by("username").distinct())
    if people:
        return people
    return list(_administrators().exclude(pk=request.requester_id).order_by("username"))


def approvers_label(request: AnyRequest) -> str:
    """Who decides, in words for the requester ("the managers of Retail")."""
    if isinstance(request, CreditRequest):
        return f"the managers of {request.project.business_unit}"
    if request.kind == AccessRequest.Kind.JOIN:
        if getattr(request, "has_owner", None) is False:
            return f"the managers of {request.project.business_unit}"
        return f"the owners of {request.project}"
    if request.kind == AccessRequest.Kind.NEW_PROJECT:
        return f"the managers of {request.business_unit}"
    return "an administrator"


def _approves(user: AbstractBaseUser, request: AnyRequest) -> bool:
    """The user is one of the request's approvers, or an administrator (whatever its state)."""
    if not user.is_authenticated or user.pk == request.requester_id:
        return False
    if is_administrator(user):
        return True
    return any(person.pk == user.pk for person in approvers_of(request))


def can_decide(*, user: AbstractBaseUser, request: AnyRequest) -> bool:
    """The user may approve or deny the request now: it is pending, it is not theirs, and they are
    one of its approvers or an administrator."""
    return request.state == State.PENDING and _approves(user, request)


def _may_see(user: AbstractBaseUser, request: AnyRequest) -> bool:
    if not user.is_authenticated:
        return False
    if user.pk in (request.requester_id, request.decided_by_id) or is_administrator(user):
        return True
    project = request.project
    unit_id = project.business_unit_id if project is not None else request.business_unit_id
    if gateway_selectors.manages_unit(user_id=user.pk, unit_id=unit_id):
        return True
    if project is not None and gateway_selectors.is_project_owner(project_id=project.id, user_id=user.pk):
        return True
    return _approves(user, request)


def get_request_for_user(*, user: AbstractBaseUser, kind: str, request_id: int) -> AnyRequest:
    """The request, if the user may see it; NotVisible otherwise (and for unknown kinds and ids)."""
    table = table_of(kind)
    related = _CREDIT_RELATED if table is CreditRequest else _ACCESS_RELATED
    request = table.objects.select_related(*related).filter(pk=request_id).first()
    if request is None or not _may_see(user, request):
        raise NotVisible("No such request.", field="request")
    return request


def may_see_project(*, user: AbstractBaseUser, request: AnyRequest) -> bool:
    """Whether the request's project page is visible to the user (so its name may be a link)."""
    target = request.created_project if isinstance(request, AccessRequest) and request.created_project else None
    target = target or request.project
    return target is not None and visible_projects(user=user).filter(id=target.id).exists()


def request_events(*, request: AnyRequest) -> list[RequestEvent]:
    """The request's history, oldest first."""
    where = {"credit_request": request} if isinstance(request, CreditRequest) else {"access_request": request}
    return list(RequestEvent.objects.filter(**where).select_related("actor").order_by("at", "id"))


# --- lists ---


def _with_owner_flag(requests: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    owners = gateway_selectors.owner_memberships(project=OuterRef("project")).filter(user__is_active=True)
    return requests.annotate(has_owner=Exists(owners.exclude(user=OuterRef("requester"))))


def _newest_first(*groups: list[Any], limit: int) -> list[Any]:
    merged = [r for group in groups for r in group]
    merged.sort(key=lambda r: (r.created_at, r.pk), reverse=True)
    return merged[:limit]


def my_requests(*, user: AbstractBaseUser, limit: int = MY_REQUESTS_LIMIT) -> list[AnyRequest]:
    """The user's own requests of both kinds, newest first (two queries)."""
    if not user.is_authenticated:
        return []
    access = _with_owner_flag(AccessRequest.objects.filter(requester=user).select_related(*_ACCESS_RELATED))
    credit = CreditRequest.objects.filter(requester=user).select_related(*_CREDIT_RELATED)
    return _newest_first(
        list(access.order_by("-created_at")[:limit]), list(credit.order_by("-created_at")[:limit]), limit=limit
    )


def _manages(user: AbstractBaseUser, unit_path: str) -> Exists:
    return Exists(gateway_selectors.unit_manager_links(unit_id=OuterRef(unit_path)).filter(user_id=user.pk))


def _other_managers(unit_path: str) -> Exists:
    """The unit has an active manager other than the requester."""
    return Exists(
        gateway_selectors.unit_manager_links(unit_id=OuterRef(unit_path))
        .filter(user__is_active=True)
        .exclude(user_id=OuterRef("requester"))
    )


def _pending_access(user: AbstractBaseUser) -> QuerySet[AccessRequest]:
    Kind = AccessRequest.Kind
    owners = gateway_selectors.owner_memberships(project=OuterRef("project"))
    other_owner = Exists(owners.filter(user__is_active=True).exclude(user=OuterRef("requester")))
    mine = (
        (Q(kind=Kind.JOIN) & Q(Exists(owners.filter(user_id=user.pk))))
        | (Q(kind=Kind.JOIN) & ~Q(other_owner) & Q(_manages(user, "project__business_unit_id")))
        | (Q(kind=Kind.NEW_PROJECT) & Q(_manages(user, "business_unit_id")))
    )
    if is_administrator(user):
        mine |= (
            Q(kind=Kind.MODEL)
            | (Q(kind=Kind.JOIN) & ~Q(other_owner) & ~Q(_other_managers("project__business_unit_id")))
            | (Q(kind=Kind.NEW_PROJECT) & ~Q(_other_managers("business_unit_id")))
        )
    ids = AccessRequest.objects.filter(mine, state=State.PENDING).exclude(requester=user).values("id")
    return AccessRequest.objects.filter(id__in=ids)


def _pending_credit(user: AbstractBaseUser) -> QuerySet[CreditRequest]:
    mine = Q(_manages(user, "project__business_unit_id"))
    if is_administrator(user):
        mine |= ~Q(_other_managers("project__business_unit_id"))
    return CreditRequest.objects.filter(mine, state=State.PENDING).exclude(requester=user)


def pending_for_approver(*, user: AbstractBaseUser, limit: int = PENDING_LIMIT) -> list[AnyRequest]:
    """The pending requests waiting for this user's decision, oldest first (the longest waiting on
    top), with what deciding needs: requester, project and unit, model or amount (two queries)."""
    if not user.is_authenticated:
        return []
    access = _with_owner_flag(_pending_access(user).select_related(*_ACCESS_RELATED)).order_by("created_at")
    credit = _pending_credit(user).select_related(*_CREDIT_RELATED).order_by("created_at")
    merged = [*access[:limit], *credit[:limit]]
    merged.sort(key=lambda r: (r.created_at, r.pk))
    return merged[:limit]


def pending_decision_count(*, user: AbstractBaseUser) -> int:
    """How many pending requests wait for this user's decision (the navigation's badge)."""
    if not user.is_authenticated:
        return 0
    return _pending_access(user).count() + _pending_credit(user).count()


def pending_requests_of(*, user: AbstractBaseUser) -> int:
    """How many of the user's own requests are still pending (the dashboard may show it)."""
    if not user.is_authenticated:
        return 0
    return (
        AccessRequest.objects.filter(requester=user, state=State.PENDING).count()
        + CreditRequest.objects.filter(requester=user, state=State.PENDING).count()
    )


# --- what the forms offer ---


def joinable_projects(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user may ask to join: every project they are not a member of, by unit.

    Deliberately the whole organisation's directory (names and units only): a newcomer must be
    able to find the project they were told to join. Nothing else about those projects (spend,
    keys, members, logs) becomes visible; their pages stay 404 until the request is approved.
    Narrow it here (e.g. to the user's units) if project names are confidential."""
    return gateway_selectors.projects_without_member(user=user)


def requestable_units() -> QuerySet[BusinessUnit]:
    """Business units a new project may be asked for (all of them: the unit's managers decide)."""
    return gateway_selectors.list_business_units().order_by("name")


def requestable_models() -> QuerySet[Model]:
    """Models a project may ask for: enabled, served by at least one enabled deployment of an
    approved provider."""
    return gateway_selectors.served_models()


@dataclass(frozen=True)
class ModelChoice:
    project: Project
    models: list[Model]


def model_choices(*, user: AbstractBaseUser) -> list[ModelChoice]:
    """For each project the user may see, the requestable models it does not have yet (3 queries)."""
    models = list(requestable_models())
    projects = list(visible_projects(user=user).prefetch_related("allowed_models"))
    choices = []
    for project in projects:
        allowed = {m.pk for m in project.allowed_models.all()}
        missing = [m for m in models if m.pk not in allowed]
        if missing:
            choices.append(ModelChoice(project=project, models=missing))
    return choices


def credit_projects(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user may ask credit for: the ones they may see."""
    return visible_projects(user=user)


def money_of(*, requests: list[AnyRequest]) -> dict[int, Any]:
    """This month's money (billing.selectors.ProjectMoney: balance, spend, allowance) of the
    projects the requests are about, by project id: two queries for any number of requests."""
    ids = sorted({r.project_id for r in requests if r.project_id is not None})
    return billing_selectors.project_money(project_ids=ids) if ids else {}


def money_of_project(*, project: Project) -> Any:
    """One project's money this month (billing.selectors.ProjectMoney); call only for a project
    the user may see."""
    return billing_selectors.project_money(project_ids=[project.id])[project.id]
