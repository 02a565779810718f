"""In-process caches of keys and the model catalog: no database query on the hot path.

A miss calls one selector through one `sync_to_async` hop, and concurrent misses for the same
entry share that one call. Entries live CATALOG_CACHE_TTL seconds; any change made through the
services is broadcast (gateway/invalidation.py) and drops every entry at once, in every process,
so a revoked key stops working within milliseconds when Redis is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from gateway import scrub, selectors
from gateway.invalidation import CHANNEL, add_local_listener
from gateway.proxy.errors import AuthenticationFailed, NotFound, PermissionDenied, ProxyError, ServiceUnavailable
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

logger = logging.getLogger(__name__)

_MAX_KEYS = 100_000
_NEGATIVE_TTL = 5.0  # seconds an unknown secret stays known-unknown (limits DB load from key spraying)


class _TTLCache:
    """A small LRU with per-entry expiry and single-flight loading."""

    def __init__(self, max_size: int) -> None:
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._inflight: dict[Any, asyncio.Future[Any]] = {}
        self._max_size = max_size
        self._generation = 0
        self._warned_at = -math.inf
        self._expired_at: dict[Any, float] = {}  # when entries now served stale first expired

    def clear(self) -> None:
        self._entries.clear()
        self._expired_at.clear()
        self._generation += 1

    async def get(self, key: Any, load: Callable[[], Awaitable[Any]], ttl: Callable[[Any], float]) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        if (pending := self._inflight.get(key)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        generation = self._generation
        try:
            value = await load()
        except Exception as exc:
            stale = self._stale(key, entry)
            if stale is None:
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it themselves
                raise
            future.set_result(stale)
            return stale
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(value)
            self._expired_at.pop(key, None)
            if generation == self._generation:  # not invalidated while loading
                self._entries[key] = (time.monotonic() + ttl(value), value)
                self._entries.move_to_end(key)
                if len(self._entries) > self._max_size:
                    self._entries.popitem(last=False)
            return value
        finally:
            del self._inflight[key]

    def _stale(self, key: Any, entry: tuple[float, Any] | None) -> Any:
        """When a reload fails (the database is away), an entry that merely expired keeps serving,
        retried every few seconds, for up to CATALOG_STALE_GRACE seconds past its expiry. An entry
        dropped by an invalidation (a revoked key) is gone and is never served stale."""
        if entry is None or self._entries.get(key) is not entry:
            return None
        now = time.monotonic()
        expired_for = now - self._expired_at.setdefault(key, entry[0])
        if expired_for > settings.CATALOG_STALE_GRACE:
            return None
        if now - self._warned_at >= 10:
            self._warned_at = now
            logger.warning("serving cached keys/models that cannot be re-read (%.0f s past expiry)", expired_for)
        self._entries[key] = (now + _STALE_RETRY, entry[1])
        return entry[1]


_STALE_RETRY = 5.0  # seconds between reload attempts while serving stale
_keys = _TTLCache(_MAX_KEYS)
_models = _TTLCache(1)
_load_key = sync_to_async(selectors.key_snapshot, thread_sensitive=False)


def _catalog_and_provider_keys() -> dict[str, ModelSnapshot]:
    """The model catalog; and, read with it, the provider keys answers are scrubbed of."""
    try:
        scrub.set_provider_keys(selectors.provider_api_keys())
    finally:
        close_old_connections()
    return selectors.model_catalog()


_load_catalog = sync_to_async(_catalog_and_provider_keys, thread_sensitive=False)


def invalidate() -> None:
    _keys.clear()
    _models.clear()


add_local_listener(invalidate)


async def _catalog() -> dict[str, ModelSnapshot]:
    _listener.ensure_started()
    try:
        return await _models.get("all", _load_catalog, lambda _: settings.CATALOG_CACHE_TTL)
    except Exception as exc:
        logger.exception("loading the model catalog failed")
        raise ServiceUnavailable("The gateway cannot read its model catalog right now; try again shortly.") from exc


async def authenticate(secret: str | None) -> KeySnapshot:
    if not secret:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-sym-...', 'api-key' or 'x-api-key'."
        )
    _listener.ensure_started()
    try:
        key = await _keys.get(
            secret,
            lambda: _load_key(secret=secret),
            lambda value: settings.CATALOG_CACHE_TTL if value is not None else _NEGATIVE_TTL,
        )
    except Exception as exc:
        logger.exception("loading a virtual key failed")
        raise ServiceUnavailable("The gateway cannot check API keys right now; try again shortly.") from exc
    if key is None:
        raise AuthenticationFailed("Incorrect API key provided. Check the key, or ask your project owner for one.")
    if key.revoked:
        raise AuthenticationFailed(f"The API key {key.prefix}… has been revoked.")
    now = datetime.now(UTC)
    if not key.is_active(now):
        raise AuthenticationFailed(f"The API key {key.prefix}… expired at {key.expires_at:%Y-%m-%d %H:%M:%S} UTC.")
    return key


def usable(deployment: DeploymentSnapshot) -> bool:
    """May this deployment serve traffic at all (approved, weighted, demo allowed)?"""
    if deployment.provider_kind == "demo" and not settings.DEMO_PROVIDER_ENABLED:
        return False
    return deployment.provider_approved and deployment.weight > 0


async def visible_models(key: KeySnapshot) -> list[ModelSnapshot]:
    catalog = await _catalog()
    return [
        model
        for name, model in catalog.items()
        if name in key.allowed_models and model.enabled and any(usable(d) for d in model.deployments)
    ]


async def resolve(key: KeySnapshot, model_name: str) -> ModelSnapshot:
    """The model a key asked for, or the error that says why it may not use it."""
    catalog = await _catalog()
    model = catalog.get(model_name)
    if model is None or not model.enabled:
        raise NotFound(f"The model '{model_name}' does not exist or is not enabled.", param="model")
    if model_name not in key.allowed_models:
        raise PermissionDenied(
            f"The model '{model_name}' is not on this key's or project's allow-list.",
            param="model",
            code="model_not_allowed",
        )
    return model


async def model_named(name: str) -> ModelSnapshot | None:
    """An enabled model by its public name, whoever asks (the guardrails' classifier)."""
    model = (await _catalog()).get(name)
    return model if model is not None and model.enabled else None


def unavailable(model: ModelSnapshot) -> ProxyError:
    """Why no deployment of this model may serve traffic."""
    if any(d.provider_kind == "demo" for d in model.deployments) and not settings.DEMO_PROVIDER_ENABLED:
        return PermissionDenied(
            f"The model '{model.name}' is served by the demo provider, which is disabled here "
            "(set DEMO_PROVIDER_ENABLED=1 to enable it).",
            param="model",
            code="provider_not_approved",
        )
    if model.deployments and not any(d.provider_approved for d in model.deployments):
        return PermissionDenied(
            f"The model '{model.name}' is only served by providers that governance has not approved.",
            param="model",
            code="provider_not_approved",
        )
    return ServiceUnavailable(f"The model '{model.name}' has no deployment that can serve traffic right now.")


class _InvalidationListener:
    """Subscribes to the invalidation channel once per process (per event loop)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self._task is None and settings.REDIS_URL:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down
                await self._task
            self._task = None

    async def _run(self) -> None:
        import redis.asyncio as redis

        delay = 0.5
        while True:
            try:
                client = redis.Redis.from_url(settings.REDIS_URL)
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    invalidate()  # anything may have changed while we were not listening
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            invalidate()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("catalog invalidation listener lost Redis; entries expire within the cache TTL")
                invalidate()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


_listener = _InvalidationListener()


async def shutdown() -> None:
    await _listener.stop()
