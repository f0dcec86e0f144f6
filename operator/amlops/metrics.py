"""Every Prometheus metric amlops exports, declared in one place (design.md §5).

Served on ``/metrics`` by ``amlops run --metrics-port``. A resource's labelled series are removed when the
resource is deleted (:func:`forget`), so dashboards do not show ghosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from amlops.reconcile.outcome import Outcome
from amlops.status import READY, STALLED, parse_time

RECONCILE_TOTAL = Counter(
    "amlops_reconcile_total", "Reconcile passes by kind and result (ok, retry, stalled, error).", ["kind", "result"]
)
RECONCILE_DURATION = Histogram(
    "amlops_reconcile_duration_seconds",
    "Duration of one reconcile pass.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AZURE_REQUESTS = Counter(
    "amlops_azure_requests_total",
    "Azure requests (each attempt) by service (arm, batch, blob), operation and HTTP code (none: no answer).",
    ["service", "operation", "code"],
)
AZURE_REQUEST_DURATION = Histogram(
    "amlops_azure_request_duration_seconds", "Azure request latency.", ["service", "operation"]
)
AZURE_PACED_SECONDS = Counter(
    "amlops_azure_paced_seconds_total",
    "Seconds requests waited for a token of ARM's request budget (azure/pacing.py), by service and bucket.",
    ["service", "bucket"],
)
AZURE_THROTTLED = Counter("amlops_azure_throttled_total", "Azure 429 answers by service.", ["service"])
AZURE_RATELIMIT_REMAINING = Gauge(
    "amlops_azure_ratelimit_remaining",
    "Last x-ms-ratelimit-remaining-subscription-* value by subscription and kind (reads, writes, deletes).",
    ["subscription", "kind"],
)
RESOURCE_CONDITION = Gauge(
    "amlops_resource_condition",
    "1 while the resource's condition of this type is True, else 0 (Ready, Reconciling, Stalled, job conditions).",
    ["kind", "namespace", "name", "type"],
)
RESOURCE_STALLED = Gauge(
    "amlops_resource_stalled",
    "1 while the resource is Stalled, labelled with the Stalled condition's reason (amlops' stable reasons, e.g. "
    "QuotaExceeded, VmSizeNotAvailable, whatever code Azure used); absent while it is not Stalled.",
    ["kind", "namespace", "name", "reason"],
)
RESOURCE_READY = Gauge("amlops_resource_ready", "1 when the resource is Ready, else 0.", ["kind", "namespace", "name"])
COMPUTE_NODES = Gauge("amlops_compute_nodes", "Nodes of a compute by node state.", ["namespace", "name", "state"])
COMPUTE_TARGET_NODES = Gauge("amlops_compute_target_nodes", "Target node count of a compute.", ["namespace", "name"])
QUOTA_HEADROOM_CORES = Gauge(
    "amlops_quota_headroom_cores",
    "Family vCPU quota minus usage, by subscription, location and VM family.",
    ["subscription", "location", "family"],
)
QUOTA_LIMIT_CORES = Gauge(
    "amlops_quota_limit_cores",
    "Dedicated vCPU limit of a VM family by subscription, location, workspace (empty: the subscription's own "
    "limit) and family, as a WorkspaceQuota last read it.",
    ["subscription", "location", "workspace", "family"],
)
QUOTA_USAGE_CORES = Gauge(
    "amlops_quota_usage_cores",
    "vCPUs of a VM family in use by subscription, location, workspace (empty: the whole subscription), family and "
    "priority (dedicated, lowPriority), as a WorkspaceQuota last read it.",
    ["subscription", "location", "workspace", "family", "priority"],
)
COMPUTE_RECREATES = Counter(
    "amlops_compute_recreates_total",
    "Clusters deleted to be created anew with new create-only values (AmlCompute updatePolicy Recreate).",
    ["namespace", "name"],
)
PARALLELJOB_MINIBATCHES = Gauge(
    "amlops_paralleljob_minibatches", "Mini-batches of a ParallelJob by state.", ["namespace", "name", "state"]
)
PARALLELJOB_ITEMS = Gauge(
    "amlops_paralleljob_items", "Items of a ParallelJob by state (processed, failed).", ["namespace", "name", "state"]
)

JOB_PHASE = Gauge(
    "amlops_job_phase",
    "1 for a job's (ParallelJob, CommandJob) current phase: Pending, Running, Suspended, Complete, Failed; "
    "sum by (kind, phase) counts jobs by phase.",
    ["kind", "namespace", "name", "phase"],
)
JOB_RUN_SECONDS = Gauge(
    "amlops_job_run_seconds",
    "A finished job's run duration, startTime to completionTime (a resumed job counts from its resume).",
    ["kind", "namespace", "name"],
)

_PER_RESOURCE = (
    RESOURCE_READY,
    COMPUTE_NODES,
    COMPUTE_TARGET_NODES,
    COMPUTE_RECREATES,
    PARALLELJOB_MINIBATCHES,
    PARALLELJOB_ITEMS,
)


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop every series of one resource (called once it is gone from the cluster)."""
    RESOURCE_READY.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
    RESOURCE_CONDITION.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
    RESOURCE_STALLED.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
    JOB_PHASE.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
    JOB_RUN_SECONDS.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
    for metric in _PER_RESOURCE[1:]:
        metric.remove_by_labels({"namespace": namespace, "name": name})


def record(kind: str, namespace: str, name: str, outcome: Outcome) -> None:
    """Per-resource gauges from one reconcile pass's outcome."""
    for condition in outcome.conditions:
        RESOURCE_CONDITION.labels(kind, namespace, name, condition.type).set(1 if condition.status == "True" else 0)
        if condition.type == READY:
            RESOURCE_READY.labels(kind, namespace, name).set(1 if condition.status == "True" else 0)
        if condition.type == STALLED:
            # One series at most per resource: the current reason's (an alert can name the reason it fires on).
            RESOURCE_STALLED.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
            if condition.status == "True":
                RESOURCE_STALLED.labels(kind, namespace, name, condition.reason).set(1)
    status = outcome.status
    record_job(kind, namespace, name, status)
    counts = status.get("nodeStateCounts")
    if isinstance(counts, dict):
        for key, value in counts.items():
            COMPUTE_NODES.labels(namespace, name, key.removesuffix("NodeCount")).set(int(value or 0))
    if isinstance(status.get("targetNodeCount"), int):
        COMPUTE_TARGET_NODES.labels(namespace, name).set(status["targetNodeCount"])
    mini_batches = status.get("miniBatches")
    if isinstance(mini_batches, dict):
        for state in ("pending", "running", "succeeded", "failed"):
            PARALLELJOB_MINIBATCHES.labels(namespace, name, state).set(int(mini_batches.get(state) or 0))
    items = status.get("items")
    if isinstance(items, dict):
        for state in ("processed", "failed"):
            PARALLELJOB_ITEMS.labels(namespace, name, state).set(int(items.get(state) or 0))


def record_job(kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """A job's phase (one series at most: the current one's) and, once it has ended, its run duration."""
    phase = status.get("phase")
    if isinstance(phase, str):
        JOB_PHASE.remove_by_labels({"kind": kind, "namespace": namespace, "name": name})
        JOB_PHASE.labels(kind, namespace, name, phase).set(1)
    started, ended = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    if started is not None and ended is not None:
        JOB_RUN_SECONDS.labels(kind, namespace, name).set(max(0.0, (ended - started).total_seconds()))


def record_quota(subscription: str, location: str, workspace: str, families: list[dict[str, Any]]) -> None:
    """A WorkspaceQuota's reading (``status.families``): limits and usage per family, and the subscription's
    headroom in ``amlops_quota_headroom_cores`` (the figure AmlCompute's pre-flight exports too). Labels are
    locations, workspaces and VM families: a few dozen series, not one per object. The series stay when the
    object goes: deleting it does not change the quota."""
    for f in families:
        # vmSizes' spelling ("standardDSv2Family"), as AmlCompute's pre-flight labels it: one series per family.
        family = str(f["vmFamily"])[:1].lower() + str(f["vmFamily"])[1:]
        limits = {workspace: f.get("workspaceLimit"), "": f.get("subscriptionLimit")}
        for scope, limit in limits.items():
            if isinstance(limit, int):
                QUOTA_LIMIT_CORES.labels(subscription, location, scope, family).set(limit)
        usage = {
            ("", "dedicated"): f.get("dedicatedUsage"),
            (workspace, "dedicated"): f.get("workspaceDedicatedUsage"),
            ("", "lowPriority"): f.get("lowPriorityUsage"),
        }
        for (scope, priority), used in usage.items():
            if isinstance(used, int):
                QUOTA_USAGE_CORES.labels(subscription, location, scope, family, priority).set(used)
        subscription_limit, dedicated = f.get("subscriptionLimit"), f.get("dedicatedUsage")
        if isinstance(subscription_limit, int) and subscription_limit >= 0:
            QUOTA_HEADROOM_CORES.labels(subscription, location, family).set(subscription_limit - (dedicated or 0))


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr)
