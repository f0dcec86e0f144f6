"""``amlops_resource_stalled{kind,namespace,name,reason}``: one series while a resource is Stalled, labelled with
the reason an alert fires on (AmlopsQuotaExceeded reads ``reason="QuotaExceeded"``), none once it is not."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

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
