"""From an engine :class:`Outcome` to kopf: one status patch, Kubernetes Events, and the per-object lock."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import kopf
from pydantic import ValidationError

from amlops.api.kind import GROUP, CustomResource
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.managed import RECONCILE_REQUESTED_ANNOTATION, Managed
from amlops.reconcile.outcome import Outcome
from amlops.status import REASON_INVALID_SPEC, EventRecord, parse_time, set_conditions

FINALIZER = f"{GROUP}/finalizer"
# The message of the kopf.TemporaryError that only asks kopf to call the deletion handler again.
DELETING = "deleting"
SYNC_TIME = "lastSyncTime"
# status.lastSyncTime is exact whenever anything else in the status changes, and never older than this.
SYNC_TIME_REFRESH = timedelta(minutes=5)
# While Azure converges on its own (an interim outcome), the details it reports (provisioningState Creating, the
# condition messages) are written when a condition changes, or once the status written is this old: a converging
# object is at most this far behind Azure, and a create that takes Azure's usual half minute costs two status
# writes (Creating, Ready), not one more per pass that finds it still Creating.
INTERIM_REFRESH = timedelta(minutes=1)
# These always make a write: the user (or a tool waiting on kstatus) is told the generation or request is handled.
ALWAYS_WRITTEN = frozenset({"observedGeneration", "lastHandledReconcileAt"})
WRITTEN_AT = "status_written_at"  # per-object memo key: when this process last wrote the status


def object_lock(memo: kopf.Memo) -> asyncio.Lock:
    """The per-object lock: kopf serialises an object's change handlers, but the work queue's passes run beside
    them.

    It lives in the per-object memo; never in the operator memo, which kopf shallow-copies into every
    object's memo and would share one lock between all objects (kopf docs/memos.rst).
    """
    lock = memo.get("lock")
    if lock is None:
        lock = memo["lock"] = asyncio.Lock()
    assert isinstance(lock, asyncio.Lock)
    return lock


def managed_from(
    kind: type[CustomResource], body: kopf.Body, *, deleting: bool, memo: kopf.Memo | None = None
) -> Managed[Any]:
    """The engine's view of the object; the spec is parsed with the kind's typed model. The status is the one
    last written (``known_status``), which the body may not show yet."""
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
        status=dict(known_status(body, memo)),
        annotations=dict(meta.annotations),
        deleting=deleting,
        has_finalizer=FINALIZER in (meta.get("finalizers") or []),
    )


class StatusWriter(Protocol):
    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None: ...


async def write_outcome(
    outcome: Outcome, *, plural: str, body: kopf.Body, memo: kopf.Memo, writer: StatusWriter
) -> None:
    """Write the outcome to the status subresource, then post its Events.

    Nothing is written when nothing but ``lastSyncTime`` would change and that is fresher than
    ``SYNC_TIME_REFRESH``: a pass that learns nothing new costs no apiserver write, and no watch event that
    every other watcher of the kind would have to process. Nor, within ``INTERIM_REFRESH`` of the last write,
    when an interim outcome (Azure converging on its own) moves only details the next pass replaces.

    The write happens here, under the per-object lock, not through kopf's ``patch`` (which kopf sends after
    the handler returns): the next pass would otherwise start before it, and its write could reach the
    apiserver first and then be overwritten with the older status (seen at a thousand objects: Ready, then
    Creating again). Watch events trail the writes, so the next pass may still hold an older body; the
    per-object ``memo`` keeps what was written (``StatusHistory``) so the same transition is not written and
    announced twice.
    """
    history: StatusHistory | None = memo.get(STATUS_HISTORY)
    current: Mapping[str, Any] = body.get("status") or {}
    if history is not None and history.caught_up(current):
        history = memo[STATUS_HISTORY] = None  # a steady object keeps no history
    status = history.known(current) if history else current
    requested = body.metadata.annotations.get(RECONCILE_REQUESTED_ANNOTATION)
    written_at: datetime | None = memo.get(WRITTEN_AT)
    new, events = next_status(outcome, status, body.metadata.get("generation"), requested, written_at)
    if new is None:
        return
    meta = body.metadata
    stored = await writer.patch_status(plural, meta.namespace or "", meta.name or "", new)
    if stored is None:
        return  # the object is gone
    memo[WRITTEN_AT] = datetime.now(UTC)
    memo[STATUS_HISTORY] = (history or StatusHistory()).wrote(replaced=current, written=stored)
    for record in events:
        kopf.event(body, type=record.type, reason=record.reason, message=record.message)


def next_status(
    outcome: Outcome,
    status: Mapping[str, Any],
    generation: int | None,
    reconcile_requested: str | None,
    written_at: datetime | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any] | None, list[EventRecord]]:
    """The status fields to write after ``outcome`` (None: nothing worth a write) and the Events to post.
    ``written_at``: when this process last wrote the object's status (None: not since it started)."""
    if outcome.deferred:
        return None, []
    conditions, changes = set_conditions(status.get("conditions") or [], outcome.conditions, generation, now)
    events = [*changes, *outcome.events]
    new = {**outcome.status, "conditions": conditions, "observedGeneration": generation}
    if reconcile_requested and status.get("lastHandledReconcileAt") != reconcile_requested:
        new["lastHandledReconcileAt"] = reconcile_requested
    if not events and not worth_writing(status, new, interim=outcome.interim, written_at=written_at, now=now):
        return None, []
    return new, events


STATUS_HISTORY = "status_history"  # per-object memo key


def known_status(body: kopf.Body, memo: kopf.Memo | None) -> Mapping[str, Any]:
    """The object's status as amlops last wrote it, when the body predates that write."""
    current: Mapping[str, Any] = body.get("status") or {}
    history: StatusHistory | None = memo.get(STATUS_HISTORY) if memo is not None else None
    return history.known(current) if history else current


@dataclass(frozen=True)
class StatusHistory:
    """The status amlops last wrote, and fingerprints of the statuses its writes replaced (the few most recent):
    a fingerprint, not the status, since only equality is asked of them (a thousand objects kept 12 MB of old
    statuses, bench/amlcompute_scale.py --trace-memory)."""

    written: Mapping[str, Any] | None = None
    superseded: tuple[bytes, ...] = ()
    KEEP: ClassVar[int] = 4

    def known(self, current: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object's status: ``current`` (a body's), unless that is one amlops has since replaced — the body
        predates a write — in which case the last one written. (A status carries its lastSyncTime, so an
        older one is never mistaken for a later write of the same.)"""
        if self.written is not None and fingerprint(current) in self.superseded:
            return self.written
        return current

    def caught_up(self, current: Mapping[str, Any]) -> bool:
        """The body shows the last write: watch events come in order, so no older status can follow, and the
        history can go."""
        return self.written is not None and current == self.written

    def wrote(self, *, replaced: Mapping[str, Any], written: Mapping[str, Any]) -> StatusHistory:
        older = (fingerprint(replaced), *(() if self.written is None else (fingerprint(self.written),)))
        # The body may already have caught up with the last write (replaced == written): keep each status once.
        distinct = tuple(dict.fromkeys((*older, *self.superseded)))
        return StatusHistory(written=written, superseded=distinct[: self.KEEP])


def fingerprint(status: Mapping[str, Any]) -> bytes:
    """A status's identity: its canonical JSON, hashed."""
    text = json.dumps(status, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def worth_writing(
    current: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    interim: bool,
    written_at: datetime | None,
    now: datetime | None = None,
) -> bool:
    """Whether ``new``, from a pass that changes no condition's status or reason (no Event), is worth a status
    write over ``current``:

    - it changes nothing but ``lastSyncTime``: once the one written is ``SYNC_TIME_REFRESH`` old;
    - it changes a field of ``ALWAYS_WRITTEN``, or the outcome is not interim: yes;
    - interim, only details change (what Azure reports while it converges, a condition's message): once the
      status is ``INTERIM_REFRESH`` old, by the later of its ``lastSyncTime`` and ``written_at`` (a create paced to
      the subscription's budget is written well after the read its lastSyncTime tells of).
    """
    at = now or datetime.now(UTC)
    # A None value removes a field: equal to an absent one.
    moved = {key for key, value in new.items() if key != SYNC_TIME and current.get(key) != value}
    synced = parse_time(current.get(SYNC_TIME))
    if not moved:
        return SYNC_TIME in new and (synced is None or at - synced >= SYNC_TIME_REFRESH)
    if not interim or moved & ALWAYS_WRITTEN:
        return True
    since = [t for t in (synced, written_at) if t is not None]
    return not since or at - max(since) >= INTERIM_REFRESH
