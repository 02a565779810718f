"""Every main portal page under 300 ms of server time with realistic data: 10,000 request-log rows
and 12 months of ledger debits in one business unit, timed through the Django test client (the
whole stack: middleware, views, queries, templates). Prints a table; run with -s to see it:

    pytest -s tests/portal/test_page_timings.py

A page that is still a placeholder (404 for an administrator and for its own persona) is listed as
not built and, when every built page passed, the test is reported as skipped naming them, so it
can be run again once they exist."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing import services as billing_services
from gateway import services

pytestmark = pytest.mark.django_db

BUDGET_MS = 300
ROWS = 10_000
DAYS = 365
RUNS = 5  # timed runs per page, after one warm-up; the median counts
WORDS = [
    *("invoice", "order", "refund", "customer", "shipping", "address", "summary", "translate", "python"),
    *("error", "stack", "trace", "contract", "clause", "policy", "quarterly", "revenue", "forecast"),
    *("recipe", "poem", "email", "draft", "meeting", "notes"),
]
# My list pages' query budgets (the page tests assert them with small data; here at 10k rows).
QUERY_BUDGETS = {
    "logs": 12,
    "logs, filtered": 12,
    "logs, text": 12,
    "logs, older page": 12,
    "units": 8,
    "unit report": 11,
}


def build_dataset(world: Any) -> dict[str, Any]:
    """10,000 calls over the last year (about 90 % project A's, through two keys and two models,
    3 % failures) with bodies, and their ledger debits."""
    rng = random.Random(11)
    key_b = services.create_virtual_key(project=world.project_b, name="search-batch", created_by=world.dev_b).key
    keys = [(world.project_a, world.key_a), (world.project_b, key_b)]
    models = [world.model.name, world.other_model.name]
    now = datetime.now(UTC)
    entries = []
    for i in range(ROWS):
        project, key = keys[0] if rng.random() < 0.9 else keys[1]
        failed = rng.random() < 0.03
        model = rng.choice(models)
        prompt = " ".join(rng.choices(WORDS, k=12)) + (" zanzibar" if i % 2000 == 0 else "")
        entries.append(
            {
                "request_id": f"req-{uuid.uuid4().hex[:24]}",
                "created_at": now - timedelta(seconds=rng.uniform(30, DAYS * 86400)),
                "endpoint": "chat",
                "key_id": key.id,
                "key_prefix": key.prefix,
                "project_id": project.id,
                "member_id": world.dev_a.id,
                "model": model,
                "answered_model": model,
                "provider": "portal-upstream",
                "status_code": rng.choice([502, 429, 400]) if failed else 200,
                "error_code": "upstream_error" if failed else "",
                "input_tokens": 0 if failed else rng.randint(50, 4000),
                "output_tokens": 0 if failed else rng.randint(10, 800),
                "cost": None if failed else Decimal(rng.randint(1, 40_000)) / Decimal(1_000_000),
                "latency_ms": rng.uniform(150, 4000),
                "ttft_ms": rng.uniform(80, 900),
                "user_agent": "OpenAI/Python 1.55",
                "bodies": (
                    "full",
                    {"model": model, "messages": [{"role": "user", "content": prompt}]},
                    None if failed else {"choices": [{"message": {"role": "assistant", "content": prompt[::-1]}}]},
                ),
            }
        )
    for start in range(0, ROWS, 1000):
        services.record_request_logs(entries=entries[start : start + 1000])
    billing_services.record_usage(
        entries=[e | {"business_unit_id": world.unit.id} for e in entries if e["status_code"] < 400]
    )
    with connection.cursor() as cursor:  # statistics, as autovacuum keeps them in a running database
        cursor.execute("ANALYZE")
    newest = max(entries, key=lambda e: e["created_at"])
    return {"request_id": newest["request_id"], "key_b": key_b}


def timed(client: Any, url: str, query: dict[str, str]) -> tuple[int, float, int]:
    """(status, median server time in ms, queries of one run)."""
    response = client.get(url, query)  # warm-up: templates compiled, caches filled
    if response.status_code != 200:
        return response.status_code, 0.0, 0
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        client.get(url, query)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get(url, query)
    return 200, statistics.median(times), len(queries)


def test_every_page_answers_within_300_ms_with_10k_log_rows_and_a_year_of_ledger(world, login_as):
    data = build_dataset(world)
    a, unit = world.project_a.id, world.unit.id
    pages: list[tuple[str, Any, str, dict[str, str]]] = [
        ("dashboard", world.dev_a, reverse("portal:dashboard"), {}),
        ("project", world.dev_a, reverse("portal:project", args=[a]), {}),
        ("project usage", world.dev_a, reverse("portal:project-usage", args=[a]), {}),
        ("project members", world.dev_a, reverse("portal:project-members", args=[a]), {}),
        ("project ledger", world.dev_a, reverse("portal:project-ledger", args=[a]), {}),
        ("keys", world.dev_a, reverse("portal:project-keys", args=[a]), {}),
        ("logs", world.dev_a, reverse("portal:logs"), {}),
        ("logs, filtered", world.dev_a, reverse("portal:logs"), {"status": "error", "model": world.model.name}),
        ("logs, by key", world.dev_a, reverse("portal:logs"), {"key": str(world.key_a.id), "status": "ok"}),
        ("logs, text", world.dev_a, reverse("portal:logs"), {"q": "zanzibar"}),
        ("logs, common word", world.dev_a, reverse("portal:logs"), {"q": "invoice"}),
        ("logs, older page", world.dev_a, reverse("portal:logs"), {}),  # a cursor: below
        ("logs, manager", world.manager, reverse("portal:logs"), {}),
        ("log detail", world.dev_a, reverse("portal:log-detail", args=[data["request_id"]]), {}),
        ("models", world.dev_a, reverse("portal:models"), {}),
        ("requests", world.manager, reverse("portal:requests"), {}),
        ("units", world.manager, reverse("portal:units"), {}),
        ("unit report", world.manager, reverse("portal:unit-report", args=[unit]), {}),
        ("unit report CSV", world.manager, reverse("portal:unit-report-csv", args=[unit]), {}),
    ]
    # The older page's cursor comes from the first page.
    first = login_as(world.dev_a).get(reverse("portal:logs"))
    cursor = first.content.decode().split("cursor=", 1)[1].split('"', 1)[0]
    pages = [(n, u, url, {"cursor": cursor} if n == "logs, older page" else q) for n, u, url, q in pages]

    results, not_built, slow, failing, chatty = [], [], [], [], []
    for name, user, url, query in pages:
        client = login_as(user)
        status, ms, queries = timed(client, url, query)
        results.append((name, status, ms, queries))
        if status == 404:
            not_built.append(name)
        elif status != 200:
            failing.append(f"{name}: {status}")
        elif ms > BUDGET_MS:
            slow.append(f"{name}: {ms:.0f} ms")
        if status == 200 and name in QUERY_BUDGETS and queries > QUERY_BUDGETS[name]:
            chatty.append(f"{name}: {queries} queries (at most {QUERY_BUDGETS[name]})")

    print(f"\n{'page':<22}{'status':>8}{'median ms':>12}{'queries':>9}   ({connection.vendor}, {ROWS:,} log rows)")
    for name, status, ms, queries in results:
        print(f"{name:<22}{status:>8}{ms:>12.1f}{queries:>9}")
    assert not failing, failing
    assert not slow, f"over {BUDGET_MS} ms: {slow}"
    assert not chatty, chatty
    if not_built:
        pytest.skip(f"all built pages under {BUDGET_MS} ms; not built yet (404), run again later: {not_built}")
