"""The kind registry, and the handlers every kind gets: the work queue's pass and delete call the one engine;
create, update and resume hand the object to the queue.

kopf supplies events and the finalizer; the engine decides. A new, resumed or changed object is handed to the
operator's work queue (``workqueue.py``), which makes its pass at once; after every pass the queue is told when
to look again: after ``requeue_after`` while it converges, after the steady interval otherwise (a Stalled object
too, so a fix made outside the cluster is seen). Retries live in memory, never in kopf's progress annotations.
Only a deletion that is still under way asks kopf to call it again (``kopf.TemporaryError``): kopf holds the
finalizer until then. Each pass writes its status under the object's lock (``bridge.write_outcome``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import kopf

from amlops import metrics
from amlops.api import KINDS, AmlCompute, BatchCompute, CommandJob, ParallelJob, WorkspaceQuota
from amlops.api.job import is_job
from amlops.api.kind import GROUP, VERSION, CustomResource
from amlops.azure.clients import AzureClients
from amlops.azure.pacing import deferring
from amlops.external.amlcompute import AmlComputeClient
from amlops.external.batchcompute import BatchComputeClient
from amlops.external.commandjob import CommandJobClient
from amlops.external.paralleljob_backend import ParallelJobRouter
from amlops.external.workspacequota import WorkspaceQuotaClient
from amlops.handlers import credentials_in_use, ttl
from amlops.handlers.bridge import (
    DELETING,
    FINALIZER,
    managed_from,
    object_lock,
    write_outcome,
)
from amlops.handlers.kube_api import KubeApi
from amlops.handlers.workqueue import WorkQueue
from amlops.reconcile.engine import Timing, reconcile
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.external import ExternalClient
from amlops.reconcile.outcome import Outcome
from amlops.settings import Settings

RELEASED = "released"  # per-object memo: the deletion has let go of Azure; no pass acts on the object any more
EXTERNAL = "external"  # operator memo: kind name → its ExternalClient, built once at start-up (app.connect)
WORK_QUEUE = "workqueue"  # operator memo: the WorkQueue (app.connect)
PACING_TICKETS = "pacing_tickets"  # per-object memo: its writes' tokens kept for a later pass (pacing.deferring)
# After a pass: seconds until this object wants another look sooner than the steady interval gives it (None: no
# need), e.g. a finished job's ttlSecondsAfterFinished.
AfterPass = Callable[[type[CustomResource], kopf.Body, Outcome, kopf.Memo], Awaitable[float | None]]
ClientT = TypeVar("ClientT", bound=ExternalClient[Any])


@dataclass(frozen=True)
class KindHandlers(Generic[ClientT]):
    """A kind of the registry: its API model, how its Azure client is built at start-up (``app.connect``),
    what runs after each pass, and what its client keeps per object or for the whole process."""

    kind: type[CustomResource]
    build: Callable[[AzureClients, KubeApi], ClientT]
    after_pass: AfterPass | None = None
    # Once an object is gone: what its client keeps for it alone (besides the shared clients' caches).
    forget: Callable[[ClientT, str], Awaitable[None]] | None = None
    # At shutdown: what the client holds open of its own (besides the shared clients).
    close: Callable[[ClientT], Awaitable[None]] | None = None

    def client(self, memo: kopf.Memo) -> ClientT:
        client: ClientT = memo[EXTERNAL][self.kind.kind()]
        return client


async def collect_ttl(kind: type[CustomResource], body: kopf.Body, outcome: Outcome, memo: kopf.Memo) -> float | None:
    """Every job kind's after-pass: a finished job deletes itself ttlSecondsAfterFinished after it ended."""
    return await ttl.collect(kind, body, outcome, memo["kube"])


# The one list of kinds the operator serves: each API kind (``amlops.api.KINDS``, which crdgen and the chart's
# RBAC are generated from) with its client.
REGISTRY: tuple[KindHandlers[Any], ...] = (
    KindHandlers(AmlCompute, lambda clients, kube: AmlComputeClient(clients, kube, kube)),
    KindHandlers(BatchCompute, lambda clients, kube: BatchComputeClient(clients, kube, kube)),
    KindHandlers(
        ParallelJob,
        lambda clients, kube: ParallelJobRouter(clients, kube, kube),
        after_pass=collect_ttl,
        forget=ParallelJobRouter.release,
        close=ParallelJobRouter.close,
    ),
    KindHandlers(CommandJob, lambda clients, kube: CommandJobClient(clients, kube, kube), after_pass=collect_ttl),
    KindHandlers(WorkspaceQuota, lambda clients, kube: WorkspaceQuotaClient(clients, kube)),
)
assert [h.kind for h in REGISTRY] == list(KINDS), "every kind of the API has its handlers, in the same order"
assert all((h.after_pass is collect_ttl) is is_job(h.kind) for h in REGISTRY), "every job kind, and only they, TTL"


def connect(clients: AzureClients, kube: KubeApi) -> dict[str, ExternalClient[Any]]:
    """Every kind's client, for the operator memo (``EXTERNAL``)."""
    return {h.kind.kind(): h.build(clients, kube) for h in REGISTRY}


async def disconnect(memo: kopf.Memo) -> None:
    for handlers in REGISTRY:
        if handlers.close is not None and handlers.kind.kind() in memo.get(EXTERNAL, {}):
            await handlers.close(handlers.client(memo))


def _engine(handlers: KindHandlers[Any]) -> Callable[..., Awaitable[Outcome]]:
    kind = handlers.kind

    async def run(body: kopf.Body, memo: kopf.Memo, deleting: bool) -> Outcome:
        timing: Timing = memo["timing"]
        try:
            mr = managed_from(kind, body, deleting=deleting, memo=memo)
        except TerminalError as e:
            return Outcome.stalled(e.reason, e.message, timing.stalled)
        return await reconcile(mr, handlers.client(memo), timing)

    return run


# Each kind's queued pass (``WorkQueue.run`` calls ``poll``): kind name → pass returning the seconds to the next look.
_POLLS: dict[str, Callable[[kopf.Body, kopf.Memo], Awaitable[float]]] = {}


async def poll(kind: str, body: kopf.Body, memo: kopf.Memo) -> float:
    """The work queue's pass of one object."""
    return await _POLLS[kind](body, memo)


def register(settings: Settings) -> None:
    """Register every kind's handlers with kopf's default registry (``app.run`` calls it once)."""
    for handlers in REGISTRY:
        _register(handlers, settings)


def next_look(outcome: Outcome, ttl_left: float | None, steady: float) -> float:
    """Seconds until an object is looked at again after a pass: soon while it converges (``requeue_after``),
    when its finished job's TTL runs out if that is sooner than the steady interval, else the steady interval (a
    Stalled object too: a fix made outside the cluster is seen then)."""
    if outcome.retry and outcome.requeue_after is not None:
        return outcome.requeue_after
    if ttl_left is not None and ttl_left < steady:
        return max(ttl_left, 0.0)
    return steady


def _register(handlers: KindHandlers[Any], settings: Settings) -> None:
    kind = handlers.kind
    reconcile_kind = _engine(handlers)
    # Steady resources are looked at once per poll ceiling; the shared workspace poller makes that one list
    # call per workspace, however many resources it holds.
    steady_interval, requeue_seconds = settings.poll_ceiling_seconds, settings.requeue_seconds
    resource = (GROUP, VERSION, kind.plural())
    name = kind.kind()

    async def handle(body: kopf.Body, memo: kopf.Memo, deleting: bool = False) -> Outcome:
        # A body marked for deletion is handled as a deletion whichever handler holds it, and nothing acts once
        # the object has let go of Azure: a queued pass that waited for the lock behind the deletion would
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

    async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # The pass is the work queue's, made as soon as one of its slots is free; this handler returns at once.
        # kopf runs at most worker_limit handlers at a time and keeps every other object's watch events, whole
        # bodies, until one is free: passes made here held those slots for their Azure calls, and 6,000 objects
        # applied at once took the operator past 600 MB. Nor does kopf keep retry progress in annotations (a
        # kopf.TemporaryError costs two more PATCHes per retry): the queue retries in memory.
        queue: WorkQueue = memo[WORK_QUEUE]
        queue.act(name, body, memo)

    async def on_poll(body: kopf.Body, memo: kopf.Memo) -> float:
        if FINALIZER not in (body.metadata.get("finalizers") or []):
            # kopf adds the finalizer first and then runs the create/resume handler, which asks the queue for the
            # first pass. The queue can look before that (an object is queued on its first watch event, and the
            # finalizer PATCH may still be waiting): a pass now would only observe and say "waiting". Look
            # again soon rather than after a whole steady interval, in case no handler asks.
            return requeue_seconds
        # A write whose turn in ARM's budget is far off ends the pass (pacing.deferring): the queue's slot is not
        # held while it waits, and the object's next pass, at its turn, uses the token it was given.
        with deferring(memo.setdefault(PACING_TICKETS, {})):
            outcome = await handle(body, memo)
        left = await handlers.after_pass(kind, body, outcome, memo) if handlers.after_pass else None
        return next_look(outcome, left, steady_interval)

    async def on_event(body: kopf.Body, memo: kopf.Memo, event: kopf.RawEvent, **_: Any) -> None:
        queue: WorkQueue = memo[WORK_QUEUE]
        queue.seen(name, body, memo, gone=event.get("type") == "DELETED")

    async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await handle(body, memo, deleting=True)
        if not outcome.release_finalizer:
            raise kopf.TemporaryError(DELETING, delay=outcome.requeue_after or 5)
        metrics.forget(name, body.metadata.namespace or "", body.metadata.name or "")
        uid = body.metadata.uid or ""
        memo["diffbase"].forget(uid)
        memo[WORK_QUEUE].forget(uid)
        await credentials_in_use.release_unused(memo["kube"], body, memo["settings"].default_credentials_secret)
        # Per-tenant caches (clients, credentials, pollers, stores) this object alone used go with it.
        await memo["clients"].release(uid)
        if handlers.forget is not None:
            await handlers.forget(handlers.client(memo), uid)

    _POLLS[name] = on_poll
    # Every watch event keeps the object's latest body in the work queue, which looks at it again: every
    # requeue_seconds while it converges, once per steady_interval when steady.
    kopf.on.event(*resource, id="queue")(on_event)
    kopf.on.resume(*resource, id="reconcile")(on_change)
    kopf.on.create(*resource, id="reconcile")(on_change)
    kopf.on.update(*resource, id="reconcile")(on_change)
    kopf.on.delete(*resource, id="finalize")(on_delete)
