"""Writing audit events: `record()` in the transaction of the change it describes, and
`snapshot()` of a row as the event's before/after."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import models
from django.utils import timezone

from gateway.audit import chain, masking
from gateway.audit.context import current
from gateway.models import AuditEvent

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def object_type_of(instance: models.Model) -> str:
    """`VirtualKey` -> "virtual_key"; the core's `Model` (a public model name) -> "model"."""
    return _CAMEL.sub("_", type(instance).__name__).lower()


def snapshot(
    instance: models.Model | None,
    *,
    exclude: Iterable[str] = (),
    many: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The row's own columns (foreign keys as `<name>_id`; `auto_now` stamps left out), the names
    of its MANY related rows (e.g. "allowed_models"), and EXTRA, all masked (gateway/audit/masking.py)."""
    if instance is None:
        return None
    skip = set(exclude)
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.name in skip or getattr(field, "auto_now", False):
            continue
        value = getattr(instance, field.attname)
        data[field.attname] = masking.clean(value, name=field.name)
    if instance.pk is not None:
        for name in many:
            data[name] = sorted(str(related) for related in getattr(instance, name).all())
    for name, value in (extra or {}).items():
        data[name] = masking.clean(value, name=name)
    return data


def record(
    *,
    action: str,
    target: models.Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    object_label: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event for a change made in the caller's transaction: if that transaction rolls
    back, the event goes with it. The actor, source and request id come from the current context
    (gateway/audit/context.py)."""
    context = current()
    actor = context.resolved_actor()
    if target is not None:
        object_type = object_type or object_type_of(target)
        object_id = object_id if object_id != "" else target.pk
        object_label = object_label or str(target)
    event = AuditEvent(
        created_at=timezone.now(),
        actor_type=actor.type,
        actor_id=masking.text(str(actor.id), limit=64),
        actor_label=masking.text(actor.label, limit=200),
        action=action,
        object_type=object_type,
        object_id=masking.text("" if object_id is None else str(object_id), limit=64),
        object_label=masking.text(object_label, limit=200),
        before=masking.clean(dict(before)) if before is not None else None,
        after=masking.clean(dict(after)) if after is not None else None,
        source=context.source,
        request_id=masking.text(context.request_id, limit=64),
    )
    return chain.append(event)


def changed_fields(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> set[str]:
    before, after = before or {}, after or {}
    return {name for name in {*before, *after} if before.get(name) != after.get(name)}


def changes(event: AuditEvent) -> dict[str, dict[str, Any]]:
    """What changed: {field: {"before": ..., "after": ...}} for every field whose value differs
    (a creation lists every field of `after`, a deletion every field of `before`)."""
    before, after = event.before or {}, event.after or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return {}
    names = list(dict.fromkeys([*before, *after]))
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in names
        if before.get(name) != after.get(name)
    }


def stored_snapshot(instance: models.Model, **options: Any) -> dict[str, Any] | None:
    """The snapshot of INSTANCE's row as the database holds it (an admin form has already put its
    input on the instance it passes to a service), or None when it has no row yet."""
    if instance.pk is None:
        return None
    return snapshot(type(instance)._default_manager.filter(pk=instance.pk).first(), **options)


def record_deletion(
    *, action: str, target: models.Model, delete: Callable[[], Any], before: Mapping[str, Any] | None = None
) -> Any:
    """Delete TARGET (by calling DELETE) and record it. The snapshot is taken before, the event
    written after: the row locks the deletion takes come before the chain's lock, the order
    every audited change follows (a change, then its event), so two changes cannot deadlock."""
    before = before if before is not None else stored_snapshot(target)
    object_type, object_id, label = object_type_of(target), target.pk, str(target)
    result = delete()
    record(action=action, object_type=object_type, object_id=object_id, object_label=label, before=before)
    return result
