"""Per-deployment circuit breakers and health, per process.

A deployment that fails CIRCUIT_FAILURE_THRESHOLD times in a row is taken out ("open") for
CIRCUIT_COOLDOWN seconds; then one request probes it ("half-open"): success closes the circuit,
failure opens it again. "degraded" means it is serving but has failed recently.

State changes (and a latency sample at most every few seconds) are written to Django's cache
(Redis in production) so the admin and the management API can show every deployment's health;
the write happens off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from gateway.health_state import HEALTH_KEY, HEALTH_TTL

logger = logging.getLogger(__name__)
_SAMPLE_EVERY = 5.0


@dataclass
class Breaker:
    deployment_id: int
    consecutive_failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    last_error: str = ""
    last_error_at: float | None = None
    last_latency_ms: float | None = None
    published_at: float = 0.0
    published_state: str = ""
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def state(self) -> str:
        if self.opened_at is not None:
            return "open"
        if self.consecutive_failures or (
            self.last_error_at is not None and time.monotonic() - self.last_error_at < settings.CIRCUIT_COOLDOWN
        ):
            return "degraded"
        return "healthy"

    def available(self) -> bool:
        """Closed, or open with its cooldown over and no probe under way. Reads only."""
        if self.opened_at is None:
            return True
        return not self.probing and time.monotonic() - self.opened_at >= settings.CIRCUIT_COOLDOWN

    def claim(self) -> None:
        """Mark the request about to go to an open circuit as its one half-open probe."""
        if self.opened_at is not None:
            self.probing = True

    def abandoned(self) -> None:
        """A probe that ended with neither answer nor failure (the client left): let another probe."""
        self.probing = False

    def succeeded(self, latency_ms: float) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.probing = False
        self.last_latency_ms = latency_ms
        self._publish()

    def failed(self, error: str, latency_ms: float) -> None:
        self.consecutive_failures += 1
        self.last_error = error[:300]
        self.last_error_at = time.monotonic()
        self.last_latency_ms = latency_ms
        if self.probing or self.consecutive_failures >= settings.CIRCUIT_FAILURE_THRESHOLD:
            if self.opened_at is None or self.probing:
                logger.warning("circuit opened for deployment %s: %s", self.deployment_id, self.last_error)
            self.opened_at = time.monotonic()
        self.probing = False
        self._publish()

    def _publish(self) -> None:
        state = self.state
        now = time.monotonic()
        if state == self.published_state and now - self.published_at < _SAMPLE_EVERY:
            return
        self.published_state, self.published_at = state, now
        record = {
            "state": state,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_error_at": time.time() - (now - self.last_error_at) if self.last_error_at else None,
            "latency_ms": round(self.last_latency_ms, 1) if self.last_latency_ms is not None else None,
            "updated_at": time.time(),
            "process": os.getpid(),
        }
        task = asyncio.get_running_loop().create_task(_store(self.deployment_id, record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _store(deployment_id: int, record: dict) -> None:
    try:
        await cache.aset(HEALTH_KEY.format(deployment_id=deployment_id), record, HEALTH_TTL)
    except Exception as exc:  # health reporting must never hurt traffic
        logger.warning("could not publish deployment health (%s)", type(exc).__name__)


_breakers: dict[int, Breaker] = {}


def breaker(deployment_id: int) -> Breaker:
    found = _breakers.get(deployment_id)
    if found is None:
        found = _breakers[deployment_id] = Breaker(deployment_id)
    return found


def reset() -> None:
    _breakers.clear()
