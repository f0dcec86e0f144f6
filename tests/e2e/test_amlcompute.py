"""AmlCompute end to end: real apiserver, the operator process, the ARM emulator through the real SDK."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed
from tests.support.objects import apply, condition, events, wait_condition, wait_gone
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator

pytestmark = pytest.mark.e2e
WORKSPACE = {
    "subscriptionId": "00000000-0000-0000-0000-000000000001",
    "resourceGroup": "rg-amlops",
    "name": "ws-amlops",
}
WS_PATH = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-amlops"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws-amlops"
)


def manifest(name: str, compute: str, **spec: Any) -> str:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "AmlCompute",
        "metadata": {"name": name},
        "spec": {"workspace": WORKSPACE, "computeName": compute, "vmSize": "STANDARD_DS3_V2", **spec},
    }
    return yaml.safe_dump(body)


def azure_max_nodes(azure: EmulatorProcess, cname: str) -> int:
    """The cluster's maxNodeCount as Azure (the emulator) has it now."""
    body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")[1]
    return int(body["properties"]["properties"]["scaleSettings"]["maxNodeCount"])


def compute_name() -> str:
    return "c" + uuid.uuid4().hex[:8]


def test_apply_becomes_ready_with_the_emulators_node_counts_then_scales_and_deletes(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("cpu", cname, scaleSettings={"minNodeCount": 1, "maxNodeCount": 3}))
    obj = wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready")
    wait_condition(k8s, "amlcompute", "cpu", namespace, "MinNodesAvailable")
    status_code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert status_code == 200
    assert body["tags"]["amlops.io-owner"] == f"{namespace}.cpu.{obj['metadata']['uid']}"
    current = testbed.get_object(k8s, "amlcompute", "cpu", namespace)
    assert current is not None
    status = current["status"]
    assert status["resourceId"].endswith(f"/computes/{cname}")
    assert status["provisioningState"] == "Succeeded"
    assert status["currentNodeCount"] >= 1
    assert status["quota"]["family"] == "standardDSv2Family"

    # kubectl scale goes through the scale subresource to maxNodeCount: exactly one PATCH.
    azure.control("DELETE", "/stats")
    k8s.kubectl("scale", "amlcompute/cpu", "-n", namespace, "--replicas=5")
    testbed.eventually(
        lambda: azure_max_nodes(azure, cname) == 5,
        what="maxNodeCount 5 in Azure",
    )
    wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready")
    assert azure.operations().get("MachineLearningCompute_Update") == 1
    assert azure.operations().get("MachineLearningCompute_CreateOrUpdate") is None

    # kubectl patch of the idle time: one more PATCH, never a PUT.
    k8s.kubectl(
        "patch",
        "amlcompute/cpu",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"scaleSettings": {"nodeIdleTimeBeforeScaleDown": 300}}}),
    )
    testbed.eventually(
        lambda: (
            azure.arm("GET", f"{WS_PATH}/computes/{cname}")[1]["properties"]["properties"]["scaleSettings"][
                "nodeIdleTimeBeforeScaleDown"
            ]
            in ("PT300S", "PT5M")
        ),
        what="idle time in Azure",
    )
    assert azure.operations().get("MachineLearningCompute_Update") == 2
    assert azure.operations().get("MachineLearningCompute_CreateOrUpdate") is None

    k8s.kubectl("delete", "amlcompute/cpu", "-n", namespace, "--wait=false")
    wait_gone(k8s, "amlcompute", "cpu", namespace)
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404


def test_orphan_leaves_the_cluster_in_azure(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("keep", cname, deletionPolicy="Orphan"))
    wait_condition(k8s, "amlcompute", "keep", namespace, "Ready")
    k8s.kubectl("delete", "amlcompute/keep", "-n", namespace, "--wait=false")
    wait_gone(k8s, "amlcompute", "keep", namespace)
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert code == 200
    assert body["properties"]["provisioningState"] == "Succeeded"


def test_an_untagged_cluster_is_adopted_only_with_adopt_true(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    cname = compute_name()
    put = {
        "location": "westeurope",
        "properties": {
            "computeType": "AmlCompute",
            "properties": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}},
        },
    }
    assert azure.arm("PUT", f"{WS_PATH}/computes/{cname}", put)[0] == 201
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("theirs", cname, scaleSettings={"minNodeCount": 0, "maxNodeCount": 4}))
    obj = wait_condition(k8s, "amlcompute", "theirs", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "NotOwned"
    assert "spec.adopt" in stalled["message"]
    k8s.kubectl("delete", "amlcompute/theirs", "-n", namespace)
    # Deleting the refused object must leave the foreign cluster alone.
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 200

    apply(k8s, namespace, manifest("adopted", cname, adopt=True, scaleSettings={"minNodeCount": 0, "maxNodeCount": 4}))
    wait_condition(k8s, "amlcompute", "adopted", namespace, "Ready")
    _, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert body["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 4


def test_missing_workspace_is_stalled_with_azures_code(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    text = manifest("nows", compute_name()).replace("ws-amlops", "ws-missing")
    apply(k8s, namespace, text)
    obj = wait_condition(k8s, "amlcompute", "nows", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "ParentResourceNotFound"
    assert any(e["type"] == "Warning" for e in events(k8s, namespace, "ParentResourceNotFound"))


def test_quota_numbers_are_in_the_condition_message(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("big", compute_name(), scaleSettings={"minNodeCount": 0, "maxNodeCount": 50}))
    obj = wait_condition(k8s, "amlcompute", "big", namespace, "QuotaSufficient", status="False")
    quota = condition(obj, "QuotaSufficient")
    assert "maxNodeCount 50 x 4 vCPUs = 200 vCPUs" in quota["message"]
    assert "standardDSv2Family quota 24" in quota["message"]


def test_unknown_vm_size_is_stalled(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("odd", compute_name(), vmSize="STANDARD_NOPE_V9"))
    obj = wait_condition(k8s, "amlcompute", "odd", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "VmSizeNotAvailable"
    assert azure.operations().get("MachineLearningCompute_CreateOrUpdate") is None
    # Nothing was created, so nothing holds the deletion (the pre-flight judges creates, not deletions).
    k8s.kubectl("delete", "amlcompute/odd", "-n", namespace, "--wait=false")
    wait_gone(k8s, "amlcompute", "odd", namespace)


def _warning_events(k8s: testbed.Testbed, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in events(k8s, namespace, reason) if e["type"] == "Warning"]


def test_a_size_azure_refuses_after_accepting_the_create_is_stalled_with_the_supported_sizes(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Azure accepts the PUT of an unsupported size and fails the create: InvalidPropertyValue "... is not a
    supported VM size", the supported sizes in the error's details (Azure/MachineLearningNotebooks#1169). The
    pre-flight cannot know here (vmSizes refused): the asynchronous failure alone stalls the object, with the
    same reason as the pre-flight's, the size and the supported list in the message, and a Warning Event."""
    azure.control("POST", "/faults", {"method": "GET", "path": "/vmSizes$", "status": 400, "code": "BadRequest"})
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("b2s", cname, vmSize="Standard_B2s"))
    obj = wait_condition(k8s, "amlcompute", "b2s", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "VmSizeNotAvailable"
    assert stalled["message"].startswith("InvalidPropertyValue: The specified value Standard_B2s for property")
    assert "SupportedVMSizes: " in stalled["message"]
    assert "STANDARD_DS3_V2" in stalled["message"]
    assert obj["status"]["provisioningState"] == "Failed"
    assert azure.operations().get("MachineLearningCompute_CreateOrUpdate") == 1, "created once, never again"
    testbed.eventually(lambda: _warning_events(k8s, namespace, "VmSizeNotAvailable"), what="a Warning Event")
    # The failed cluster exists in Azure and is ours: deleting the object deletes it.
    k8s.kubectl("delete", "amlcompute/b2s", "-n", namespace, "--wait=false")
    wait_gone(k8s, "amlcompute", "b2s", namespace)
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404


def test_a_quota_azure_reports_as_bad_request_is_stalled_quota_exceeded(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Azure fails a create its vCPU quota cannot hold with code BadRequest and a message naming the quota
    ("The specified subscription has a Standard DSv2 family vCPU quota of 24 and cannot accomodate ...":
    dotnet/machinelearning-modelbuilder#2140, Azure/mlops-v2#81). amlops classifies it itself: Stalled
    ``QuotaExceeded`` (what alerts and Argo CD read), Azure's code and message kept in the condition."""
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("nocores", cname, scaleSettings={"minNodeCount": 7, "maxNodeCount": 7}))
    obj = wait_condition(k8s, "amlcompute", "nocores", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "QuotaExceeded"
    assert stalled["message"].startswith(
        "BadRequest: The specified subscription has a Standard DSv2 family vCPU quota of 24 and cannot accomodate "
        "for at least 7 requested managed compute nodes which maps to 28 vCPUs."
    )
    assert obj["status"]["provisioningErrors"][0]["code"] == "BadRequest"
    testbed.eventually(lambda: _warning_events(k8s, namespace, "QuotaExceeded"), what="a Warning Event")


@pytest.mark.parametrize("key", ["amlCompute", "value"])
def test_vm_sizes_are_read_whatever_the_emulator_gives_2020_08_01(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure, key: str
) -> None:
    """At api-version 2020-08-01 the swagger names the vmSizes list ``amlCompute`` and the official example
    (``stable/2020-08-01/examples/ListVMSizesResult.json``) ``value``; every version from 2022-05-01 says ``value``.
    The operator asks at 2025-12-01, so whichever key the emulator serves 2020-08-01, the list it reads is
    ``value`` (``vm_sizes_of`` reads either: tests/unit/test_amlcompute_map.py); an operator reading the other key
    would see no sizes and stall every AmlCompute ``VmSizeNotAvailable``. Here a listed size becomes Ready and an
    unlisted one is refused by the pre-flight before any PUT."""
    azure = start_azure(60.0, "--vm-sizes-key", key)
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("listed", compute_name()))
    apply(k8s, namespace, manifest("unlisted", compute_name(), vmSize="Standard_Q99_v9"))
    wait_condition(k8s, "amlcompute", "listed", namespace, "Ready")
    stalled = condition(wait_condition(k8s, "amlcompute", "unlisted", namespace, "Stalled"), "Stalled")
    assert stalled["reason"] == "VmSizeNotAvailable"
    assert azure.operations().get("MachineLearningCompute_CreateOrUpdate") == 1, "only the listed size was PUT"


def test_a_delete_answered_204_is_no_error(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Newer api-versions document 204 for the DELETE of a compute that is not there (``Compute_Delete`` from
    stable/2022-05-01; the emulator answers so there: tests/emulator/arm/test_c22_api_versions.py), which SDK
    1.0.1's 2020-08-01 code raises as an unexpected status. The operator reads it as gone, never as a failure.
    Here a fault answers the first DELETE 204 while the cluster stays listed (ARM's list may lag a deletion):
    the operator, looking again, finds it and deletes it for real. Two DELETEs, never Stalled, gone."""
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("vanishing", cname))
    wait_condition(k8s, "amlcompute", "vanishing", namespace, "Ready")
    azure.control("POST", "/faults", {"method": "DELETE", "path": f"/computes/{cname}$", "status": 204, "count": 1})
    azure.control("DELETE", "/stats")
    k8s.kubectl("delete", "amlcompute/vanishing", "-n", namespace, "--wait=false")
    wait_gone(k8s, "amlcompute", "vanishing", namespace)
    assert azure.operations().get("MachineLearningCompute_Delete") == 2
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404
    # Read as an error, the 204 showed as Reconciling "Http204: Operation returned an invalid status 'No
    # Content'" (an Event) and was retried after a back-off.
    reasons = {e["reason"] for e in events(k8s, namespace)}
    assert "Http204" not in reasons, reasons
    assert not [e for e in events(k8s, namespace) if e["type"] == "Warning"], "the 204 was no failure"
