"""AmlCompute ``updatePolicy``, end to end (real apiserver and its CEL rules, the operator process, the ARM
emulator through the real SDK).

Why a re-create at all: Azure takes an AmlCompute's properties only when it creates the cluster. A PUT on an
existing compute is accepted and its property changes ignored (Azure/bicep#17617 "computes@2025-04-01-preview
does not update properties", Azure/azure-rest-api-specs#18889 for vmSize; Terraform azurerm and Pulumi
``machinelearning.ComputeCluster``: "it can only be created and deleted"), so a new vmSize means a new cluster.
The emulator's clock stands still (``speed=0``): Azure stays Creating or Deleting until the test moves it, so
each step of a re-create is seen, and the operator killed, exactly where the test means.
"""

from __future__ import annotations

import json
import signal
import subprocess
from typing import Any

import pytest

import amlops_testbed as testbed
from amlops.external.amlcompute_recreate import CREATE_ONLY
from tests.support.objects import apply, condition, events, find_condition, observed, wait_for
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator

from .test_amlcompute import WS_PATH, compute_name, manifest

pytestmark = pytest.mark.e2e
DIGEST_TAG = "amlops.io-create-digest"
KEY_1 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC1 amlops@test"
KEY_2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC2 amlops@test"
NEW_SIZE = "Standard_D2_v2"


def _azure(azure: EmulatorProcess, cname: str) -> dict[str, Any] | None:
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    return body if code == 200 else None


def _state(azure: EmulatorProcess, cname: str) -> str | None:
    body = _azure(azure, cname)
    return body["properties"]["provisioningState"] if body else None


def _advance(azure: EmulatorProcess) -> None:
    azure.control("POST", "/clock/advance", {"seconds": 600})


def _patch(k8s: testbed.Testbed, namespace: str, name: str, spec: dict[str, Any], *, check: bool = True) -> str:
    return k8s.kubectl(
        "patch", f"amlcompute/{name}", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec}), check=check
    )


def _refusal(k8s: testbed.Testbed, namespace: str, name: str, spec: dict[str, Any]) -> str:
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _patch(k8s, namespace, name, spec)
    return str(refused.value.stderr)


def _story(k8s: testbed.Testbed, namespace: str, azure: EmulatorProcess, name: str) -> str:
    """What a failed assertion needs to be understood: Azure's operations, the Events, the object's status."""
    obj = testbed.get_object(k8s, "amlcompute", name, namespace) or {}
    posted = [f"{e.get('lastTimestamp')} {e['reason']}: {e.get('message')}" for e in events(k8s, namespace)]
    return f"operations {azure.operations()}\nevents {posted}\nstatus {obj.get('status')}"


def _reconciling(reason: str) -> Any:
    def ready(obj: dict[str, Any]) -> bool:
        found = find_condition(obj, "Reconciling")
        return observed(obj) and found is not None and found.get("reason") == reason

    return ready


def _recreated(obj: dict[str, Any]) -> bool:
    """The current spec is Ready and no re-create is under way any more."""
    ready = find_condition(obj, "Ready")
    status = obj.get("status") or {}
    return observed(obj) and ready is not None and ready["status"] == "True" and not status.get("recreating")


def _ready_cluster(k8s: testbed.Testbed, namespace: str, azure: EmulatorProcess, name: str, **spec: Any) -> str:
    cname = compute_name()
    apply(k8s, namespace, manifest(name, cname, updatePolicy="Recreate", **spec))
    testbed.eventually(lambda: _state(azure, cname) == "Creating", what="PUT reached Azure")
    _advance(azure)
    wait_for(k8s, "amlcompute", name, namespace, _recreated, what="Ready")
    return cname


def test_refuse_refuses_create_only_changes_and_names_the_policy_as_the_way_out(
    k8s: testbed.Testbed, namespace: str
) -> None:
    """The apiserver alone decides (no operator runs): the CRD's transition rules."""
    apply(k8s, namespace, manifest("refuse", compute_name()))
    message = _refusal(k8s, namespace, "refuse", {"vmSize": NEW_SIZE})
    assert "vmSize is immutable" in message
    assert "updatePolicy: Recreate" in message
    assert "adminUser is immutable" in _refusal(k8s, namespace, "refuse", {"adminUser": {"username": "u"}})

    # Recreate relaxes the create-only fields (in the same edit that asks for it, too) ...
    _patch(k8s, namespace, "refuse", {"updatePolicy": "Recreate", "vmPriority": "LowPriority"})
    # ... but never those that say which cluster this is.
    message = _refusal(k8s, namespace, "refuse", {"computeName": "cother"})
    assert "computeName is immutable" in message
    assert "updatePolicy" not in message
    workspace = {"subscriptionId": "00000000-0000-0000-0000-000000000001", "resourceGroup": "rg", "name": "ws-b"}
    assert "workspace is immutable" in _refusal(k8s, namespace, "refuse", {"workspace": workspace})
    # deletionProtection forbids deleting the cluster, which a re-create does.
    message = _refusal(k8s, namespace, "refuse", {"deletionProtection": True})
    assert "deletionProtection forbids" in message
    _patch(k8s, namespace, "refuse", {"updatePolicy": "Refuse", "deletionProtection": True})
    assert "deletionProtection forbids" in _refusal(k8s, namespace, "refuse", {"updatePolicy": "Recreate"})


def test_recreate_waits_for_busy_nodes_then_replaces_the_cluster_with_events(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    azure = start_azure(speed=0)
    start_operator(namespace, extra_env=azure.operator_env())
    admin = {"username": "azureuser", "sshPublicKey": KEY_1}
    scale = {"minNodeCount": 0, "maxNodeCount": 2}
    cname = _ready_cluster(k8s, namespace, azure, "rc", adminUser=admin, scaleSettings=scale)
    first = _azure(azure, cname)
    assert first is not None
    first_digest = first["tags"][DIGEST_TAG]
    obj = testbed.get_object(k8s, "amlcompute", "rc", namespace)
    assert obj is not None
    recorded = obj["status"]["createOnlyFields"]
    assert [entry.split("=")[0] for entry in recorded] == sorted(CREATE_ONLY), "every create-only field"
    assert KEY_1 not in json.dumps(obj["status"]), "digests, never values"

    # A job runs on one node (the emulator's workload control): the re-create must wait for it.
    azure.control("POST", "/arm/workload", {"computeId": f"{WS_PATH}/computes/{cname}", "busyNodes": 1})
    _advance(azure)
    testbed.eventually(
        lambda: (_azure(azure, cname) or {})["properties"]["properties"]["nodeStateCounts"]["runningNodeCount"] == 1,
        what="a node running a job",
    )
    # vmSize (Azure echoes it) and the admin's key (Azure does not: only the record knows it changed).
    _patch(k8s, namespace, "rc", {"vmSize": NEW_SIZE, "adminUser": {**admin, "sshPublicKey": KEY_2}})
    obj = wait_for(k8s, "amlcompute", "rc", namespace, _reconciling("WaitingForIdleCluster"), what="waiting")
    message = condition(obj, "Reconciling")["message"]
    assert "1 running or preparing node" in message
    assert f"vmSize standard_ds3_v2 → {NEW_SIZE.lower()}" in message
    assert "adminUser" in message
    assert obj["status"]["recreating"] in message
    assert azure.operations().get("MachineLearningCompute_Delete") is None, "never while a job runs"

    # The job ends: the cluster is deleted, and created anew once gone.
    azure.control("POST", "/arm/workload", {"computeId": f"{WS_PATH}/computes/{cname}", "busyNodes": 0})
    testbed.eventually(lambda: _state(azure, cname) == "Deleting", what="DELETE reached Azure")
    _advance(azure)
    testbed.eventually(lambda: _state(azure, cname) == "Creating", what="the new cluster's PUT reached Azure")
    _advance(azure)
    obj = wait_for(k8s, "amlcompute", "rc", namespace, _recreated, what="re-created and Ready")

    body = _azure(azure, cname)
    assert body is not None
    props = body["properties"]["properties"]
    assert props["vmSize"].lower() == NEW_SIZE.lower()
    assert props["userAccountCredentials"]["adminUserSshPublicKey"] == KEY_2
    assert body["tags"][DIGEST_TAG] != first_digest
    assert obj["status"]["createOnlyFields"] != recorded
    assert azure.operations()["MachineLearningCompute_Delete"] == 1
    assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 2
    for reason in ("WaitingForIdleCluster", "Recreating", "Deleted", "Recreated"):
        posted = events(k8s, namespace, reason)
        assert len(posted) == 1, f"{reason}: {posted}"
        assert "vmSize" in posted[0]["message"], reason


def test_operator_killed_at_each_step_of_a_recreate_finishes_it_exactly_once(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    azure = start_azure(speed=0)
    env = azure.operator_env()
    operator = start_operator(namespace, extra_env=env)
    cname = _ready_cluster(k8s, namespace, azure, "kill")
    _patch(k8s, namespace, "kill", {"vmSize": NEW_SIZE, "vmPriority": "LowPriority"})

    # 1. Killed right after the DELETE reached Azure (its status may not say so yet).
    testbed.eventually(lambda: _state(azure, cname) == "Deleting", what="DELETE reached Azure")
    operator.stop(signal.SIGKILL)

    # 2. Killed while Azure is still deleting: the next operator waits, never sends the DELETE again.
    operator = start_operator(namespace, extra_env=env)
    wait_for(k8s, "amlcompute", "kill", namespace, _reconciling("Deleting"), what="waiting for the delete")
    operator.stop(signal.SIGKILL)
    assert azure.operations().get("MachineLearningCompute_Delete") == 1, _story(k8s, namespace, azure, "kill")

    # 3. Killed right after the new cluster's PUT reached Azure.
    operator = start_operator(namespace, extra_env=env)
    _advance(azure)
    testbed.eventually(lambda: _state(azure, cname) == "Creating", what="the new cluster's PUT reached Azure")
    operator.stop(signal.SIGKILL)

    # The new cluster, Creating with the new values, is never taken for the old one: no second DELETE.
    start_operator(namespace, extra_env=env)
    _advance(azure)
    wait_for(k8s, "amlcompute", "kill", namespace, _recreated, what="re-created and Ready")
    body = _azure(azure, cname)
    assert body is not None
    assert body["properties"]["properties"]["vmSize"].lower() == NEW_SIZE.lower()
    assert body["properties"]["properties"]["vmPriority"] == "LowPriority"
    story = _story(k8s, namespace, azure, "kill")
    assert azure.operations().get("MachineLearningCompute_Delete") == 1, story
    assert azure.operations().get("MachineLearningCompute_CreateOrUpdate") == 2, story
    assert len(events(k8s, namespace, "Recreated")) == 1, story


def test_a_cluster_made_before_the_record_is_taken_as_the_spec_when_azure_agrees_then_recreated(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    """A cluster amlops did not create (no amlops.io-create-digest tag: made before this feature, or outside
    amlops and adopted) is not re-created on sight: its vmSize, vmPriority, subnet and location as Azure reports
    them agree with the spec, so the spec becomes its record, and a later change is re-created as any other."""
    azure = start_azure(speed=0)
    cname = compute_name()
    settings = {"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT1800S"}
    compute = {"computeType": "AmlCompute", "properties": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": settings}}
    code, answer = azure.arm("PUT", f"{WS_PATH}/computes/{cname}", {"location": "westeurope", "properties": compute})
    assert code in (200, 201), answer
    _advance(azure)
    testbed.eventually(lambda: _state(azure, cname) == "Succeeded", what="the cluster made outside amlops")

    start_operator(namespace, extra_env=azure.operator_env())
    scale = {"minNodeCount": 0, "maxNodeCount": 2}
    apply(k8s, namespace, manifest("old", cname, adopt=True, updatePolicy="Recreate", scaleSettings=scale))
    obj = wait_for(k8s, "amlcompute", "old", namespace, _recreated, what="adopted and Ready")
    assert [entry.split("=")[0] for entry in obj["status"]["createOnlyFields"]] == sorted(CREATE_ONLY)
    body = _azure(azure, cname)
    assert body is not None
    assert DIGEST_TAG not in (body.get("tags") or {})
    assert azure.operations().get("MachineLearningCompute_Delete") is None, "Azure agrees with the spec"

    _patch(k8s, namespace, "old", {"vmPriority": "LowPriority"})
    testbed.eventually(lambda: _state(azure, cname) == "Deleting", what="DELETE reached Azure")
    _advance(azure)
    testbed.eventually(lambda: _state(azure, cname) == "Creating", what="the new cluster's PUT reached Azure")
    _advance(azure)
    wait_for(k8s, "amlcompute", "old", namespace, _recreated, what="re-created and Ready")
    body = _azure(azure, cname)
    assert body is not None
    assert body["properties"]["properties"]["vmPriority"] == "LowPriority"
    assert DIGEST_TAG in body["tags"], "the new cluster is amlops' own, with its record"
    assert azure.operations()["MachineLearningCompute_Delete"] == 1
