"""The operator process against the real apiserver with Azure out of reach (a closed loopback port): every
kind still gets observedGeneration at once and an honest Reconciling condition saying what it waits for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import amlops_testbed as testbed

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _reconciling(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if not obj:
        return None
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return next((c for c in status.get("conditions", []) if c["type"] == "Reconciling"), None)


@pytest.mark.parametrize(
    ("resource", "name", "reason"),
    [("batchcompute", "batch", "WaitingForAzure"), ("paralleljob", "score", "WaitingForCompute")],
)
def test_operator_writes_observed_generation_and_reconciling(
    k8s: testbed.Testbed, namespace: str, start_operator: Any, resource: str, name: str, reason: str
) -> None:
    start_operator(namespace)
    k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / f"{resource}.yaml"))
    condition = testbed.eventually(
        lambda: _reconciling(testbed.get_object(k8s, resource, name, namespace)),
        timeout=60,
        what=f"{resource}/{name} observed",
    )
    assert condition["status"] == "True"
    assert condition["reason"] == reason
    # kubectl wait understands the condition, as kstatus-based tools do.
    k8s.kubectl("wait", f"{resource}/{name}", "-n", namespace, "--for=condition=Reconciling", "--timeout=30s")
