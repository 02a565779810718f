"""The hash chain of audit events: appending under a lock, and verifying.

Each event's `hash` is SHA-256 over its previous event's hash and a canonical JSON of its own
content (every column but `id` and `hash`: sorted keys, no spaces, UTF-8). Appending takes a
transaction-scoped lock first (Postgres: an advisory lock; SQLite: its writers are serialized,
and the gateway opens its transactions IMMEDIATE), so two transactions never read the same
chain head: the chain cannot fork, and its order is the order of `id`. The lock is held until
the change's transaction ends, so audited changes commit one after the other."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from gateway.models import AuditEvent

GENESIS = "0" * 64
# pg_advisory_xact_lock's key: a fixed 63-bit number of our own ("symbiosis audit chain").
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"symbiosis audit chain").digest()[:8], "big") >> 1
CONTENT_FIELDS = (
    "created_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "object_label",
    "before",
    "after",
    "source",
    "request_id",
    "prev_hash",
)


def canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def content_of(event: AuditEvent) -> dict[str, Any]:
    content = {name: getattr(event, name) for name in CONTENT_FIELDS}
    content["created_at"] = event.created_at.isoformat(timespec="microseconds")
    return content


def hash_of(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(content_of(event))).hexdigest()


def append(event: AuditEvent) -> AuditEvent:
    """Link EVENT to the chain's head and insert it, in the caller's transaction. The head is read
    after the lock is granted, so under READ COMMITTED (Django's default, which the gateway keeps)
    it is the last event committed or this transaction's own."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event.prev_hash = head or GENESIS
        event.hash = hash_of(event)
        event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class Break:
    event_id: int
    reason: str


@dataclass(frozen=True)
class Verdict:
    checked: int
    first_id: int | None
    last_id: int | None
    broken: Break | None


def _walk(batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(AuditEvent.objects.filter(id__gt=last).order_by("id")[:batch])
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def verify() -> Verdict:
    """Walk the chain oldest first; stop at the first event whose content does not give its hash
    or whose `prev_hash` is not the hash of the event before it. The oldest event may follow
    events that were purged (README: retention); the first one kept anchors the walk."""
    checked, first_id, previous, last_id = 0, None, None, None
    for event in _walk():
        if first_id is None:
            first_id = event.id
        if previous is not None and event.prev_hash != previous:
            return Verdict(
                checked, first_id, last_id, Break(event.id, "its prev_hash is not the previous event's hash")
            )
        if hash_of(event) != event.hash:
            return Verdict(checked, first_id, last_id, Break(event.id, "its content does not match its hash"))
        previous, last_id = event.hash, event.id
        checked += 1
    return Verdict(checked, first_id, last_id, None)
