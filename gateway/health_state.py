"""Where the proxy publishes each deployment's health, and how the admin side reads it.

Shared through Django's cache (Redis in production, in-process in the embedded profile), so
neither side imports the other.
"""

from __future__ import annotations

import time

from django.core.cache import cache

HEALTH_KEY = "deployment-health:{deployment_id}"
HEALTH_TTL = 24 * 3600


def deployment_health(*, deployment_ids: list[int]) -> dict[int, dict]:
    """The last published health of each deployment; deployments never used are "healthy", unmeasured."""
    keys = {HEALTH_KEY.format(deployment_id=i): i for i in deployment_ids}
    found = cache.get_many(list(keys))
    return {
        deployment_id: found.get(key)
        or {"state": "healthy", "last_error": "", "last_error_at": None, "latency_ms": None, "updated_at": None}
        for key, deployment_id in keys.items()
    }


def record_check(*, deployment_id: int, ok: bool, latency_ms: float, error: str) -> None:
    """Store an on-demand check's outcome. A failure marks the deployment degraded here; each proxy
    process still decides for itself whether to open its circuit, from the traffic it sees."""
    now = time.time()
    previous = deployment_health(deployment_ids=[deployment_id])[deployment_id]
    record = previous | {
        "state": "healthy" if ok else "degraded",
        "latency_ms": round(latency_ms, 1),
        "updated_at": now,
        "checked_at": now,
    }
    if not ok:
        record |= {"last_error": error, "last_error_at": now}
    cache.set(HEALTH_KEY.format(deployment_id=deployment_id), record, HEALTH_TTL)
