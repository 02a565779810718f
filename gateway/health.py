"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import threading

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gateway import dbstate


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving. Checks nothing else, so it never flaps with a dependency."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    """Not ready while the proxy knows the database is away (it serves from cache meanwhile, but a
    load balancer should prefer a healthy instance); else a ping that waits at most
    DATABASE_HOT_PATH_TIMEOUT for a connection."""
    if problem := dbstate.problem():
        return f"database {problem}"
    if (failed := dbstate.ping(timeout=settings.DATABASE_HOT_PATH_TIMEOUT)) is not None:
        return f"database unreachable ({failed})"
    return None


_migrations_applied = False  # once true, stays true for the life of the process
_migrations_lock = threading.Lock()


def _check_migrations() -> str | None:
    """Not ready while a migration of the code this process runs is not applied to the database: the
    tables it reads may not exist yet. Reading the migration graph costs tens of milliseconds, so
    once everything is applied the answer is kept (migrations are not unapplied under a running
    release)."""
    global _migrations_applied
    if _migrations_applied:
        return None
    with _migrations_lock:
        if _migrations_applied:
            return None
        try:
            executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            return f"migrations cannot be read ({type(exc).__name__})"
        if pending:
            first = pending[0][0]
            return (
                f"{len(pending)} migration(s) not applied, first {first.app_label}.{first.name}: "
                "run `manage.py migrate`"
            )
        _migrations_applied = True
        return None


def reset() -> None:
    """Forget that the migrations were found applied (tests)."""
    global _migrations_applied
    _migrations_applied = False


def _check_redis() -> str | None:
    if not settings.REDIS_URL:
        return None
    import redis

    try:
        with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        return f"redis unreachable ({type(exc).__name__})"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to take traffic: the database answers with every migration applied, and (when
    configured) Redis answers. 503 names what failed."""
    database = _check_database()
    checks = {
        "database": database,
        "migrations": _check_migrations() if database is None else "not checked (database unavailable)",
        "redis": _check_redis() if settings.REDIS_URL else None,
    }
    failing = {name: problem for name, problem in checks.items() if problem}
    body = {
        "status": "unavailable" if failing else "ok",
        "checks": {
            "database": checks["database"] or "ok",
            "migrations": checks["migrations"] or "ok",
            "redis": (checks["redis"] or "ok") if settings.REDIS_URL else "not configured",
        },
    }
    return JsonResponse(body, status=503 if failing else 200)
