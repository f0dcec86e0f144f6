"""Handlers for the three kinds: create, update, resume, a timer and delete all call the one engine.

kopf supplies events, retries and the finalizer; the engine decides. A new or resumed object gets one pass;
while it converges the poll timer looks again (in memory, no progress annotations); an update pass that is
still converging raises ``kopf.TemporaryError`` so kopf calls it again after ``requeue_after``. A Stalled pass
returns (the timer rechecks slowly, so a fix made outside the cluster is seen). Each pass writes its status
under the object's lock (``bridge.write_outcome``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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

ClientFactory = Callable[[kopf.Memo], ExternalClient[Any]]
RELEASED = "released"  # per-object memo: the deletion has let go of Azure; no pass acts on the object any more
# After a pass: seconds until this object wants another look sooner than the steady timer gives it (None: no
# need), e.g. a finished ParallelJob's ttlSecondsAfterFinished.
AfterPass = Callable[[kopf.Body, Outcome, kopf.Memo], Awaitable[float | None]]


@dataclass(frozen=True)
class KindHandlers:
    """What the handlers need of a kind besides its API model: its Azure client (from the operator memo, built
    at start-up in ``app.connect``) and what runs after each pass."""

    kind: type[CustomResource]
    client: ClientFactory
    after_pass: AfterPass | None = None
    # Once an object is gone: what its client keeps for it alone (besides the shared clients' caches).
    forget: Callable[[kopf.Memo, str], Awaitable[None]] | None = None


async def _collect_ttl(body: kopf.Body, outcome: Outcome, memo: kopf.Memo) -> float | None:
    return await ttl.collect(body, outcome, memo["kube"])


REGISTRY: tuple[KindHandlers, ...] = (
    KindHandlers(AmlCompute, lambda memo: memo["amlcompute_client"]),
    KindHandlers(BatchCompute, lambda memo: memo["batchcompute_client"]),
    KindHandlers(
        ParallelJob,
        lambda memo: memo["paralleljob_client"],
        after_pass=_collect_ttl,
        forget=lambda memo, uid: memo["paralleljob_client"].release(uid),
    ),
)
assert {h.kind for h in REGISTRY} == set(KINDS), "every kind of the API has its handlers"


def _engine(kind: type[CustomResource], factory: ClientFactory) -> Callable[..., Awaitable[Outcome]]:
    async def run(body: kopf.Body, memo: kopf.Memo, deleting: bool) -> Outcome:
        timing: Timing = memo["timing"]
        try:
            mr = managed_from(kind, body, deleting=deleting, memo=memo)
        except TerminalError as e:
            return Outcome.stalled(e.reason, e.message, timing.stalled)
        return await reconcile(mr, factory(memo), timing)

    return run


def register(settings: Settings) -> None:
    """Register every kind's handlers with kopf's default registry (``app.run`` calls it once)."""
    for handlers in REGISTRY:
        _register(handlers, settings)


def _register(handlers: KindHandlers, settings: Settings) -> None:
    kind = handlers.kind
    reconcile_kind = _engine(kind, handlers.client)
    # Steady resources are looked at once per poll ceiling; the shared workspace poller makes that one list
    # call per workspace, however many resources it holds.
    steady_interval, requeue_seconds = settings.poll_ceiling_seconds, settings.requeue_seconds
    resource = (GROUP, VERSION, kind.plural())
    name = kind.kind()

    async def handle(body: kopf.Body, memo: kopf.Memo, deleting: bool = False) -> Outcome:
        # A body marked for deletion is handled as a deletion whichever handler holds it, and nothing acts once
        # the object has let go of Azure: a timer pass that waited for the lock behind the deletion would
        # otherwise find the Azure resource gone and create it again, for an object about to disappear.
        deleting = deleting or bool(body.metadata.get("deletionTimestamp"))
        async with object_lock(memo):
            if memo.get(RELEASED):
                return Outcome(release_finalizer=deleting)
            with metrics.RECONCILE_DURATION.labels(name).time():
                outcome = await reconcile_kind(body, memo, deleting)
            if deleting and outcome.release_finalizer:
                memo[RELEASED] = True
            await write_outcome(outcome, plural=kind.plural(), body=body, memo=memo, writer=memo["kube"])
        metrics.RECONCILE_TOTAL.labels(name, outcome.result).inc()
        metrics.record(name, body.metadata.namespace or "", body.metadata.name or "", outcome)
        return outcome

    async def collect(body: kopf.Body, outcome: Outcome, memo: kopf.Memo) -> None:
        left = await handlers.after_pass(body, outcome, memo) if handlers.after_pass else None
        if left is not None and left < steady_interval:  # sooner than the steady timer would look again
            raise kopf.TemporaryError(TTL_PENDING, delay=left)

    async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await handle(body, memo)
        if outcome.retry and outcome.requeue_after is not None:
            raise kopf.TemporaryError(REQUEUE, delay=outcome.requeue_after)
        await collect(body, outcome, memo)

    async def on_arrival(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # No TemporaryError here while converging: for a change handler kopf keeps retry progress in
        # annotations, two more PATCHes per object per retry (a thousand objects created at once spent most
        # of their apiserver writes on it). The poll timer looks again requeue_seconds after the object's last
        # change instead, and retries in memory.
        outcome = await handle(body, memo)
        await collect(body, outcome, memo)

    async def on_poll(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if FINALIZER not in (body.metadata.get("finalizers") or []):
            # kopf adds the finalizer first and then runs the create/resume handler, which makes the first
            # pass. A timer can fire before that (its idle clock starts at the object's creation, and the
            # finalizer PATCH may still be queued): a pass now would only observe and say "waiting". Look
            # again soon rather than after a whole steady interval: the timer follows the first pass up.
            raise kopf.TemporaryError(WAITING_FOR_FINALIZER, delay=requeue_seconds)
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
        if handlers.forget is not None:
            await handlers.forget(memo, uid)

    kopf.on.resume(*resource, id="reconcile")(on_arrival)
    kopf.on.create(*resource, id="reconcile")(on_arrival)
    # A spec change is rare and usually means Azure work: it retries at once rather than waiting for the timer,
    # which may be in the middle of a steady interval.
    kopf.on.update(*resource, id="reconcile")(on_change)
    # Converging: every requeue_seconds once the object has been quiet that long (idle keeps it from racing the
    # change handlers); steady: every steady_interval.
    kopf.timer(*resource, id="poll", interval=steady_interval, idle=requeue_seconds)(on_poll)
    kopf.on.delete(*resource, id="finalize")(on_delete)
