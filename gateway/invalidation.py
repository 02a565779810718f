"""Tell every process that keys, models, providers or projects changed.

Each process keeps an in-process snapshot (gateway/proxy/catalog.py). A change is published on a
Redis channel, so every web process drops its snapshot within milliseconds; without Redis (the
embedded profile is a single process) the local listeners are called directly. The snapshot's
short TTL bounds staleness even if a message is lost. The channel's name starts with the
installation's Redis namespace (gateway/installation.py), so installations sharing a Redis server
do not drop each other's snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction

CHANNEL = "symbiosis:catalog-invalidate"  # after the installation's namespace: channel()
logger = logging.getLogger(__name__)
_local_listeners: list[Callable[[], None]] = []


def channel(namespace: str) -> str:
    """The invalidation channel of the installation whose Redis key prefix is `namespace`."""
    return namespace + CHANNEL


def add_local_listener(listener: Callable[[], None]) -> None:
    if listener not in _local_listeners:
        _local_listeners.append(listener)


def notify_local() -> None:
    for listener in list(_local_listeners):
        listener()


def _publish() -> None:
    notify_local()
    if settings.REDIS_URL:
        import redis

        from gateway import installation

        try:
            with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2) as client:
                client.publish(channel(installation.redis_prefix()), b"all")
        except redis.RedisError:
            # The other processes' TTL (CATALOG_CACHE_TTL) still bounds how long they serve stale data.
            logger.warning("could not publish a catalog invalidation; other processes refresh within the cache TTL")


def publish_catalog_change() -> None:
    """Call from a service that changed keys, models, providers or projects (after commit)."""
    transaction.on_commit(_publish)
