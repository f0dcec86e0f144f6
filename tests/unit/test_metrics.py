"""``amlops_resource_stalled{kind,namespace,name,reason}``: one series while a resource is Stalled, labelled with
the reason an alert fires on (AmlopsQuotaExceeded reads ``reason="QuotaExceeded"``), none once it is not."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from amlops import metrics
from amlops.reconcile.outcome import Outcome

pytestmark = pytest.mark.unit

KIND, NAMESPACE, NAME = "AmlCompute", "metrics-test", "gpu"


def stalled_reasons() -> dict[str, float]:
    return {
        sample.labels["reason"]: sample.value
        for metric in REGISTRY.collect()
        if metric.name == "amlops_resource_stalled"
        for sample in metric.samples
        if (sample.labels["kind"], sample.labels["namespace"], sample.labels["name"]) == (KIND, NAMESPACE, NAME)
    }


def test_the_current_stalled_reason_only() -> None:
    metrics.record(KIND, NAMESPACE, NAME, Outcome.stalled("VmSizeNotAvailable", "no such size", 300))
    assert stalled_reasons() == {"VmSizeNotAvailable": 1.0}
    metrics.record(KIND, NAMESPACE, NAME, Outcome.stalled("QuotaExceeded", "BadRequest: ... vCPU quota ...", 300))
    assert stalled_reasons() == {"QuotaExceeded": 1.0}, "the former reason's series is gone"
    metrics.record(KIND, NAMESPACE, NAME, Outcome.converging("Creating", "creating in Azure", 5))
    assert stalled_reasons() == {}, "not Stalled: no series"
    metrics.record(KIND, NAMESPACE, NAME, Outcome.stalled("QuotaExceeded", "again", 300))
    metrics.forget(KIND, NAMESPACE, NAME)
    assert stalled_reasons() == {}, "a deleted resource leaves no ghost"


def quota_samples(subscription: str) -> dict[tuple[str, ...], float]:
    names = ("amlops_quota_limit_cores", "amlops_quota_usage_cores", "amlops_quota_headroom_cores")
    return {
        (metric.name, *(v for k, v in sorted(sample.labels.items()) if k != "subscription")): sample.value
        for metric in REGISTRY.collect()
        if metric.name in names
        for sample in metric.samples
        if sample.labels["subscription"] == subscription
    }


def test_a_workspace_quota_reading_exports_limits_usage_and_headroom_per_family() -> None:
    """Labels: location, workspace (empty for the subscription's figures), family in vmSizes' spelling (the one
    AmlCompute's pre-flight uses, so both feed one headroom series), priority; never an object's name."""
    family = {
        "vmFamily": "StandardDSv2Family",
        "workspaceLimit": 16,
        "subscriptionLimit": 24,
        "dedicatedUsage": 10,
        "workspaceDedicatedUsage": 4,
        "lowPriorityUsage": 2,
        "headroom": 12,
    }
    metrics.record_quota("sub-metrics", "westeurope", "ws-1", [family])
    f = "standardDSv2Family"
    assert quota_samples("sub-metrics") == {
        ("amlops_quota_limit_cores", f, "westeurope", "ws-1"): 16,
        ("amlops_quota_limit_cores", f, "westeurope", ""): 24,
        ("amlops_quota_usage_cores", f, "westeurope", "dedicated", ""): 10,
        ("amlops_quota_usage_cores", f, "westeurope", "dedicated", "ws-1"): 4,
        ("amlops_quota_usage_cores", f, "westeurope", "lowPriority", ""): 2,
        ("amlops_quota_headroom_cores", f, "westeurope"): 14,
    }


def test_forget_drops_a_computes_recreate_count() -> None:
    """``amlops_compute_recreates_total`` is one series per AmlCompute: it goes with the object."""

    def recreates() -> float | None:
        return REGISTRY.get_sample_value("amlops_compute_recreates_total", {"namespace": NAMESPACE, "name": NAME})

    metrics.COMPUTE_RECREATES.labels(NAMESPACE, NAME).inc()
    assert recreates() == 1.0
    metrics.forget(KIND, NAMESPACE, NAME)
    assert recreates() is None


def job_samples(kind: str, name: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("phase", "")): sample.value
        for metric in REGISTRY.collect()
        if metric.name in ("amlops_job_phase", "amlops_job_run_seconds")
        for sample in metric.samples
        if (sample.labels["kind"], sample.labels["namespace"], sample.labels["name"]) == (kind, NAMESPACE, name)
    }


def test_a_jobs_phase_and_run_duration() -> None:
    """Jobs by phase (``sum by (kind, phase) (amlops_job_phase)``): one series per job, its current phase's; the
    run duration once it has ended; nothing left once the object is gone."""
    start = "2026-11-29T10:00:00Z"
    metrics.record("CommandJob", NAMESPACE, "train", Outcome(status={"phase": "Running", "startTime": start}))
    assert job_samples("CommandJob", "train") == {("amlops_job_phase", "Running"): 1.0}
    ended = {"phase": "Complete", "startTime": start, "completionTime": "2026-11-29T10:01:30Z"}
    metrics.record("CommandJob", NAMESPACE, "train", Outcome(status=ended))
    assert job_samples("CommandJob", "train") == {
        ("amlops_job_phase", "Complete"): 1.0,
        ("amlops_job_run_seconds", ""): 90.0,
    }
    metrics.record("CommandJob", NAMESPACE, "train", Outcome(status={}))
    assert job_samples("CommandJob", "train")[("amlops_job_phase", "Complete")] == 1.0, "a pass that writes no phase"
    metrics.forget("CommandJob", NAMESPACE, "train")
    assert job_samples("CommandJob", "train") == {}


def test_resource_gauges_export_prometheus_text_and_go_with_the_resource() -> None:
    """Per-resource gauges are kept compactly (metrics.ResourceGauges) but scrape as before: the text exposition
    parses, each series carries the resource's labels, and a gauge without the kind label exports one series
    when two kinds share a name (an AmlCompute and a BatchCompute named alike)."""
    status = {"nodeStateCounts": {"idleNodeCount": 2, "busyNodeCount": 1}, "targetNodeCount": 3}
    metrics.record("AmlCompute", NAMESPACE, "twin", Outcome(status=status))
    metrics.record("BatchCompute", NAMESPACE, "twin", Outcome(status={**status, "targetNodeCount": 3}))

    def nodes() -> list[tuple[dict[str, str], float]]:
        text = generate_latest(REGISTRY).decode()
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            if family.name == "amlops_compute_nodes"
            for sample in family.samples
            if sample.labels["name"] == "twin"
        ]

    assert sorted((labels["state"], value) for labels, value in nodes()) == [("busy", 1.0), ("idle", 2.0)]
    metrics.forget("AmlCompute", NAMESPACE, "twin")
    assert len(nodes()) == 2, "the BatchCompute's series stay"
    metrics.forget("BatchCompute", NAMESPACE, "twin")
    assert nodes() == []


def test_resource_gauges_share_keys_and_whole_values_between_resources() -> None:
    """Each resource's series keys and small whole values are one shared object, not one per pass (≈ 1.2 KB per
    AmlCompute at 10,000 objects); other values are kept as given, and scraping is unchanged."""
    gauges = metrics.ResourceGauges(metrics.COMPUTE_NODES, metrics.JOB_RUN_SECONDS)
    for name in ("a", "b"):
        # Label strings as a parsed status gives them: equal, not the same object.
        gauges.set(metrics.COMPUTE_NODES, ("AmlCompute", NAMESPACE, name), 3, "".join(["id", "le"]))
        gauges.set(metrics.JOB_RUN_SECONDS, ("AmlCompute", NAMESPACE, name), 12.5)
        gauges.set(metrics.COMPUTE_NODES, ("AmlCompute", NAMESPACE, name), 5000, "busy")
    a, b = (gauges._resources[("AmlCompute", NAMESPACE, name)] for name in ("a", "b"))
    assert (
        a
        == b
        == {
            ("amlops_compute_nodes", "idle"): 3.0,
            ("amlops_job_run_seconds", ""): 12.5,
            ("amlops_compute_nodes", "busy"): 5000.0,
        }
    )
    for key_a, key_b in zip(a, b, strict=True):
        assert key_a is key_b
    assert a[("amlops_compute_nodes", "idle")] is b[("amlops_compute_nodes", "idle")]
    assert len(gauges._values) == 1, "only small whole numbers are shared"
    samples = {
        (family.name, sample.labels["name"], sample.labels.get("state")): sample.value
        for family in gauges.collect()
        for sample in family.samples
    }
    assert samples[("amlops_compute_nodes", "b", "idle")] == 3.0
    assert samples[("amlops_job_run_seconds", "a", None)] == 12.5
