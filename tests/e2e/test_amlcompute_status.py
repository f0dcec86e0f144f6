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
from tests.support.objects import apply, condition, wait_condition, wait_for
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


STATUS_PATCH = "amlcomputes/status PATCH"


def _status_patches(k8s: testbed.Testbed) -> int:
    return testbed.apiserver_requests(k8s, ("amlcomputes",)).get(STATUS_PATCH, 0)


def test_apply_to_ready_costs_two_status_patches_however_long_azure_creates(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    """Issue 20 point 3, a quiet apiserver: one status write when the create goes (Reconciling Creating), one
    when the cluster is Ready. The passes that find Azure still Creating learn only transitional details the
    Ready pass replaces (provisioningState Creating, the condition messages), and write nothing; at a thousand
    objects each such write was one more PATCH and one more watch event for every watcher of the kind.

    Azure's clock stands still until the test moves it, so the operator looks at the Creating cluster as many
    times as the test waits for (counted on the emulator's listings), whatever the machine's speed. The count is
    the apiserver's own (``apiserver_request_total``): this test's operator is the only writer of AmlComputes."""
    azure = start_azure(speed=0)
    start_operator(namespace, extra_env=azure.operator_env())
    before = _status_patches(k8s)
    cname = compute_name()
    apply(k8s, namespace, manifest("quiet", cname))
    wait_condition(k8s, "amlcompute", "quiet", namespace, "Reconciling")
    azure.control("DELETE", "/stats")
    testbed.eventually(
        lambda: azure.operations().get(LISTS, 0) + azure.operations().get(GETS, 0) >= 3,
        what="three looks at the Creating cluster",
    )
    creating = testbed.get_object(k8s, "amlcompute", "quiet", namespace)
    assert creating is not None
    assert condition(creating, "Reconciling")["reason"] == "Creating"
    assert _status_patches(k8s) - before == 1, "only the create pass wrote while Azure was Creating"

    azure.control("POST", "/clock/advance", {"seconds": 600})
    ready = wait_condition(k8s, "amlcompute", "quiet", namespace, "Ready")
    assert _status_patches(k8s) - before == 2
    # Nothing the user needs is lost: the Ready write has what Azure says, and the transition times are true.
    status = ready["status"]
    assert status["provisioningState"] == "Succeeded"
    assert status["resourceId"]
    assert status["observedGeneration"] == ready["metadata"]["generation"]
    reconciling = condition(ready, "Reconciling")
    assert reconciling["status"] == "False"
    assert reconciling["lastTransitionTime"] == condition(ready, "Ready")["lastTransitionTime"]
    assert condition(ready, "Stalled")["lastTransitionTime"] == condition(creating, "Stalled")["lastTransitionTime"]
