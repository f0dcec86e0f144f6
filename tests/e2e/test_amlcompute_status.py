"""AmlCompute status as fresh and full as azureml-core's ``get_status()`` and ``refresh_state()``, end to end (real
apiserver, operator process, ARM emulator through the real SDK).

``get_status()`` reports allocation_state_transition_time, creation_time, modified_time and errors (azureml-core
``AmlComputeStatus``); Azure's compute body carries them as ``properties.properties.allocationStateTransitionTime``,
``properties.createdOn``, ``properties.modifiedOn`` and ``properties.properties.errors`` (azure-rest-api-specs
machinelearningservices 2020-08-01 ``AmlComputeProperties``: errors is a list of ``MachineLearningServiceError``,
``{"error": {code, message, details}}``). ``refresh_state()`` reads the cluster as it is now: the
``amlops.io/reconcile-requested-at`` annotation does the same, with a GET of that compute rather than the shared
workspace listing.
"""

from __future__ import annotations

from typing import Any

import pytest

import amlops_testbed as testbed
from amlops.external.compute_arm import timestamp
from tests.support.objects import apply, wait_condition, wait_for
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator

from .test_amlcompute import WS_PATH, compute_name, manifest

pytestmark = pytest.mark.e2e
GETS = "MachineLearningCompute_Get"
LISTS = "MachineLearningCompute_ListByWorkspace"


def _azure(azure: EmulatorProcess, cname: str) -> dict[str, Any]:
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert code == 200, body
    return dict(body)


def test_a_requested_refresh_reads_the_cluster_afresh_and_the_status_shows_its_errors(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    """With a poll ceiling of ten minutes the shared listing may be that old for a steady cluster: a change made
    in Azure behind the operator's back shows only once asked for, and then at once, from a GET."""
    azure = start_azure(speed=0)  # Azure's clock stands still: nothing changes there unless the test changes it
    start_operator(namespace, extra_env={**azure.operator_env(), "AMLOPS_POLL_CEILING_SECONDS": "600"})
    cname = compute_name()
    # maxNodeCount 10 of 4 vCPUs each: more than the emulator's 24-vCPU standardDSv2Family quota allows.
    apply(k8s, namespace, manifest("cpu", cname, scaleSettings={"minNodeCount": 0, "maxNodeCount": 10}))
    testbed.eventually(
        lambda: azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 200, what="the create reached Azure"
    )
    azure.control("POST", "/clock/advance", {"seconds": 600})
    obj = wait_for(
        k8s, "amlcompute", "cpu", namespace,
        lambda o: (o.get("status") or {}).get("allocationState") == "Steady",
        what="a steady cluster reported",
    )  # fmt: skip
    wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready")
    before = _azure(azure, cname)
    status = obj["status"]
    assert status["createdOn"] == timestamp(before["properties"]["createdOn"])
    assert status["modifiedOn"] == timestamp(before["properties"]["modifiedOn"])
    steady_since = timestamp(before["properties"]["properties"]["allocationStateTransitionTime"])
    assert status["allocationStateTransitionTime"] == steady_since
    assert status["errors"] == []

    # Behind the operator's back: ten busy nodes asked for; the quota lets six come, Azure reports the rest.
    azure.control("DELETE", "/stats")
    azure.control("POST", "/arm/workload", {"computeId": f"{WS_PATH}/computes/{cname}", "busyNodes": 10})
    k8s.kubectl("annotate", "amlcompute/cpu", "-n", namespace, "amlops.io/reconcile-requested-at=refresh-1")

    def refreshed(o: dict[str, Any]) -> bool:
        s = o.get("status") or {}
        return s.get("lastHandledReconcileAt") == "refresh-1" and s.get("allocationState") == "Resizing"

    obj = wait_for(k8s, "amlcompute", "cpu", namespace, refreshed, what="the refresh shows Azure's change")
    assert azure.operations().get(GETS, 0) >= 1, "the refresh read the compute itself"
    after = _azure(azure, cname)
    status = obj["status"]
    assert status["targetNodeCount"] == after["properties"]["properties"]["targetNodeCount"] == 6
    cluster_errors = after["properties"]["properties"]["errors"]
    assert [e["code"] for e in status["errors"]] == [e["error"]["code"] for e in cluster_errors] == ["QuotaExceeded"]
    assert status["errors"][0]["message"] == cluster_errors[0]["error"]["message"]
    assert status["allocationStateTransitionTime"] == timestamp(
        after["properties"]["properties"]["allocationStateTransitionTime"]
    )
    assert status["allocationStateTransitionTime"] != steady_since
    assert status["modifiedOn"] == timestamp(after["properties"]["modifiedOn"]), "no operation ran: unchanged"

    # Resizing, the operator looks often (a listing each pass); with Azure standing still, none of these fields
    # moves, and no pass writes the status again.
    lists = azure.operations().get(LISTS, 0)
    testbed.eventually(lambda: azure.operations().get(LISTS, 0) >= lists + 3, what="three more listings")
    current = testbed.get_object(k8s, "amlcompute", "cpu", namespace)
    assert current is not None
    assert current["status"] == status, "a pass that learnt nothing new wrote the status (lastSyncTime included)"
