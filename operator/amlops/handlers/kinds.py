"""The kind registry, and the handlers every kind gets: create, update, resume, a timer and delete all call
the one engine.

kopf supplies events, retries and the finalizer; the engine decides. A new or resumed object gets one pass;
while it converges the poll timer looks again (in memory, no progress annotations); an update pass that is
still converging raises ``kopf.TemporaryError`` so kopf calls it again after ``requeue_after``. A Stalled pass
returns (the timer rechecks slowly, so a fix made outside the cluster is seen). Each pass writes its status
under the object's lock (``bridge.write_outcome``).
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
from amlops.external.amlcompute import AmlComputeClient
from amlops.external.batchcompute import BatchComputeClient
from amlops.external.commandjob import CommandJobClient
from amlops.external.paralleljob_backend import ParallelJobRouter
from amlops.external.workspacequota import WorkspaceQuotaClient
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
from amlops.handlers.kube_api import KubeApi
from amlops.reconcile.engine import Timing, reconcile
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.external import ExternalClient
from amlops.reconcile.outcome import Outcome
from amlops.settings import Settings

RELEASED = "released"  # per-object memo: the deletion has let go of Azure; no pass acts on the object any more
EXTERNAL = "external"  # operator memo: kind name → its ExternalClient, built once at start-up (app.connect)
# After a pass: seconds until this object wants another look sooner than the steady timer gives it (None: no
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


def register(settings: Settings) -> None:
    """Register every kind's handlers with kopf's default registry (``app.run`` calls it once)."""
    for handlers in REGISTRY:
        _register(handlers, settings)


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
        left = await handlers.after_pass(kind, body, outcome, memo) if handlers.after_pass else None
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
            await handlers.forget(handlers.client(memo), uid)

    kopf.on.resume(*resource, id="reconcile")(on_arrival)
    kopf.on.create(*resource, id="reconcile")(on_arrival)
    # A spec change is rare and usually means Azure work: it retries at once rather than waiting for the timer,
    # which may be in the middle of a steady interval.
    kopf.on.update(*resource, id="reconcile")(on_change)
    # Converging: every requeue_seconds once the object has been quiet that long (idle keeps it from racing the
    # change handlers); steady: every steady_interval.
    kopf.timer(*resource, id="poll", interval=steady_interval, idle=requeue_seconds)(on_poll)
    kopf.on.delete(*resource, id="finalize")(on_delete)
