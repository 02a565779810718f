"""The audit log: one append-only, hash-chained event per administrative change (README: Audit log).

Services call `record(action=..., target=..., before=..., after=...)` inside the transaction of
the change; who made it, through which door and in which request come from the context
(`gateway.audit.context`), set by the request middleware, the management API's authentication,
the decision-link view, approval rules and management commands."""

from gateway.audit.context import Actor, ActorType, Source, acting, command_actor
from gateway.audit.events import (
    changed_fields,
    changes,
    object_type_of,
    record,
    record_deletion,
    snapshot,
    stored_snapshot,
)

__all__ = [
    "Actor",
    "ActorType",
    "Source",
    "acting",
    "changed_fields",
    "changes",
    "command_actor",
    "object_type_of",
    "record",
    "record_deletion",
    "snapshot",
    "stored_snapshot",
]
