"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from django.conf import settings
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
    """Ready to take traffic: the database and (when configured) Redis answer. 503 names what failed."""
    checks = {"database": _check_database(), "redis": _check_redis() if settings.REDIS_URL else None}
    failing = {name: problem for name, problem in checks.items() if problem}
    body = {
        "status": "unavailable" if failing else "ok",
        "checks": {
            "database": checks["database"] or "ok",
            "redis": (checks["redis"] or "ok") if settings.REDIS_URL else "not configured",
        },
    }
    return JsonResponse(body, status=503 if failing else 200)
