"""This installation's id, and the namespace it gives every key the gateway writes into Redis.

Counters in Redis are keyed by database ids (project 7, key 42). Two installations sharing one
Redis server, or a database restored from a backup while Redis kept the newer counters, would
otherwise read each other's rate-limit windows and budget holds. So every key starts with
`i:<16 hex digits of the installation id>:` (rate limits, budget counters and leases, Django's
cache when it is Redis, the catalog invalidation channel); `redis-cli --scan --pattern 'i:<id>:*'`
lists one installation's keys. Celery's broker keys are not namespaced (use a Redis database of
its own per installation for the broker).

The id is one row (`Installation`), made with a random UUID by migration 0016. A process reads it
once, on first use, and keeps it: the hot path pays one `sync_to_async` hop the first time and
nothing after (`cached_prefix()` is a global read). After restoring a backup (or copying a
database to a second installation that shares a Redis server), run `manage.py
reset_installation_id` before starting the gateway (or restart it after): the new id starts every
counter afresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import close_old_connections, transaction

_prefix: str | None = None
_listeners: list[Callable[[], None]] = []


def prefix_for(installation_id: uuid.UUID) -> str:
    """The Redis key prefix of an installation: `i:` and 16 hex digits (64 bits) of its id."""
    return f"i:{installation_id.hex[:16]}:"


def installation_id() -> uuid.UUID:
    """The installation id from the database (made if the row is missing; sync)."""
    from gateway.models import Installation

    row, _ = Installation.objects.get_or_create(id=1, defaults={"installation_id": uuid.uuid4()})
    return row.installation_id


def redis_prefix() -> str:
    """This process's Redis key prefix; reads the database the first time only (sync)."""
    global _prefix
    if _prefix is None:
        _prefix = prefix_for(installation_id())
    return _prefix


def _load_in_thread() -> str:
    try:
        return redis_prefix()
    finally:
        close_old_connections()  # a worker thread's connection goes back (CONN_MAX_AGE = 0 under ASGI)


_load = sync_to_async(_load_in_thread, thread_sensitive=False)


class InstallationUnknown(Exception):
    """The installation id could not be read (the database does not answer): callers fail closed."""


async def aredis_prefix() -> str:
    """`redis_prefix()` for async code: one thread hop the first time, then none."""
    if _prefix is not None:
        return _prefix
    try:
        return await _load()
    except Exception as exc:
        raise InstallationUnknown(f"cannot read the installation id ({type(exc).__name__})") from exc


def cached_prefix() -> str | None:
    """The prefix if this process has read it already, else None (never touches the database)."""
    return _prefix


def pin(prefix: str) -> None:
    """Use `prefix` without reading the database: for processes that run the Redis scripts with no
    database at all (the test suite's child processes). The gateway itself never calls it."""
    global _prefix
    _prefix = prefix
    for listener in list(_listeners):
        listener()


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` when this process forgets its prefix (modules that cache keys built with it)."""
    if listener not in _listeners:
        _listeners.append(listener)


def forget() -> None:
    """Read the id again on next use (tests; `reset_installation_id`)."""
    global _prefix
    _prefix = None
    for listener in list(_listeners):
        listener()


@transaction.atomic(durable=True)
def reset_installation_id() -> uuid.UUID:
    """Give this installation a new random id: every Redis counter starts afresh under it."""
    from gateway.models import Installation

    new_id = uuid.uuid4()
    updated = Installation.objects.filter(id=1).update(installation_id=new_id)
    if not updated:
        Installation.objects.create(id=1, installation_id=new_id)
    transaction.on_commit(forget)
    return new_id


def cache_key(key: str, key_prefix: str, version: int) -> str:
    """Django cache KEY_FUNCTION (Redis profile): the installation's namespace before Django's key."""
    return f"{redis_prefix()}{key_prefix}:{version}:{key}"
