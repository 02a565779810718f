"""The request-log browser: the rows of the projects a user may see, filtered through the URL (so
a filtered view is a link to share), in keyset pages, and one row in detail with its bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from gateway import selectors
from gateway.errors import ValidationFailed
from gateway.selectors import NotVisible
from portal.views.common import portal_view, render_page

PAGE_SIZE = 50
STATUS_CHOICES = [
    ("", "Any status"),
    ("ok", "Succeeded"),
    ("error", "Failed (400 and up)"),
    ("400", "400 Bad request"),
    ("401", "401 Unauthorized"),
    ("403", "403 Forbidden"),
    ("404", "404 Not found"),
    ("408", "408 Timeout"),
    ("413", "413 Too large"),
    ("429", "429 Too many requests"),
    ("500", "500 Server error"),
    ("502", "502 Bad gateway"),
    ("503", "503 Unavailable"),
    ("504", "504 Gateway timeout"),
]
# The fields the filters are sent as (the URL's query), in the order of the form.
FILTERS = ("project", "key", "model", "status", "from", "to", "q")
# A selector's refusal, shown beside the filter it concerns.
SELECTOR_FIELDS = {"end": "to", "start": "from", "status": "status", "cursor": None, "limit": None}
TIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


class LogFilters(forms.Form):
    """The log's filters, read from the query string; choices are only what the user may see."""

    project = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={"invalid_choice": "Choose one of your projects."},
    )
    key = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={"invalid_choice": "Choose one of the keys of your projects."},
    )
    model = forms.CharField(required=False, max_length=128, strip=True)
    status = forms.CharField(required=False, max_length=8, strip=True)
    q = forms.CharField(
        required=False,
        max_length=200,
        strip=True,
        label="Text",
        help_text="Words in the request or the answer.",
    )

    def __init__(self, data: QueryDict, *, projects: list[Any], keys: list[Any], models: list[str]) -> None:
        super().__init__(data)
        self.fields["project"].choices = [("", "All projects"), *((p.id, p.name) for p in projects)]
        project_names = {p.id: p.name for p in projects}
        self.fields["key"].choices = [
            ("", "All keys"),
            *((k.id, f"{k.name} ({k.prefix}…) · {project_names.get(k.project_id, '')}") for k in keys),
        ]
        for name, label in (("from", "From (UTC)"), ("to", "To (UTC)")):
            self.fields[name] = forms.DateTimeField(
                required=False,
                label=label,
                input_formats=TIME_FORMATS,
                error_messages={"invalid": "Enter a date and time like 2026-12-01T09:30."},
            )
        self.models = models
        self.order_fields(FILTERS)

    def clean_status(self) -> str:
        status = self.cleaned_data["status"].lower()
        if status in ("", "ok", "error") or (status.isdigit() and 100 <= int(status) <= 599):
            return status
        raise forms.ValidationError('Choose a status: "ok", "error" or a code such as 429.')

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start >= end:
            self.add_error("to", "Choose a time after “From”.")
        return cleaned

    def status_choices(self) -> list[tuple[str, str]]:
        """The usual statuses, and the chosen code when it is another one."""
        current = self.data.get("status", "")
        known = [value for value, _ in STATUS_CHOICES]
        if current.isdigit() and current not in known and 100 <= int(current) <= 599:
            return [*STATUS_CHOICES, (current, current)]
        return STATUS_CHOICES

    def query(self) -> QueryDict:
        """The filters as a query string without empty values (for links and the address bar)."""
        query = QueryDict(mutable=True)
        for name in FILTERS:
            value = self.data.get(name, "")
            if value.strip():
                query[name] = value.strip()
        return query


@dataclass(frozen=True)
class LogLine:
    row: Any  # a RequestLog row
    project: Any  # its project, when the user may see it
    key: Any  # its key, when it still exists


@dataclass(frozen=True)
class Pager:
    older: str | None  # the query string of the older page, or None
    newer: str | None  # the query string of the newer page, or None (the newest)
    newest: str | None  # the query string of the newest page, when this is not it


@portal_view
@require_GET
@vary_on_headers("HX-Request")
def log_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    projects = list(selectors.visible_projects(user=user))
    keys = list(selectors.list_keys_of_projects(project_ids=[p.id for p in projects]))
    models = list(selectors.list_models().prefetch_related(None).order_by("name").values_list("name", flat=True))
    form = LogFilters(request.GET, projects=projects, keys=keys, models=models)
    query = form.query()
    page, pager, page_error = None, None, ""
    if projects or selectors.is_administrator(user):
        if form.is_valid():
            page, page_error = _page(request, form, projects)
        if page is not None:
            pager = _pager(request, query, page)
    project_by_id, key_by_id = {p.id: p for p in projects}, {k.id: k for k in keys}
    lines = [
        LogLine(row=row, project=project_by_id.get(row.project_id), key=key_by_id.get(row.key_id))
        for row in (page.rows if page else [])
    ]
    context = {
        "form": form,
        "page": page,
        "lines": lines,
        "pager": pager,
        "page_error": page_error,
        "query": query.urlencode(),
        "has_projects": bool(projects),
        "currency": settings.BILLING_CURRENCY,
        "filtered": bool(query),
    }
    response = render_page(request, "portal/logs.html", context, partial="log-browser")
    if getattr(request, "htmx", False):
        # The address bar shows the filters without the empty ones, as a shared link would.
        response["HX-Push-Url"] = _url(query, **_cursor_params(request))
    return response


def _page(request: HttpRequest, form: LogFilters, projects: list[Any]) -> tuple[selectors.LogPage | None, str]:
    cleaned = form.cleaned_data
    if cleaned["project"] is not None:
        project_ids: list[int] | None = [cleaned["project"]]
    elif selectors.is_administrator(request.user):
        project_ids = None  # everything, also rows of calls that never reached a project
    else:
        project_ids = [p.id for p in projects]
    try:
        page = selectors.request_log_page(
            project_ids=project_ids,
            key_id=cleaned["key"],
            model=cleaned["model"] or None,
            status=cleaned["status"] or None,
            start=cleaned["from"],
            end=cleaned["to"],
            text=cleaned["q"] or None,
            cursor=request.GET.get("cursor") or None,
            newer=request.GET.get("newer") or None,
            limit=PAGE_SIZE,
        )
    except ValidationFailed as error:
        field = SELECTOR_FIELDS.get(error.field or "")
        if field:
            form.add_error(field, str(error))
            return None, ""
        return None, "This page link is no longer valid. Start again from the newest rows."
    return page, ""


def _cursor_params(request: HttpRequest) -> dict[str, str]:
    return {name: request.GET[name] for name in ("cursor", "newer") if request.GET.get(name)}


def _url(query: QueryDict, **extra: str) -> str:
    full = query.copy()
    for name, value in extra.items():
        full[name] = value
    text = full.urlencode()
    return reverse("portal:logs") + (f"?{text}" if text else "")


def _pager(request: HttpRequest, query: QueryDict, page: selectors.LogPage) -> Pager:
    on_newest = not _cursor_params(request) or (request.GET.get("newer") and page.newer_cursor is None)
    return Pager(
        older=_url(query, cursor=page.next_cursor) if page.next_cursor else None,
        newer=_url(query, newer=page.newer_cursor) if page.newer_cursor else None,
        newest=None if on_newest else _url(query),
    )


# --- one row ---


@dataclass(frozen=True)
class Body:
    text: str  # pretty-printed JSON, or the text as stored
    is_json: bool
    stream: bool  # a stream's answer, reassembled into its text


def _body(stored: str) -> Body | None:
    if not stored:
        return None
    try:
        parsed = json.loads(stored)
    except ValueError:
        return Body(text=stored, is_json=False, stream=False)
    if isinstance(parsed, dict) and parsed.get("stream") is True and isinstance(parsed.get("content"), str):
        return Body(text=parsed["content"], is_json=False, stream=True)
    return Body(text=json.dumps(parsed, indent=2, ensure_ascii=False), is_json=True, stream=False)


def _verdicts(guardrails: Any) -> list[dict[str, Any]]:
    """Each verdict's usual fields, and whatever else it holds as text."""
    verdicts = []
    for verdict in guardrails if isinstance(guardrails, list) else []:
        if not isinstance(verdict, dict):
            verdict = {"check": str(verdict)}
        known = ("where", "check", "action", "count", "kinds")
        kinds = verdict.get("kinds")
        verdicts.append(
            {
                "where": verdict.get("where", ""),
                "check": verdict.get("check", ""),
                "action": verdict.get("action", ""),
                "count": verdict.get("count"),
                "kinds": ", ".join(map(str, kinds)) if isinstance(kinds, list) else (kinds or ""),
                "other": json.dumps({k: v for k, v in verdict.items() if k not in known}, ensure_ascii=False)
                if set(verdict) - set(known)
                else "",
            }
        )
    return verdicts


@portal_view
@require_GET
def detail(request: HttpRequest, request_id: str) -> HttpResponse:
    row = selectors.request_log(request_id=request_id)
    if row is None:
        raise NotVisible("No such request.", field="request_id")
    project = key = member = None
    if row.project_id is not None:
        project = selectors.get_visible_project(user=request.user, project_id=row.project_id)
        if row.key_id is not None:
            try:
                key = selectors.get_visible_key(user=request.user, project=project, key_id=row.key_id)
            except NotVisible:
                key = None  # deleted since: the row keeps its prefix
    elif not selectors.is_administrator(request.user):
        raise NotVisible("No such request.", field="request_id")
    if row.member_id is not None:
        member = selectors.user_by_id_or_username(user=row.member_id)
    back = LogFilters(request.GET, projects=[], keys=[], models=[]).query().urlencode()
    context = {
        "row": row,
        "project": project,
        "key": key,
        "member": member,
        "request_body": _body(row.request_body),
        "response_body": _body(row.response_body),
        "verdicts": _verdicts(row.guardrails),
        "attempts": [a for a in row.attempts if isinstance(a, dict)] if isinstance(row.attempts, list) else [],
        "back": reverse("portal:logs") + (f"?{back}" if back else ""),
    }
    return render_page(request, "portal/log_detail.html", context)
