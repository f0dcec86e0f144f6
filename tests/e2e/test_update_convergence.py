"""Write storms: an update Azure accepts but never applies is tried a bounded number of times, then Stalled
``UpdateDoesNotConverge`` with the diff; a new spec gets its own tries. Real apiserver, operator, ARM emulator
(its ``discard`` fault answers a PATCH as one that changed nothing, C6's recorded shape)."""

from __future__ import annotations

import json

import pytest

import amlops_testbed as testbed
from tests.support.objects import apply, condition, wait_condition
from tests.support.processes import EmulatorProcess, StartOperator

from .test_amlcompute import WS_PATH, compute_name, manifest

pytestmark = pytest.mark.e2e

PATCHES = "MachineLearningCompute_Update"


def requested_pass(k8s: testbed.Testbed, namespace: str, name: str, value: str) -> None:
    """Force one reconcile pass and wait until the operator has handled it."""
    k8s.kubectl(
        "annotate", f"amlcompute/{name}", "-n", namespace, f"amlops.io/reconcile-requested-at={value}", "--overwrite"
    )

    def handled() -> bool:
        obj = testbed.get_object(k8s, "amlcompute", name, namespace) or {}
        return (obj.get("status") or {}).get("lastHandledReconcileAt") == value

    testbed.eventually(handled, what=f"reconcile request {value} handled")


def test_a_patch_azure_never_applies_is_stalled_after_three_tries(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("cpu", cname, scaleSettings={"minNodeCount": 0, "maxNodeCount": 2}))
    wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready")

    azure.control("POST", "/faults", {"method": "PATCH", "path": f"/computes/{cname}$", "discard": True})
    azure.control("DELETE", "/stats")
    k8s.kubectl("scale", "amlcompute/cpu", "-n", namespace, "--replicas=5")
    stalled = wait_condition(k8s, "amlcompute", "cpu", namespace, "Stalled", timeout=90)
    found = condition(stalled, "Stalled")
    assert found["reason"] == "UpdateDoesNotConverge"
    assert found["message"] == ("3 updates left Azure still differing from the spec: scaleSettings.maxNodeCount 2 → 5")
    assert stalled["status"]["updateAttempts"]["count"] == 3
    assert azure.operations().get(PATCHES) == 3

    # Later passes (the Stalled recheck, or a requested one) look, and write nothing more.
    requested_pass(k8s, namespace, "cpu", "storm-1")
    requested_pass(k8s, namespace, "cpu", "storm-2")
    assert azure.operations().get(PATCHES) == 3
    body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")[1]
    assert body["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 2

    # A new generation, with Azure applying changes again: tried afresh, and it converges.
    azure.control("DELETE", "/faults")
    k8s.kubectl(
        "patch", "amlcompute/cpu", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"scaleSettings": {"maxNodeCount": 6}}}),
    )  # fmt: skip
    ready = wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready", timeout=90)
    assert ready["status"].get("updateAttempts") is None
    body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")[1]
    assert body["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 6
