"""Operator process: kopf settings at start-up and ``run()``, which ``amlops run`` calls."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp
import kopf

from amlops import metrics
from amlops.api import KINDS
from amlops.api.kind import GROUP
from amlops.azure.clients import AzureClients
from amlops.handlers import kinds, peering
from amlops.handlers.bridge import DELETING, FINALIZER
from amlops.handlers.diffbase import ProcessDiffBaseStorage
from amlops.handlers.kube_api import REQUEST_CONNECTIONS, KubeApi, connection_info
from amlops.handlers.workqueue import WorkQueue
from amlops.reconcile.engine import Timing
from amlops.settings import Settings

KOPF_PREFIX = f"kopf.{GROUP}"
QUEUE_TASK = "workqueue_task"  # operator memo: the task serving the work queue
QUEUE_PEERING = "workqueue_peering"  # operator memo: what pauses it with kopf
# Connections kopf may open to the apiserver for requests, beside one per watch stream. kopf's own session is
# unbounded: at a thousand objects it held some 550 TLS connections, each with asyncio's 256 KiB read buffer
# (half the operator's peak memory). Requests past the bound wait for a free connection: the same bound as our
# own client's (kube_api.REQUEST_CONNECTIONS).
_watch_streams = len(KINDS) + 2  # the kinds, namespaces and peering; set per namespace in run()


@kopf.on.login()
async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.AiohttpSession | None:
    """kopf and our own Kubernetes client (``kube_api``) log in the same way, to the same cluster; kopf gets a
    session whose connection pool is bounded (``REQUEST_CONNECTIONS``)."""
    info = connection_info(settings)
    if info is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=REQUEST_CONNECTIONS + _watch_streams, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=info.as_aiohttp_basic_auth(),
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )


@kopf.on.startup()
async def connect(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    """Shared clients live in the operator memo (kopf copies a reference into every object's memo); ``run``
    put the settings there."""
    amlops_settings: Settings = memo["settings"]
    clients = AzureClients(amlops_settings)
    kube = KubeApi(lambda: connection_info(settings), timeout=settings.networking.request_timeout or 60)
    memo["clients"] = clients
    memo["timing"] = Timing(short=amlops_settings.requeue_seconds, stalled=amlops_settings.stalled_recheck_seconds)
    memo["kube"] = kube
    memo[kinds.EXTERNAL] = kinds.connect(clients, kube)
    # Set before any object's memo is made (kopf copies the operator memo into each): every object sees it.
    queue = memo[kinds.WORK_QUEUE] = WorkQueue(
        run=kinds.poll, idle=amlops_settings.requeue_seconds, concurrency=amlops_settings.worker_limit
    )
    memo[QUEUE_PEERING] = peering.follow(queue)
    memo[QUEUE_TASK] = asyncio.create_task(queue.serve(), name="amlops work queue")


@kopf.on.cleanup()
async def disconnect(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get(QUEUE_TASK)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if QUEUE_PEERING in memo:
        peering.unfollow(memo[QUEUE_PEERING])
    await kinds.disconnect(memo)
    clients: AzureClients | None = memo.get("clients")
    if clients is not None:
        await clients.close()
    kube: KubeApi | None = memo.get("kube")
    if kube is not None:
        await kube.close()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Handler progress in annotations: the CRDs' structural schemas would prune kopf's default status.kopf
    # field, and our status belongs to the kstatus contract alone. kopf hides every annotation under its
    # storage prefix from change detection, so that prefix must not be amlops.io itself: users'
    # amlops.io/paused and amlops.io/reconcile-requested-at must trigger a reconcile.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # The diff base lives in this process (diffbase.py: one PATCH less per create and update).
    memo["diffbase"] = settings.persistence.diffbase_storage = ProcessDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Reconnect watches well before the apiserver's own timeout so a dead connection is noticed quickly.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    # kopf runs one worker per object with events pending, unbounded by default; the work queue makes at most
    # as many passes at a time (app.connect). kopf's handlers only hand objects to the queue (kinds.on_change),
    # so a worker is busy for an event's bookkeeping alone, and released after 0.5 s idle rather than kopf's 5
    # s: objects past the limit wait in kopf's backlog, whole watch bodies each, only as long as that.
    own: Settings = memo["settings"]
    settings.queueing.worker_limit = own.worker_limit
    settings.queueing.idle_timeout = own.worker_idle_seconds


class RoutineObjectLogs(logging.Filter):
    """kopf's per-object lines for routine outcomes, at DEBUG: "Handler 'reconcile' succeeded.", "Handler 'queue'
    succeeded.", and the ERROR kopf logs for every ``kopf.TemporaryError``, which amlops raises only to be
    called again while a deletion is under way. At a thousand objects those were most of the log. Failures and
    our own messages are untouched; the Events, conditions and metrics say what happened."""

    # "Handler 'reconcile' succeeded." and the summary "Creation is processed: 1 succeeded; 0 failed." — a summary
    # that counts a failure stays visible beside the failing handler's own line.
    ROUTINE = (" succeeded.", " 0 failed.")
    SCHEDULING = (f" failed temporarily: {DELETING}",)

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        routine = message.endswith(self.ROUTINE) and record.levelno <= logging.INFO
        if not routine and not any(message.endswith(part) for part in self.SCHEDULING):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self._verbose


def run(
    *,
    namespaces: Sequence[str] = (),
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz",
    standalone: bool = True,
    peering_name: str | None = None,
    verbose: bool = False,
    metrics_port: int = 9090,
) -> int:
    """Run the operator until SIGINT/SIGTERM; watch ``namespaces``, or every namespace when empty."""
    # Read once, here: the handlers' intervals and the start-up handlers (through the memo) see the same values.
    settings = Settings()
    kinds.register(settings)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # azure-core logs every request and its headers at INFO: at scale that is most of the log, and most of
    # the time spent logging. Our own accounting (metrics) already counts every call.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # A Batch task collection is added with its answer streamed (azure/batch_jobs.add_tasks): on an error answer
    # azure-batch's failsafe deserialiser finds the body unread and logs a WARNING with a traceback, every time,
    # before amlops reads the body itself (batch_jobs.read_batch_error) and reports Batch's code as for any call.
    logging.getLogger("azure.batch._utils.model_base").setLevel(logging.ERROR)
    logging.getLogger("kopf.objects").addFilter(RoutineObjectLogs(verbose=verbose))
    if metrics_port:
        metrics.serve(metrics_port)
    global _watch_streams
    _watch_streams = len(KINDS) * max(1, len(namespaces)) + 2
    kopf.run(
        standalone=standalone,
        peering_name=peering_name,
        # With peering (replicas >= 2), kopf pauses every operator that sees a peer of equal priority, so
        # replicas with the default priority would freeze each other. A random priority makes exactly one
        # replica the active one; the others stand by until it goes away. (It must be given here: kopf
        # advertises the priority before startup handlers run.)
        priority=random.randint(1, 2**31 - 1) if peering_name else None,
        namespaces=list(namespaces),
        clusterwide=not namespaces,
        liveness_endpoint=liveness_endpoint,
        memo=kopf.Memo(settings=settings),
    )
    return 0
