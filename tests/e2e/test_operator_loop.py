"""The operator process against the real apiserver with Azure out of reach (a closed loopback port): every
kind still gets observedGeneration at once and an honest Reconciling condition saying what it waits for."""

from __future__ import annotations

from pathlib import Path

import pytest

import amlops_testbed as testbed
from tests.support.objects import condition, find_condition, observed, wait_for
from tests.support.processes import StartOperator

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.mark.parametrize(
    ("resource", "name", "reason"),
    [("batchcompute", "batch", "WaitingForAzure"), ("paralleljob", "score", "WaitingForCompute")],
)
def test_operator_writes_observed_generation_and_reconciling(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, resource: str, name: str, reason: str
) -> None:
    start_operator(namespace)
    k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / f"{resource}.yaml"))
    obj = wait_for(
        k8s,
        resource,
        name,
        namespace,
        lambda o: observed(o) and find_condition(o, "Reconciling"),
        what="observed",
        timeout=60,
    )
    reconciling = condition(obj, "Reconciling")
    assert reconciling["status"] == "True"
    assert reconciling["reason"] == reason
    # kubectl wait understands the condition, as kstatus-based tools do.
    k8s.kubectl("wait", f"{resource}/{name}", "-n", namespace, "--for=condition=Reconciling", "--timeout=30s")
