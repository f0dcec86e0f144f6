"""Every Prometheus metric amlops exports, declared in one place (design.md §5).

Served on ``/metrics`` by ``amlops run --metrics-port``. A resource's labelled series are removed when the
resource is deleted (:func:`forget`), so dashboards do not show ghosts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Metric, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
AZURE_DEFERRED = Counter(
    "amlops_azure_deferred_total",
    "Writes whose token of ARM's request budget was seconds away: their reconcile pass ended, and the object came "
    "back at its turn (azure/pacing.py), by service and bucket.",
    ["service", "bucket"],
)
AZURE_THROTTLED = Counter("amlops_azure_throttled_total", "Azure 429 answers by service.", ["service"])
AZURE_RATELIMIT_REMAINING = Gauge(
    "amlops_azure_ratelimit_remaining",
    "Last x-ms-ratelimit-remaining-subscription-* value by subscription and kind (reads, writes, deletes).",
    ["subscription", "kind"],
)
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


@dataclass(frozen=True)
class ObjectGauge:
    """A gauge with one series per resource, or a few told apart by one more label (``label``)."""

    name: str
    documentation: str
    with_kind: bool = True  # the resource's labels: kind, namespace, name (else namespace, name)
    label: str | None = None

    def labelnames(self) -> list[str]:
        return [*(("kind",) if self.with_kind else ()), "namespace", "name", *((self.label,) if self.label else ())]


class ResourceGauges(Collector):
    """Per-resource gauges, kept compactly and exported when Prometheus scrapes (prometheus_client's documented
    custom-collector API).

    prometheus_client keeps each labelled series as a metric object of its own, ≈ 750 bytes; an AmlCompute has
    about fifteen (conditions, node states, target nodes): ≈ 11 KB per resource, the largest part of what a
    resource cost the operator once kopf no longer kept its body (bench/amlcompute_scale.py --trace-memory).
    Here a resource is one small dict, {(gauge, label value): value}, whose keys and small whole values are
    shared by every resource (a few dozen of each exist): a key tuple, its label string and a float each cost a
    resource ≈ 130 bytes more when each pass made its own, ≈ 1.2 KB for an AmlCompute."""

    # Values shared between resources: the whole numbers a count or a 0/1 gauge takes (few); others are kept as
    # they come (durations).
    SHARED_VALUES = 1024

    def __init__(self, *gauges: ObjectGauge) -> None:
        self._gauges = gauges
        self._resources: dict[tuple[str, str, str], dict[tuple[str, str], float]] = {}
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._values: dict[float, float] = {}
        self._lock = threading.Lock()  # prometheus_client serves scrapes from a thread of its own

    def set(self, gauge: ObjectGauge, resource: tuple[str, str, str], value: float, label: str = "") -> None:
        key = (gauge.name, label)
        number = float(value)
        with self._lock:
            # Label values are Kubernetes condition types and reasons, node states, job phases: a bounded set.
            key = self._keys.setdefault(key, key)
            if number.is_integer() and 0 <= number < self.SHARED_VALUES:
                number = self._values.setdefault(number, number)
            self._resources.setdefault(resource, {})[key] = number

    def clear(self, gauge: ObjectGauge, resource: tuple[str, str, str]) -> None:
        """Drop every series of ``gauge`` for the resource."""
        with self._lock:
            series = self._resources.get(resource, {})
            for key in [key for key in series if key[0] == gauge.name]:
                del series[key]

    def forget(self, resource: tuple[str, str, str]) -> None:
        with self._lock:
            self._resources.pop(resource, None)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        for gauge in self._gauges:
            yield GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labelnames())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            resources = [(resource, list(series.items())) for resource, series in self._resources.items()]
        families = {g.name: (g, family) for g, family in zip(self._gauges, self.describe(), strict=True)}
        # A gauge without the kind label could see an AmlCompute and a BatchCompute of one name: one series.
        seen: set[tuple[str, ...]] = set()
        for (kind, namespace, name), series in resources:
            for (gauge_name, label), value in series:
                gauge, family = families[gauge_name]
                labels = [*((kind,) if gauge.with_kind else ()), namespace, name, *((label,) if gauge.label else ())]
                if not gauge.with_kind:
                    if (gauge_name, *labels) in seen:
                        continue
                    seen.add((gauge_name, *labels))
                family.add_metric(labels, value)
        for _, family in families.values():
            yield family


RESOURCE_CONDITION = ObjectGauge(
    "amlops_resource_condition",
    "1 while the resource's condition of this type is True, else 0 (Ready, Reconciling, Stalled, job conditions).",
    label="type",
)
RESOURCE_STALLED = ObjectGauge(
    "amlops_resource_stalled",
    "1 while the resource is Stalled, labelled with the Stalled condition's reason (amlops' stable reasons, e.g. "
    "QuotaExceeded, VmSizeNotAvailable, whatever code Azure used); absent while it is not Stalled.",
    label="reason",
)
RESOURCE_READY = ObjectGauge("amlops_resource_ready", "1 when the resource is Ready, else 0.")
COMPUTE_NODES = ObjectGauge("amlops_compute_nodes", "Nodes of a compute by node state.", with_kind=False, label="state")
COMPUTE_TARGET_NODES = ObjectGauge("amlops_compute_target_nodes", "Target node count of a compute.", with_kind=False)
PARALLELJOB_MINIBATCHES = ObjectGauge(
    "amlops_paralleljob_minibatches", "Mini-batches of a ParallelJob by state.", with_kind=False, label="state"
)
PARALLELJOB_ITEMS = ObjectGauge(
    "amlops_paralleljob_items",
    "Items of a ParallelJob by state (processed, failed).",
    with_kind=False,
    label="state",
)
JOB_PHASE = ObjectGauge(
    "amlops_job_phase",
    "1 for a job's (ParallelJob, CommandJob) current phase: Pending, Running, Suspended, Complete, Failed; "
    "sum by (kind, phase) counts jobs by phase.",
    label="phase",
)
JOB_RUN_SECONDS = ObjectGauge(
    "amlops_job_run_seconds",
    "A finished job's run duration, startTime to completionTime (a resumed job counts from its resume).",
)
RESOURCES = ResourceGauges(
    RESOURCE_CONDITION,
    RESOURCE_STALLED,
    RESOURCE_READY,
    COMPUTE_NODES,
    COMPUTE_TARGET_NODES,
    PARALLELJOB_MINIBATCHES,
    PARALLELJOB_ITEMS,
    JOB_PHASE,
    JOB_RUN_SECONDS,
)
REGISTRY.register(RESOURCES)


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop every series of one resource (called once it is gone from the cluster)."""
    RESOURCES.forget((kind, namespace, name))
    COMPUTE_RECREATES.remove_by_labels({"namespace": namespace, "name": name})


def record(kind: str, namespace: str, name: str, outcome: Outcome) -> None:
    """Per-resource gauges from one reconcile pass's outcome."""
    resource = (kind, namespace, name)
    for condition in outcome.conditions:
        RESOURCES.set(RESOURCE_CONDITION, resource, condition.status == "True", condition.type)
        if condition.type == READY:
            RESOURCES.set(RESOURCE_READY, resource, condition.status == "True")
        if condition.type == STALLED:
            # One series at most per resource: the current reason's (an alert can name the reason it fires on).
            RESOURCES.clear(RESOURCE_STALLED, resource)
            if condition.status == "True":
                RESOURCES.set(RESOURCE_STALLED, resource, 1, condition.reason)
    status = outcome.status
    record_job(kind, namespace, name, status)
    counts = status.get("nodeStateCounts")
    if isinstance(counts, dict):
        for key, value in counts.items():
            RESOURCES.set(COMPUTE_NODES, resource, int(value or 0), key.removesuffix("NodeCount"))
    if isinstance(status.get("targetNodeCount"), int):
        RESOURCES.set(COMPUTE_TARGET_NODES, resource, status["targetNodeCount"])
    mini_batches = status.get("miniBatches")
    if isinstance(mini_batches, dict):
        for state in ("pending", "running", "succeeded", "failed"):
            RESOURCES.set(PARALLELJOB_MINIBATCHES, resource, int(mini_batches.get(state) or 0), state)
    items = status.get("items")
    if isinstance(items, dict):
        for state in ("processed", "failed"):
            RESOURCES.set(PARALLELJOB_ITEMS, resource, int(items.get(state) or 0), state)


def record_job(kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """A job's phase (one series at most: the current one's) and, once it has ended, its run duration."""
    resource = (kind, namespace, name)
    phase = status.get("phase")
    if isinstance(phase, str):
        RESOURCES.clear(JOB_PHASE, resource)
        RESOURCES.set(JOB_PHASE, resource, 1, phase)
    started, ended = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    if started is not None and ended is not None:
        RESOURCES.set(JOB_RUN_SECONDS, resource, max(0.0, (ended - started).total_seconds()))


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
