"""In-process caches of keys and the model catalog: no database query on the hot path.

A miss calls one selector through one `sync_to_async` hop, and concurrent misses for the same
entry share that one call. Entries live CATALOG_CACHE_TTL seconds and are then refreshed in the
background while they keep serving (gateway/hotcache.py: no request waits for the database);
any change made through the services is broadcast (gateway/invalidation.py) and drops every
entry at once, in every process, so a revoked key stops working within milliseconds when Redis
is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from gateway import installation, scrub, selectors
from gateway.hotcache import DatabaseAway, HotCache
from gateway.invalidation import add_local_listener, channel
from gateway.proxy import auth_throttle
from gateway.proxy.errors import AuthenticationFailed, NotFound, PermissionDenied, ProxyError, ServiceUnavailable
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

logger = logging.getLogger(__name__)

_MAX_KEYS = 100_000
_NEGATIVE_TTL = 5.0  # seconds an unknown secret stays known-unknown (limits DB load from key spraying)


_keys: HotCache[KeySnapshot | None] = HotCache(_MAX_KEYS)
_models: HotCache[dict[str, ModelSnapshot]] = HotCache(1)
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
        if not isinstance(exc, DatabaseAway):  # that one is logged once, by gateway/dbstate.py
            logger.exception("loading the model catalog failed")
        raise ServiceUnavailable("The gateway cannot read its model catalog right now; try again shortly.") from exc


async def authenticate(secret: str | None) -> KeySnapshot:
    """The key `secret` names, or the 401 that says why not (a 429 once its address failed too often,
    gateway/proxy/auth_throttle.py: only failures cost anything there)."""
    auth_throttle.check()
    if not secret:
        raise await auth_throttle.failed(
            AuthenticationFailed(
                "You didn't provide an API key. "
                "Send it as 'Authorization: Bearer sk-sym-...', 'api-key' or 'x-api-key'."
            )
        )
    _listener.ensure_started()
    try:
        key = await _keys.get(
            secret,
            lambda: _load_key(secret=secret),
            lambda value: settings.CATALOG_CACHE_TTL if value is not None else _NEGATIVE_TTL,
        )
    except Exception as exc:
        if not isinstance(exc, DatabaseAway):
            logger.exception("loading a virtual key failed")
        raise ServiceUnavailable("The gateway cannot check API keys right now; try again shortly.") from exc
    if key is None:
        raise await auth_throttle.failed(
            AuthenticationFailed("Incorrect API key provided. Check the key, or ask your project owner for one.")
        )
    if key.revoked:
        raise await auth_throttle.failed(AuthenticationFailed(f"The API key {key.prefix}… has been revoked."))
    now = datetime.now(UTC)
    if not key.is_active(now):
        raise await auth_throttle.failed(
            AuthenticationFailed(f"The API key {key.prefix}… expired at {key.expires_at:%Y-%m-%d %H:%M:%S} UTC.")
        )
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
                namespace = await installation.aredis_prefix()
                client = redis.Redis.from_url(settings.REDIS_URL)
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel(namespace))
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
