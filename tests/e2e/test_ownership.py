"""Ownership and deletions that must end, end to end (real apiserver, operator process, ARM emulator): adoption
never takes over another object's compute, and a deletion under a missing parent completes (issue 13, points 4
and 12)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

import amlops_testbed as testbed
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT
from tests.support.objects import apply, condition, events, find_condition, wait_condition
from tests.support.processes import EmulatorProcess, StartOperator

from . import test_batchcompute
from .test_amlcompute import WORKSPACE, WS_PATH, azure_max_nodes, compute_name, manifest

pytestmark = pytest.mark.e2e
WRITES = ("MachineLearningCompute_CreateOrUpdate", "MachineLearningCompute_Update", "MachineLearningCompute_Delete")


def _owner_tag(azure: EmulatorProcess, cname: str) -> str | None:
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert code == 200, body
    return (body.get("tags") or {}).get("amlops.io-owner")


def test_adopt_never_takes_over_a_compute_another_existing_object_owns(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("first", cname, scaleSettings={"maxNodeCount": 2}))
    first = wait_condition(k8s, "amlcompute", "first", namespace, "Ready")
    first_tag = f"{namespace}.first.{first['metadata']['uid']}"
    assert _owner_tag(azure, cname) == first_tag

    # Another object names the same compute with adopt: true while its owner exists: Stalled NotOwned, and Azure
    # sees no write at all, neither while it is Stalled nor when it is deleted.
    azure.control("DELETE", "/stats")
    apply(k8s, namespace, manifest("second", cname, adopt=True, scaleSettings={"maxNodeCount": 5}))
    second = wait_condition(k8s, "amlcompute", "second", namespace, "Stalled")
    stalled = condition(second, "Stalled")
    assert stalled["reason"] == "NotOwned"
    assert first_tag in stalled["message"]
    k8s.kubectl("delete", "amlcomputes/second", "-n", namespace, "--timeout=60s")
    assert testbed.get_object(k8s, "amlcompute", "second", namespace) is None
    ops = azure.operations()
    assert not [w for w in WRITES if w in ops], f"a compute owned by another object was written: {ops}"
    assert _owner_tag(azure, cname) == first_tag
    _, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert body["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 2

    # Its owner goes with deletionPolicy Orphan: the compute keeps the tag of an object that no longer exists,
    # which adopt: true may take over (and deleting the adopter then deletes the compute).
    k8s.kubectl(
        "patch", "amlcompute/first", "-n", namespace, "--type=merge", "-p", '{"spec":{"deletionPolicy":"Orphan"}}'
    )
    k8s.kubectl("delete", "amlcompute/first", "-n", namespace, "--timeout=60s")
    assert _owner_tag(azure, cname) == first_tag
    apply(k8s, namespace, manifest("third", cname, adopt=True, scaleSettings={"maxNodeCount": 3}))
    wait_condition(k8s, "amlcompute", "third", namespace, "Ready")
    testbed.eventually(
        lambda: azure_max_nodes(azure, cname) == 3,
        what="the adopted compute scaled to the adopter's spec",
    )
    k8s.kubectl("delete", "amlcompute/third", "-n", namespace, "--timeout=60s")
    testbed.eventually(
        lambda: azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404, what="adopted compute deleted"
    )


@pytest.mark.parametrize("kind", ["amlcompute", "batchcompute"])
def test_deleting_an_object_whose_workspace_does_not_exist_completes(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess, kind: str
) -> None:
    """The emulator answers a compute under a missing workspace as ARM does: 404 ``ParentResourceNotFound``
    (azure-api-fidelity.md, "Missing workspace", from MicrosoftLearning/mslearn-azure-ml PR #27)."""
    start_operator(namespace, extra_env=azure.operator_env())
    typo = {**WORKSPACE, "name": "ws-amlpos"}
    if kind == "amlcompute":
        apply(k8s, namespace, manifest("typo", compute_name(), workspace=typo))
    else:
        test_batchcompute.key_secret(k8s, namespace)
        apply(k8s, namespace, test_batchcompute.manifest("typo", compute_name(), workspace=typo))
    stalled = testbed.eventually(
        lambda: (
            (c := find_condition(testbed.get_object(k8s, kind, "typo", namespace), "Stalled"))
            and c["status"] == "True"
            and c
        ),
        what=f"{kind}/typo Stalled",
    )
    assert stalled["reason"] == "ParentResourceNotFound"
    # kubectl delete waits for the object to be gone: nothing can exist under a missing parent.
    deleted = subprocess.run(
        ["kubectl", "delete", f"{kind}/typo", "-n", namespace, "--timeout=60s"],
        env=k8s.env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert testbed.get_object(k8s, kind, "typo", namespace) is None
    assert "MachineLearningCompute_Delete" not in azure.operations()

    def told() -> bool:
        return any("nothing to delete in Azure: ParentResourceNotFound" in e["message"] for e in events(k8s, namespace))

    if kind == "amlcompute":  # a BatchCompute reads a missing workspace as "nothing attached" and goes quietly
        testbed.eventually(told, what="an Event says why the deletion ended")


def test_an_amlcompute_never_acts_on_a_compute_of_another_type(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Found by the spec fuzz: an AmlCompute (adopt, reportNodes) named like an attached Batch compute was
    Stalled with listNodes' BadRequest and its deletion never ended. It is Stalled ComputeTypeMismatch, Azure
    sees no write, and deleting it leaves the attached compute as it was (the seed: detaching/deleting through
    the wrong type changes nothing)."""
    start_operator(namespace, extra_env=azure.operator_env())
    test_batchcompute.key_secret(k8s, namespace)
    cname = compute_name()
    apply(k8s, namespace, test_batchcompute.manifest("batch", cname))
    wait_condition(k8s, "batchcompute", "batch", namespace, "Ready")
    azure.control("DELETE", "/stats")
    apply(k8s, namespace, manifest("lookalike", cname, adopt=True, reportNodes=True))
    stalled = condition(wait_condition(k8s, "amlcompute", "lookalike", namespace, "Stalled"), "Stalled")
    assert stalled["reason"] == "ComputeTypeMismatch"
    assert "type Batch" in stalled["message"]
    k8s.kubectl("delete", "amlcompute/lookalike", "-n", namespace, "--timeout=60s")
    writes = [op for op in azure.operations() if op.split("_")[-1] in ("CreateOrUpdate", "Update", "Delete")]
    assert writes == [], writes
    status, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert status == 200
    assert body["properties"]["computeType"] == "Batch"


def _put_untagged(azure: EmulatorProcess, cname: str, compute: dict[str, Any]) -> dict[str, Any]:
    """A compute made outside amlops (no owner tag: adopt: true could take it over), once Azure has made it."""
    code, answer = azure.arm("PUT", f"{WS_PATH}/computes/{cname}", {"location": "westeurope", "properties": compute})
    assert code in (200, 201), answer

    def made() -> dict[str, Any] | None:
        code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
        return body if code == 200 and body["properties"]["provisioningState"] == "Succeeded" else None

    return dict(testbed.eventually(made, what=f"{cname} made in Azure"))


def _writes(azure: EmulatorProcess) -> list[str]:
    """ARM writes (by SDK operation id) and Batch data-plane writes (named by method and path) since the
    statistics were reset."""
    return [
        op for op in azure.operations()
        if op.split("_")[-1] in ("CreateOrUpdate", "Update", "Delete")
        or op.split(" ")[0] in ("POST", "PUT", "PATCH", "DELETE")
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["amlcompute", "batchcompute"])
def test_adopt_never_acts_on_an_untagged_compute_of_another_type(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess, kind: str
) -> None:
    """adopt: true takes over an untagged compute of its own type only. An AmlCompute named like an attached Batch
    account, or a BatchCompute named like a cluster, is Stalled ComputeTypeMismatch: Azure sees no write, no pool
    is made in the account, and deleting the object (deletionPolicy Delete, or Detach) changes nothing in Azure
    (the seed: ``AmlCompute.detach`` "is not supported", ``BatchCompute.delete`` "is not supported": each type
    goes its own way, never through the other's)."""
    start_operator(namespace, extra_env=azure.operator_env())
    test_batchcompute.key_secret(k8s, namespace)
    cname = compute_name()
    if kind == "amlcompute":
        account = f"/subscriptions/{WORKSPACE['subscriptionId']}/resourceGroups/rg-amlops/providers/Microsoft.Batch"
        foreign = _put_untagged(
            azure, cname, {"computeType": "Batch", "resourceId": f"{account}/batchAccounts/{DEFAULT_BATCH_ACCOUNT}"}
        )
        other = "Batch"
        text = manifest("lookalike", cname, adopt=True, reportNodes=True, scaleSettings={"maxNodeCount": 3})
    else:
        cluster = {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}}
        foreign = _put_untagged(azure, cname, {"computeType": "AmlCompute", "properties": cluster})
        other = "AmlCompute"
        pool = {"id": "lookalike", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 1, "adopt": True}
        text = test_batchcompute.manifest("lookalike", cname, adopt=True, pools=[pool])
    azure.control("DELETE", "/stats")

    apply(k8s, namespace, text)
    stalled = condition(wait_condition(k8s, kind, "lookalike", namespace, "Stalled"), "Stalled")
    assert stalled["reason"] == "ComputeTypeMismatch"
    assert f"type {other}" in stalled["message"]
    k8s.kubectl("delete", f"{kind}/lookalike", "-n", namespace, "--timeout=60s")
    assert testbed.get_object(k8s, kind, "lookalike", namespace) is None

    assert _writes(azure) == [], azure.operations()
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert code == 200
    assert body == foreign, "the foreign compute is as it was: type, tags, settings, modifiedOn"
    assert "lookalike" not in test_batchcompute.pools(azure)
