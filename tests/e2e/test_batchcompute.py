"""BatchCompute end to end: attach through ARM, pools through the real azure-batch client, detach."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import yaml
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

import amlops_testbed as testbed
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY
from tests.support.objects import apply, condition, events, wait_condition, wait_gone
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator

from .test_amlcompute import WORKSPACE, WS_PATH, compute_name

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def manifest(name: str, compute: str, **spec: Any) -> str:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "BatchCompute",
        "metadata": {"name": name},
        "spec": {
            "workspace": WORKSPACE,
            "computeName": compute,
            "batchAccount": {"resourceGroup": "rg-amlops", "accountName": DEFAULT_BATCH_ACCOUNT},
            "batchCredentials": {"sharedKeySecretRef": {"name": "batch-key"}},
            **spec,
        },
    }
    return yaml.safe_dump(body)


def key_secret(k8s: testbed.Testbed, namespace: str, key: str = DEFAULT_BATCH_KEY) -> None:
    k8s.kubectl("create", "secret", "generic", "batch-key", "-n", namespace, f"--from-literal=key={key}")


def batch(azure: EmulatorProcess, call: Callable[[BatchClient], Awaitable[T]]) -> T:
    """``call`` with a Batch client of the emulator's account (shared key), run to its end."""

    async def run() -> T:
        async with BatchClient(
            f"{azure.batch_url}/{DEFAULT_BATCH_ACCOUNT}",
            AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY),
        ) as client:
            return await call(client)

    return asyncio.run(run())


def pools(azure: EmulatorProcess) -> dict[str, Any]:
    async def collect(client: BatchClient) -> dict[str, Any]:
        return {p.id: p async for p in client.list_pools()}

    return batch(azure, collect)


def resizes(azure: EmulatorProcess) -> int:
    return sum(n for op, n in azure.operations().items() if op.endswith("/resize"))


def test_attach_report_resize_and_detach(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    key_secret(k8s, namespace)
    # A pool somebody else made: reported, never touched.
    batch(
        azure,
        lambda c: c.create_pool(
            models.BatchPoolCreateOptions(
                {"id": "theirs", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 1,
                 "virtualMachineConfiguration": {"imageReference": {"publisher": "canonical", "offer": "x", "sku": "y"},
                                                 "nodeAgentSKUId": "batch.node.ubuntu 22.04"}}
            )
        ),
    )  # fmt: skip
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    pool = {"id": "scoring", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 4}
    apply(k8s, namespace, manifest("batch", cname, pools=[pool]))
    wait_condition(k8s, "batchcompute", "batch", namespace, "Ready")
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert code == 200
    assert body["properties"]["computeType"] == "Batch"
    assert body["properties"]["isAttachedCompute"] is True

    def idle_nodes() -> dict[str, Any] | None:
        obj = testbed.get_object(k8s, "batchcompute", "batch", namespace) or {}
        by_id = {p["id"]: p for p in (obj.get("status") or {}).get("pools", [])}
        scoring = by_id.get("scoring")
        return obj if scoring and scoring["nodeCounts"].get("idle") == 2 and "theirs" in by_id else None

    obj = testbed.eventually(idle_nodes, timeout=90, what="two idle nodes reported")
    by_id = {p["id"]: p for p in obj["status"]["pools"]}
    assert by_id["scoring"]["managed"] is True
    assert by_id["theirs"]["managed"] is False
    assert by_id["scoring"]["taskSlotsPerNode"] == 4
    assert obj["status"]["poolCount"] == 2
    table = k8s.kubectl("get", "batchcomputes", "-n", namespace)
    assert "ACCOUNT" in table
    assert DEFAULT_BATCH_ACCOUNT in table

    before = resizes(azure)
    k8s.kubectl(
        "patch", "batchcompute/batch", "-n", namespace, "--type=json",
        "-p", '[{"op":"replace","path":"/spec/pools/0/targetDedicatedNodes","value":3}]',
    )  # fmt: skip
    testbed.eventually(lambda: pools(azure)["scoring"].target_dedicated_nodes == 3, what="resized in Batch")
    wait_condition(k8s, "batchcompute", "batch", namespace, "Ready")
    assert resizes(azure) - before == 1

    k8s.kubectl("delete", "batchcompute/batch", "-n", namespace, "--wait=false")
    wait_gone(k8s, "batchcompute", "batch", namespace)
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404
    remaining = pools(azure)
    assert "theirs" in remaining
    assert remaining["theirs"].target_dedicated_nodes == 1
    assert "scoring" not in remaining or remaining["scoring"].state == "deleting"


def test_orphan_stays_attached(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    key_secret(k8s, namespace)
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("kept", cname, deletionPolicy="Orphan"))
    wait_condition(k8s, "batchcompute", "kept", namespace, "Ready")
    k8s.kubectl("delete", "batchcompute/kept", "-n", namespace)
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert code == 200
    assert body["properties"]["isAttachedCompute"] is True


def test_wrong_batch_key_is_stalled_authentication_failed(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    key_secret(k8s, namespace, key="d3Jvbmcta2V5")
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("badkey", compute_name()))
    obj = wait_condition(k8s, "batchcompute", "badkey", namespace, "Stalled")
    assert condition(obj, "Stalled")["reason"] == "AuthenticationFailed"


def test_missing_account_is_stalled_with_azures_code(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    key_secret(k8s, namespace)
    start_operator(namespace, extra_env=azure.operator_env())
    text = manifest("noacct", compute_name()).replace(
        f"accountName: {DEFAULT_BATCH_ACCOUNT}", "accountName: nosuchaccount"
    )
    apply(k8s, namespace, text)
    obj = wait_condition(k8s, "batchcompute", "noacct", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] not in ("", "WaitingForAzure")


def test_a_failed_attach_is_stalled_with_azures_error_in_provisioning_errors(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """An attach is a long-running operation; when Azure ends it Failed, the compute reads provisioningState Failed
    with ``properties.provisioningErrors`` (azure-rest-api-specs machinelearningservices 2020-08-01
    ``Compute.provisioningErrors``, "Errors during provisioning"; the seed prints ``provisioning_errors`` after
    the attach's ``wait_for_completion``). The emulator's asyncFailure fault ends the attach's operation so
    (C21). It was reported Ready, with provisioningErrors pruned by the apiserver: now Stalled with Azure's code,
    the errors in the status, no pool created through it, and its deletion detaches it."""
    key_secret(k8s, namespace)
    cname = compute_name()
    failure = {"code": "InternalServerError", "message": "The operation failed (injected by the emulator)."}
    azure.control("POST", "/faults", {"method": "PUT", "path": f"/computes/{cname}$", "asyncFailure": failure})
    start_operator(namespace, extra_env=azure.operator_env())
    pool = {"id": "failed-attach", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 1}
    apply(k8s, namespace, manifest("failing", cname, pools=[pool]))
    obj = wait_condition(k8s, "batchcompute", "failing", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert (stalled["reason"], stalled["message"]) == (failure["code"], failure["message"])
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["provisioningState"] == "Failed"
    assert obj["status"]["provisioningErrors"] == [failure]
    testbed.eventually(
        lambda: any(e["type"] == "Warning" for e in events(k8s, namespace, failure["code"])), what="a Warning Event"
    )
    assert "failed-attach" not in pools(azure)

    k8s.kubectl("delete", "batchcompute/failing", "-n", namespace, "--wait=false")
    wait_gone(k8s, "batchcompute", "failing", namespace)
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404
    assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 1, "a Failed attach is not retried"


def test_an_untagged_attach_is_adopted_only_with_adopt_true(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """An account attached outside amlops (no owner tag) is another's until ``spec.adopt`` says otherwise, as for
    an AmlCompute: Stalled NotOwned and left attached when the object goes; adopted, its pools are managed and
    the object's deletion detaches it."""
    key_secret(k8s, namespace)
    cname = compute_name()
    account = f"/subscriptions/{WORKSPACE['subscriptionId']}/resourceGroups/rg-amlops/providers/Microsoft.Batch"
    attach = {"computeType": "Batch", "resourceId": f"{account}/batchAccounts/{DEFAULT_BATCH_ACCOUNT}"}
    assert azure.arm("PUT", f"{WS_PATH}/computes/{cname}", {"location": "westeurope", "properties": attach})[0] == 201
    start_operator(namespace, extra_env=azure.operator_env())
    pool = {"id": "adopted-attach", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 1}

    apply(k8s, namespace, manifest("theirs", cname, pools=[pool]))
    stalled = condition(wait_condition(k8s, "batchcompute", "theirs", namespace, "Stalled"), "Stalled")
    assert stalled["reason"] == "NotOwned"
    assert "spec.adopt" in stalled["message"]
    k8s.kubectl("delete", "batchcompute/theirs", "-n", namespace, "--timeout=60s")
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 200, "a refused object's deletion detaches nothing"
    assert "adopted-attach" not in pools(azure)

    apply(k8s, namespace, manifest("adopter", cname, adopt=True, pools=[pool]))
    wait_condition(k8s, "batchcompute", "adopter", namespace, "Ready")
    assert "adopted-attach" in pools(azure)
    k8s.kubectl("delete", "batchcompute/adopter", "-n", namespace, "--wait=false")
    wait_gone(k8s, "batchcompute", "adopter", namespace)
    assert azure.arm("GET", f"{WS_PATH}/computes/{cname}")[0] == 404


def test_operator_killed_mid_attach_and_mid_detach_converges_without_duplicates(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    azure = start_azure(speed=0)
    key_secret(k8s, namespace)
    env = azure.operator_env()
    first = start_operator(namespace, extra_env=env)
    cname = compute_name()
    apply(
        k8s,
        namespace,
        manifest("crash", cname, pools=[{"id": "p1", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 1}]),
    )

    def attach_state() -> str | None:
        code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
        return body["properties"].get("provisioningState") if code == 200 else None

    testbed.eventually(lambda: attach_state() is not None, what="attach reached Azure")
    first.stop(signal.SIGKILL)
    second = start_operator(namespace, extra_env=env)
    azure.control("POST", "/clock/advance", {"seconds": 600})
    testbed.eventually(lambda: "p1" in pools(azure), what="managed pool created")
    azure.control("POST", "/clock/advance", {"seconds": 600})
    wait_condition(k8s, "batchcompute", "crash", namespace, "Ready")
    assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 1
    assert list(pools(azure)) == ["p1"]

    k8s.kubectl("delete", "batchcompute/crash", "-n", namespace, "--wait=false")
    testbed.eventually(lambda: azure.operations().get("MachineLearningCompute_Delete"), what="detach reached Azure")
    second.stop(signal.SIGKILL)
    start_operator(namespace, extra_env=env)
    azure.control("POST", "/clock/advance", {"seconds": 600})
    wait_gone(k8s, "batchcompute", "crash", namespace)
    assert attach_state() is None
    assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 1
