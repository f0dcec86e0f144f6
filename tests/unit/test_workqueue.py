"""The operator's work queue (handlers/workqueue.py) and when a pass asks to be looked at again (kinds.next_look).

The queue runs on a real event loop; time is the loop's clock, so each test waits on what it asserts (an
``asyncio.Event`` a pass sets), never on a duration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import kopf
import pytest

from amlops.handlers import peering
from amlops.handlers.kinds import next_look
from amlops.handlers.workqueue import WorkQueue, slim, unslim
from amlops.reconcile.outcome import Outcome

pytestmark = pytest.mark.unit
STEADY = 60.0


@pytest.mark.parametrize(
    ("outcome", "ttl_left", "expected"),
    [
        # converging: look again when the pass says
        (Outcome(requeue_after=5, retry=True), None, 5),
        # converging beats a TTL further away, and the TTL a steady interval
        (Outcome(requeue_after=5, retry=True), 30, 5),
        (Outcome(), 30, 30),
        # steady: the steady interval, also for a TTL later than it
        (Outcome(), None, STEADY),
        (Outcome(), 600, STEADY),
        # a TTL already past (the deletion failed): at once
        (Outcome(), -3, 0),
        # Stalled: requeue_after without retry means the steady interval
        (Outcome(requeue_after=300), None, STEADY),
    ],
)
def test_next_look(outcome: Outcome, ttl_left: float | None, expected: float) -> None:
    assert next_look(outcome, ttl_left, STEADY) == expected


def _body(uid: str = "u1", **extra: Any) -> kopf.Body:
    raw = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "AmlCompute",
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": uid,
            "generation": 2,
            "finalizers": ["amlops.io/finalizer"],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 5000,
                "amlops.io/paused": "true",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}] * 20,
        },
        "spec": {"vmSize": "STANDARD_D1_V2"},
        "status": {"provisioningState": "Creating"},
        **extra,
    }
    return kopf.Body(cast(kopf.RawBody, raw))


def test_slim_keeps_what_a_pass_reads_and_drops_the_bulk() -> None:
    body = _body()
    kept = unslim(slim(body))
    assert kept.spec == body.spec
    assert kept.status == body.status
    assert kept.metadata.uid == "u1"
    assert kept.metadata.get("generation") == 2
    assert kept.metadata.annotations == {"amlops.io/paused": "true"}
    assert kept.metadata.get("finalizers") == ["amlops.io/finalizer"]
    assert "managedFields" not in kept.metadata
    assert len(slim(body)) < len(json.dumps(dict(body))) / 10
    assert json.loads(zlib.decompress(slim(body)))["kind"] == "AmlCompute"


class Passes:
    """A pass that records each look and answers the delay it is told to."""

    def __init__(self, after: float = 3600.0) -> None:
        self.looks: list[tuple[str, kopf.Body]] = []
        self.after = after
        self.looked = asyncio.Event()
        self.fail = 0
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.peak = 0
        self.entered = asyncio.Event()  # a pass in flight
        self.started = asyncio.Event()  # two passes in flight

    async def __call__(self, kind: str, body: kopf.Body, memo: kopf.Memo) -> float:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.entered.set()
        if self.in_flight >= 2:
            self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.looks.append((kind, body))
            self.looked.set()
            if self.fail:
                self.fail -= 1
                raise RuntimeError("a bug")
            return self.after
        finally:
            self.in_flight -= 1

    async def next(self) -> tuple[str, kopf.Body]:
        await asyncio.wait_for(self.looked.wait(), 30)
        self.looked.clear()
        return self.looks[-1]


@asynccontextmanager
async def serving(queue: WorkQueue) -> AsyncIterator[WorkQueue]:
    task = asyncio.create_task(queue.serve())
    try:
        yield queue
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def queue_of(passes: Callable[[str, kopf.Body, kopf.Memo], Awaitable[float]], **kw: Any) -> WorkQueue:
    return WorkQueue(run=passes, idle=kw.pop("idle", 0.0), concurrency=kw.pop("concurrency", 4))


async def test_an_object_is_looked_at_with_its_latest_body() -> None:
    passes = Passes()
    async with serving(queue_of(passes, idle=0.05)) as queue:
        queue.seen("AmlCompute", _body(), kopf.Memo())
        queue.seen("AmlCompute", _body(status={"provisioningState": "Succeeded"}), kopf.Memo())
        kind, body = await passes.next()
    assert kind == "AmlCompute"
    assert body.status == {"provisioningState": "Succeeded"}
    assert len(passes.looks) == 1, "two events within the idle time make one look"


async def test_a_pass_says_when_to_look_again_and_a_change_overrides_it() -> None:
    passes = Passes(after=0.0)
    async with serving(queue_of(passes)) as queue:
        queue.seen("AmlCompute", _body(), kopf.Memo())
        await passes.next()
        await passes.next()  # after=0: looked at again at once
        passes.after = 3600
        await passes.next()
        due = queue.due_in("u1")
        assert due is not None
        assert due > 3000
        queue.act("AmlCompute", _body(), kopf.Memo())  # a change handler: at once
        await passes.next()


async def test_a_change_is_looked_at_at_once_and_no_later_event_postpones_it() -> None:
    passes = Passes()
    async with serving(queue_of(passes, idle=3600)) as queue:
        queue.seen("AmlCompute", _body(), kopf.Memo())  # a watch event: idle before a look
        queue.act("AmlCompute", _body(status={"provisioningState": "Succeeded"}), kopf.Memo())
        queue.seen("AmlCompute", _body(status={"provisioningState": "Updating"}), kopf.Memo())  # its status PATCH
        _, body = await passes.next()
    assert body.status == {"provisioningState": "Updating"}, "the look reads the latest body"


async def test_a_change_during_a_pass_gets_a_pass_of_its_own_right_after() -> None:
    passes = Passes()
    passes.gate = asyncio.Event()
    async with serving(queue_of(passes)) as queue:
        queue.act("AmlCompute", _body(), kopf.Memo())
        await asyncio.wait_for(passes.entered.wait(), 30)
        # The running pass read the body before this change: a steady interval later would be too late.
        queue.act("AmlCompute", _body(spec={"vmSize": "STANDARD_D2_V2"}), kopf.Memo())
        passes.gate.set()
        while len(passes.looks) < 2:
            await passes.next()
        _, body = passes.looks[1]
        assert body.spec == {"vmSize": "STANDARD_D2_V2"}
        due = queue.due_in("u1")
        assert due is not None
        assert due > 3000, "once the change is handled, the pass's own delay holds again"


async def test_a_change_of_an_object_being_deleted_is_not_queued() -> None:
    passes = Passes()
    async with serving(queue_of(passes)) as queue:
        raw = dict(_body())
        raw["metadata"] = {**raw["metadata"], "deletionTimestamp": "2026-11-29T00:00:00Z"}
        queue.act("AmlCompute", kopf.Body(cast(kopf.RawBody, raw)), kopf.Memo())
        assert len(queue) == 0


async def test_deleted_and_deleting_objects_leave_the_queue() -> None:
    passes = Passes()
    async with serving(queue_of(passes, idle=3600)) as queue:
        queue.seen("AmlCompute", _body("a"), kopf.Memo())
        queue.seen("AmlCompute", _body("b"), kopf.Memo())
        queue.seen("AmlCompute", _body("c"), kopf.Memo())
        assert len(queue) == 3
        queue.seen("AmlCompute", _body("a"), kopf.Memo(), gone=True)
        raw = dict(_body("b"))
        raw["metadata"] = {**raw["metadata"], "deletionTimestamp": "2026-11-29T00:00:00Z"}
        queue.seen("AmlCompute", kopf.Body(cast(kopf.RawBody, raw)), kopf.Memo())
        queue.forget("c")
        assert len(queue) == 0
        assert queue.due_in("a") is None


async def test_a_failing_pass_backs_off_and_the_object_stays_queued(caplog: pytest.LogCaptureFixture) -> None:
    passes = Passes(after=3600)
    passes.fail = 1
    async with serving(queue_of(passes)) as queue:
        queue.seen("AmlCompute", _body(), kopf.Memo())
        await passes.next()  # fails: logged, looked at again after the first error delay (1 s)
        await passes.next()
        due = queue.due_in("u1")
        assert due is not None
        assert due > 3000
    assert "A pass of AmlCompute u1 failed" in caplog.text


async def test_passes_run_at_most_concurrency_at_a_time_and_each_object_once() -> None:
    passes = Passes()
    passes.gate = asyncio.Event()
    async with serving(queue_of(passes, concurrency=2)) as queue:
        for n in range(6):
            queue.seen("AmlCompute", _body(f"u{n}"), kopf.Memo())
        await asyncio.wait_for(passes.started.wait(), 30)
        queue.act("AmlCompute", _body("u0"), kopf.Memo())  # u0 is running: looked at again after, not beside
        for _ in range(50):
            await asyncio.sleep(0)
        assert passes.in_flight == 2
        passes.gate.set()
        while len(passes.looks) < 7:
            await passes.next()
    assert passes.peak == 2
    assert sorted(body.metadata.uid or "" for _, body in passes.looks) == ["u0", *(f"u{n}" for n in range(6))]


async def test_kopf_pausing_the_operator_stops_the_queue_until_it_resumes() -> None:
    passes = Passes()
    queue = queue_of(passes, idle=0.0)
    handler = peering.follow(queue)
    log = logging.getLogger(peering.KOPF_PEERING_LOGGER)
    try:
        async with serving(queue):
            queue.seen("AmlCompute", _body("early"), kopf.Memo())
            await passes.next()
            log.info("Pausing operations in favour of [Peer(...)].")
            assert len(queue) == 0, "a paused operator forgets its objects: kopf lists them again on resuming"
            queue.seen("AmlCompute", _body("during"), kopf.Memo())  # an event already in flight
            assert len(queue) == 0
            log.info("Resuming operations after the pause. Conflicting operators with the same priority are gone.")
            queue.seen("AmlCompute", _body("after"), kopf.Memo())
            await passes.next()
    finally:
        peering.unfollow(handler)
    assert [b.metadata.uid for _, b in passes.looks] == ["early", "after"]
