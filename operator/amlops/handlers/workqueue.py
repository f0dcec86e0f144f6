"""When each object is looked at again: one delaying work queue for the whole operator, in place of kopf's
per-object timer.

A ``kopf.timer`` is an asyncio task per object, and kopf keeps, for every object with a timer, the whole body
of its last watch event (managed fields, last-applied configuration and all) so the timer can be called with it:
≈ 26 KB per object of the ≈ 79 KB each added AmlCompute cost (``bench/amlcompute_scale.py --trace-memory``), with
the task's own frames and loggers on top. Here an object costs one entry: its due time, its per-object memo
(kopf's, shared with the change handlers) and its last body without what no pass reads, as compressed JSON (a
body of a few KB as Python objects is ten times that). One task pops the entries that are due and runs their
passes, at most ``concurrency`` at a time, as controller-runtime's rate-limited queue feeds its workers.

The change handlers make no pass themselves: they hand the object to the queue (``act``), which looks at it as
soon as a slot is free. A pass made inside a kopf handler holds kopf's worker for that object, and kopf runs at
most ``worker_limit`` workers: when thousands of objects are applied at once, the watch events of all the others
wait in kopf's backlog as whole bodies, and the operator's peak memory followed the size of the burst, not the
number of passes it can make at a time.

The rules of the timer it replaced:
- after a watch event that is not a change (a status written, a finalizer added), an object is looked at only
  once it has been quiet for ``idle`` seconds;
- an object being deleted leaves the queue (the finalizer's handler drives it), as kopf stops a timer then;
- nothing runs while kopf has paused this operator in favour of a peer (``pause``/``resume``), and the queue
  forgets every object then: kopf lists them all again when it resumes, with bodies as they are by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from amlops.compact import pack, unpack

logger = logging.getLogger(__name__)

# Run one pass of an object: its kind's name, its body, its per-object memo → seconds until the next look.
Pass = Callable[[str, kopf.Body, kopf.Memo], Awaitable[float]]
# Metadata that no pass reads and that can be large: kubectl's copy of the applied object, and the apiserver's
# record of which manager wrote which field.
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
)
# After a pass that raised (a bug, or something no pass turned into an Outcome): look again after these.
ERROR_DELAYS = (1.0, 5.0, 15.0, 60.0)


def slim(body: kopf.Body | dict[str, Any]) -> bytes:
    """What a pass needs of a body, as compressed JSON."""
    meta = body.get("metadata") or {}
    kept = {key: meta[key] for key in KEPT_METADATA if key in meta}
    if "annotations" in kept:
        kept["annotations"] = {k: v for k, v in kept["annotations"].items() if k not in DROPPED_ANNOTATIONS}
    doc = {key: body[key] for key in ("apiVersion", "kind", "spec", "status") if key in body}
    doc["metadata"] = kept
    return pack(doc)


def unslim(data: bytes) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, unpack(data)))


@dataclass(slots=True)
class _Entry:
    kind: str
    body: bytes
    memo: kopf.Memo
    due: float
    running: bool = False
    # A change handler asked for a pass (``act``) that has not started yet: no event postpones it, and a pass
    # already running when it was asked is followed by another at once (it read the body before the change).
    urgent: bool = False
    failures: int = 0


@dataclass
class WorkQueue:
    """Objects by uid, each due at a time of the event loop's clock."""

    run: Pass
    idle: float
    concurrency: int
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _paused: bool = False
    # The context kopf runs handlers in: ``kopf.event`` (a pass's Events) reads the operator's Event queue from
    # context variables kopf sets only inside its own per-object tasks, never in a task the operator starts.
    _context: contextvars.Context | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, kind: str, body: kopf.Body, memo: kopf.Memo, *, gone: bool = False) -> None:
        """A watch event of the object: keep its body; look at it no sooner than ``idle`` from now. Called from
        a kopf handler (``kinds.on_event``), whose context the passes then run in."""
        entry = self._keep(kind, body, memo, gone=gone)
        if entry is not None and not entry.urgent:
            self._schedule(body.metadata.uid or "", entry, max(entry.due, self._now() + self.idle))

    def act(self, kind: str, body: kopf.Body, memo: kopf.Memo) -> None:
        """A change handler's object (created, changed, resumed): look at it with this body as soon as a slot is
        free, and once more right after a pass that is running now."""
        entry = self._keep(kind, body, memo)
        if entry is not None:  # not deleting, not paused
            entry.urgent = True
            self._schedule(body.metadata.uid or "", entry, self._now())

    def _keep(self, kind: str, body: kopf.Body, memo: kopf.Memo, *, gone: bool = False) -> _Entry | None:
        """The object's entry with this body (a new one is due ``idle`` from now); None once it is going."""
        if self._context is None:
            self._context = contextvars.copy_context()
        uid = body.metadata.uid or ""
        if gone or body.metadata.get("deletionTimestamp") or self._paused:
            self._entries.pop(uid, None)
            return None
        entry = self._entries.get(uid)
        if entry is None:
            self._entries[uid] = entry = _Entry(kind, slim(body), memo, self._now() + self.idle)
        else:
            entry.body, entry.memo = slim(body), memo
        return entry

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)

    def pause(self) -> None:
        self._paused = True
        self._entries.clear()
        self._heap.clear()

    def resume(self) -> None:
        self._paused = False

    def due_in(self, uid: str) -> float | None:
        """Seconds until the object's next look (None: not queued)."""
        entry = self._entries.get(uid)
        return None if entry is None else entry.due - self._now()

    async def serve(self) -> None:
        """Run due passes until cancelled."""
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                uid = await self._next_due()
                entry = self._entries[uid]
                entry.running = True
                await slots.acquire()
                context = self._context.copy() if self._context is not None else None
                task = asyncio.create_task(self._look(uid, entry, slots), name=f"amlops pass {uid}", context=context)
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _look(self, uid: str, entry: _Entry, slots: asyncio.Semaphore) -> None:
        entry.urgent = False  # this pass reads the latest body: a change asked for from now on needs another
        try:
            body = unslim(entry.body)
            after = await self.run(entry.kind, body, entry.memo)
            entry.failures = 0
            logger.debug(
                "Pass of %s %s/%s done; next in %.1f s", entry.kind, body.metadata.namespace, body.metadata.name, after
            )
        except Exception:
            after = ERROR_DELAYS[min(entry.failures, len(ERROR_DELAYS) - 1)]
            entry.failures += 1
            logger.exception("A pass of %s %s failed; looking again in %.0f s", entry.kind, uid, after)
        finally:
            entry.running = False
            slots.release()
        if self._entries.get(uid) is entry:  # not forgotten (deleted, paused) meanwhile
            self._schedule(uid, entry, self._now() + (0.0 if entry.urgent else after))

    async def _next_due(self) -> str:
        while True:
            while self._heap:
                due, uid = self._heap[0]
                entry = self._entries.get(uid)
                if entry is None or entry.due != due or entry.running:
                    heapq.heappop(self._heap)  # superseded: the entry was rescheduled, forgotten or is running
                    continue
                wait = due - self._now()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    return uid
                break
            self._wake.clear()
            timeout = self._heap[0][0] - self._now() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _schedule(self, uid: str, entry: _Entry, due: float) -> None:
        entry.due = due
        if not entry.running:
            heapq.heappush(self._heap, (due, uid))
            if self._heap[0][1] == uid:
                self._wake.set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
