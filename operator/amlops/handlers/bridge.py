"""From an engine :class:`Outcome` to kopf: one status patch, Kubernetes Events, and the per-object lock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from amlops.api.kind import GROUP, CustomResource
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.managed import RECONCILE_REQUESTED_ANNOTATION, Managed
from amlops.reconcile.outcome import Outcome
from amlops.status import REASON_INVALID_SPEC, set_conditions

FINALIZER = f"{GROUP}/finalizer"
SYNC_TIME = "lastSyncTime"
SYNC_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# status.lastSyncTime is exact whenever anything else in the status changes, and never older than this.
SYNC_TIME_REFRESH = timedelta(minutes=5)


def object_lock(memo: kopf.Memo) -> asyncio.Lock:
    """The per-object lock: kopf serialises an object's change handlers but runs timers as separate tasks.

    It lives in the per-object memo; never in the operator memo, which kopf shallow-copies into every
    object's memo and would share one lock between all objects (kopf docs/memos.rst).
    """
    lock = memo.get("lock")
    if lock is None:
        lock = memo["lock"] = asyncio.Lock()
    assert isinstance(lock, asyncio.Lock)
    return lock


def managed_from(kind: type[CustomResource], body: kopf.Body, *, deleting: bool) -> Managed[Any]:
    """The engine's view of the object; the spec is parsed with the kind's typed model."""
    try:
        spec = kind.spec_model.model_validate(dict(body.spec))
    except ValidationError as e:
        # The CRD schema should have refused this; say so plainly instead of crashing the handler.
        raise TerminalError(REASON_INVALID_SPEC, str(e).replace("\n", "; ")) from e
    meta = body.metadata
    return Managed(
        kind=kind.kind(),
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=dict(body.get("status") or {}),
        annotations=dict(meta.annotations),
        deleting=deleting,
        has_finalizer=FINALIZER in (meta.get("finalizers") or []),
    )


def apply_outcome(
    outcome: Outcome,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    annotations: Mapping[str, str] | None = None,
) -> None:
    """Write the outcome through ``patch.status`` (never a handler's return value: the schema prunes it).

    Nothing is written when nothing but ``lastSyncTime`` would change and that is fresher than
    ``SYNC_TIME_REFRESH``: a pass that learns nothing new costs no apiserver write, and no watch event that
    every other watcher of the kind would have to process.
    """
    status: Mapping[str, Any] = body.get("status") or {}
    generation = body.metadata.get("generation")
    conditions, events = set_conditions(status.get("conditions") or [], outcome.conditions, generation)
    new = {**outcome.status, "conditions": conditions, "observedGeneration": generation}
    requested = body.metadata.annotations.get(RECONCILE_REQUESTED_ANNOTATION)
    if requested and status.get("lastHandledReconcileAt") != requested:
        new["lastHandledReconcileAt"] = requested
    if not events and _only_sync_time_moved(status, new):
        return
    for key, value in new.items():
        patch.status[key] = value
    for record in events:
        kopf.event(body, type=record.type, reason=record.reason, message=record.message)


def _only_sync_time_moved(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    if any(current.get(key) != value for key, value in new.items() if key != SYNC_TIME):
        return False  # a None value removes a field: equal to an absent one
    if SYNC_TIME not in new:
        return True
    try:
        synced = datetime.strptime(str(current.get(SYNC_TIME)), SYNC_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return False
    return datetime.now(UTC) - synced < SYNC_TIME_REFRESH
