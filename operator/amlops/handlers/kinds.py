"""Handlers for the three kinds: create, update, resume, a timer and delete all call the one engine.

kopf supplies events, retries and the finalizer; the engine decides. A new or resumed object gets one pass;
while it converges the poll timer looks again (in memory, no progress annotations); an update pass that is
still converging raises ``kopf.TemporaryError`` so kopf calls it again after ``requeue_after``. A Stalled pass
returns (the timer rechecks slowly, so a fix made outside the cluster is seen). Each pass writes its status
under the object's lock (``bridge.write_outcome``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from amlops import metrics
from amlops.api import KINDS, AmlCompute, BatchCompute, ParallelJob
from amlops.api.kind import GROUP, VERSION, CustomResource
from amlops.handlers import credentials_in_use, ttl
from amlops.handlers.bridge import (
    DELETING,
    FINALIZER,
    REQUEUE,
    TTL_PENDING,
    WAITING_FOR_FINALIZER,
    managed_from,
    object_lock,
    write_outcome,
)
from amlops.reconcile.engine import Timing, reconcile
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.external import ExternalClient
from amlops.reconcile.outcome import Outcome
from amlops.settings import Settings
from amlops.status import REASON_WAITING_FOR_AZURE, progressing, stalled

# Steady resources are looked at once per poll ceiling; the shared workspace poller makes that one list
# call per workspace, however many resources it holds.
STEADY_INTERVAL = Settings().poll_ceiling_seconds
REQUEUE_SECONDS = Settings().requeue_seconds
ClientFactory = Callable[[kopf.Memo], ExternalClient[Any]]


async def _not_connected(body: kopf.Body, memo: kopf.Memo, deleting: bool) -> Outcome:
    # Until a kind's Azure client exists, say so truthfully: seen and waiting, never Ready.
    return Outcome(
        conditions=tuple(
            progressing(REASON_WAITING_FOR_AZURE, "amlops has seen this generation; no Azure client is set up")
        ),
        release_finalizer=deleting,
    )


def _engine(kind: type[CustomResource], factory: ClientFactory) -> Callable[..., Awaitable[Outcome]]:
    async def run(body: kopf.Body, memo: kopf.Memo, deleting: bool) -> Outcome:
        timing: Timing = memo["timing"]
        try:
            mr = managed_from(kind, body, deleting=deleting, memo=memo)
        except TerminalError as e:
            return Outcome(conditions=tuple(stalled(e.reason, e.message)), requeue_after=timing.stalled, terminal=True)
        return await reconcile(mr, factory(memo), timing)

    return run


FACTORIES: dict[str, ClientFactory] = {
    AmlCompute.kind(): lambda memo: memo["amlcompute_client"],
    BatchCompute.kind(): lambda memo: memo["batchcompute_client"],
    ParallelJob.kind(): lambda memo: memo["paralleljob_client"],
}


def _register(kind: type[CustomResource]) -> None:
    factory = FACTORIES.get(kind.kind())
    reconcile_kind = _engine(kind, factory) if factory else _not_connected
    resource = (GROUP, VERSION, kind.plural())
    name = kind.kind()

    async def handle(body: kopf.Body, memo: kopf.Memo, deleting: bool = False) -> Outcome:
        async with object_lock(memo):
            with metrics.RECONCILE_DURATION.labels(name).time():
                outcome = await reconcile_kind(body, memo, deleting)
            await write_outcome(outcome, plural=kind.plural(), body=body, memo=memo, writer=memo["kube"])
        result = "stalled" if outcome.terminal else "retry" if outcome.retry else "ok"
        metrics.RECONCILE_TOTAL.labels(name, result).inc()
        metrics.record(name, body.metadata.namespace or "", body.metadata.name or "", outcome)
        return outcome

    async def collect(body: kopf.Body, outcome: Outcome, memo: kopf.Memo) -> None:
        left = await ttl.collect(body, outcome, memo["objects"]) if kind is ParallelJob else None
        if left is not None and left < STEADY_INTERVAL:  # sooner than the steady timer would look again
            raise kopf.TemporaryError(TTL_PENDING, delay=left)

    async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await handle(body, memo)
        if outcome.retry and outcome.requeue_after is not None:
            raise kopf.TemporaryError(REQUEUE, delay=outcome.requeue_after)
        await collect(body, outcome, memo)

    async def on_arrival(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # No TemporaryError here while converging: for a change handler kopf keeps retry progress in
        # annotations, two more PATCHes per object per retry (a thousand objects created at once spent most
        # of their apiserver writes on it). The poll timer looks again REQUEUE_SECONDS after the object's last
        # change instead, and retries in memory.
        outcome = await handle(body, memo)
        await collect(body, outcome, memo)

    async def on_poll(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if FINALIZER not in (body.metadata.get("finalizers") or []):
            # kopf adds the finalizer first and then runs the create/resume handler, which makes the first
            # pass. A timer can fire before that (its idle clock starts at the object's creation, and the
            # finalizer PATCH may still be queued): a pass now would only observe and say "waiting". Look
            # again soon rather than after a whole steady interval: the timer follows the first pass up.
            raise kopf.TemporaryError(WAITING_FOR_FINALIZER, delay=REQUEUE_SECONDS)
        await on_change(body, memo)

    async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await handle(body, memo, deleting=True)
        if not outcome.release_finalizer:
            raise kopf.TemporaryError(DELETING, delay=outcome.requeue_after or 5)
        metrics.forget(name, body.metadata.namespace or "", body.metadata.name or "")
        uid = body.metadata.uid or ""
        memo["diffbase"].forget(uid)
        await credentials_in_use.release_unused(memo["kube"], body, memo["settings"].default_credentials_secret)
        # Per-tenant caches (clients, credentials, pollers, stores) this object alone used go with it.
        await memo["clients"].release(uid)
        if kind is ParallelJob:
            await memo["paralleljob_client"].release(uid)

    kopf.on.resume(*resource, id="reconcile")(on_arrival)
    kopf.on.create(*resource, id="reconcile")(on_arrival)
    # A spec change is rare and usually means Azure work: it retries at once rather than waiting for the timer,
    # which may be in the middle of a steady interval.
    kopf.on.update(*resource, id="reconcile")(on_change)
    # Converging: every REQUEUE_SECONDS once the object has been quiet that long (idle keeps it from racing the
    # change handlers); steady: every STEADY_INTERVAL.
    kopf.timer(*resource, id="poll", interval=STEADY_INTERVAL, idle=REQUEUE_SECONDS)(on_poll)
    kopf.on.delete(*resource, id="finalize")(on_delete)


for _kind in KINDS:
    _register(_kind)
