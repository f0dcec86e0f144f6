"""AmlCompute policies, crashes and secrets, end to end (real apiserver, operator process, ARM emulator)."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

import amlops_testbed as testbed
from tests.support.objects import apply, condition, events, wait_condition, wait_gone
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator

from .test_amlcompute import WS_PATH, azure_max_nodes, compute_name, manifest

pytestmark = pytest.mark.e2e


def _azure_state(azure: EmulatorProcess, cname: str) -> str | None:
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    return body["properties"]["provisioningState"] if code == 200 else None


def test_operator_killed_mid_create_and_mid_delete_never_writes_twice(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    azure = start_azure(speed=0)  # a stopped clock: Azure stays in Creating/Deleting until the test moves it
    env = azure.operator_env()
    first = start_operator(namespace, extra_env=env)
    cname = compute_name()
    apply(k8s, namespace, manifest("crash", cname))
    testbed.eventually(lambda: _azure_state(azure, cname) == "Creating", what="PUT reached Azure")
    first.stop(signal.SIGKILL)

    second = start_operator(namespace, extra_env=env)
    # The new operator sees the cluster still Creating (its saved operation, or GET) and waits.
    wait_condition(k8s, "amlcompute", "crash", namespace, "Reconciling")
    azure.control("POST", "/clock/advance", {"seconds": 600})
    wait_condition(k8s, "amlcompute", "crash", namespace, "Ready")
    assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 1

    k8s.kubectl("delete", "amlcompute/crash", "-n", namespace, "--wait=false")
    testbed.eventually(lambda: _azure_state(azure, cname) == "Deleting", what="DELETE reached Azure")
    second.stop(signal.SIGKILL)
    start_operator(namespace, extra_env=env)
    azure.control("POST", "/clock/advance", {"seconds": 600})
    wait_gone(k8s, "amlcompute", "crash", namespace)
    assert _azure_state(azure, cname) is None
    assert azure.operations()["MachineLearningCompute_Delete"] == 1
    assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 1


def test_a_429_storm_converges_and_retry_after_is_honoured(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    storm = 4
    azure.control(
        "POST",
        "/faults",
        {
            "method": "GET",
            "path": "/computes",
            "status": 429,
            "code": "TooManyRequests",
            "retryAfter": 1,
            "count": storm,
        },
    )
    azure.control("DELETE", "/stats")
    started = time.monotonic()
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("storm", compute_name()))
    wait_condition(k8s, "amlcompute", "storm", namespace, "Ready", timeout=90)
    elapsed = time.monotonic() - started
    stats = azure.control("GET", "/stats")
    throttled = sum(op["statuses"].get("429", 0) for op in stats["operations"].values())
    assert throttled == storm
    # Each 429 asked for a 1 s pause: the storm cannot have been ridden through faster than that.
    assert elapsed >= storm - 1
    # And nobody hammered: the GETs of the compute are the storm plus a handful of successful polls.
    gets = sum(op["count"] for name, op in stats["operations"].items() if name.startswith("MachineLearningCompute_Get"))
    lists = stats["operations"].get("MachineLearningCompute_ListByWorkspace", {}).get("count", 0)
    assert gets + lists <= storm + 15


def test_admin_password_never_appears_in_logs_events_or_status(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    password = f"Pw-{uuid.uuid4().hex}"
    k8s.kubectl("create", "secret", "generic", "admin", "-n", namespace, f"--from-literal=password={password}")
    operator = start_operator(namespace, extra_env=azure.operator_env())
    apply(
        k8s,
        namespace,
        manifest(
            "secretive", compute_name(), adminUser={"username": "azureuser", "passwordSecretRef": {"name": "admin"}}
        ),
    )
    wait_condition(k8s, "amlcompute", "secretive", namespace, "Ready")
    k8s.kubectl("annotate", "amlcompute/secretive", "-n", namespace, "amlops.io/reconcile-requested-at=now-1")
    testbed.eventually(
        lambda: (
            (testbed.get_object(k8s, "amlcompute", "secretive", namespace) or {})
            .get("status", {})
            .get("lastHandledReconcileAt")
            == "now-1"
        ),
        what="reconcile request echoed",
    )
    places = {
        "operator log": operator.output(),
        "events": k8s.kubectl("get", "events", "-n", namespace, "-o", "yaml"),
        "object": k8s.kubectl("get", "amlcompute", "secretive", "-n", namespace, "-o", "yaml"),
        "emulator log": azure.log.read_text(errors="replace"),
    }
    for where, text in places.items():
        assert password not in text, f"the admin password leaked into the {where}"


def test_missing_password_secret_is_stalled(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    apply(
        k8s,
        namespace,
        manifest(
            "nosecret", compute_name(), adminUser={"username": "azureuser", "passwordSecretRef": {"name": "absent"}}
        ),
    )
    obj = wait_condition(k8s, "amlcompute", "nosecret", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "SecretNotFound"


def test_observe_only_reports_and_never_writes(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    cname = compute_name()
    body = {
        "location": "westeurope",
        "properties": {
            "computeType": "AmlCompute",
            "properties": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}},
        },
    }
    assert azure.arm("PUT", f"{WS_PATH}/computes/{cname}", body)[0] == 201
    testbed.eventually(lambda: _azure_state(azure, cname) == "Succeeded", what="cluster created")
    azure.control("DELETE", "/stats")
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("watch", cname, managementPolicy="ObserveOnly", scaleSettings={"maxNodeCount": 9}))
    obj = wait_condition(k8s, "amlcompute", "watch", namespace, "Ready")
    assert obj["status"]["provisioningState"] == "Succeeded"
    k8s.kubectl("delete", "amlcompute/watch", "-n", namespace)
    ops = azure.operations()
    for write in (
        "MachineLearningCompute_CreateOrUpdate",
        "MachineLearningCompute_Update",
        "MachineLearningCompute_Delete",
    ):
        assert write not in ops, f"ObserveOnly wrote to Azure: {write}"
    assert _azure_state(azure, cname) == "Succeeded"


def test_paused_writes_nothing_until_unpaused(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("pause", cname, scaleSettings={"maxNodeCount": 2}))
    wait_condition(k8s, "amlcompute", "pause", namespace, "Ready")
    k8s.kubectl("annotate", "amlcompute/pause", "-n", namespace, "amlops.io/paused=true")
    azure.control("DELETE", "/stats")
    k8s.kubectl(
        "patch",
        "amlcompute/pause",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"scaleSettings":{"maxNodeCount":3}}}',
    )
    obj = wait_condition(k8s, "amlcompute", "pause", namespace, "Reconciling", status="False")
    assert condition(obj, "Reconciling")["reason"] == "Paused"
    assert "MachineLearningCompute_Update" not in azure.operations()
    k8s.kubectl("annotate", "amlcompute/pause", "-n", namespace, "amlops.io/paused-")
    testbed.eventually(
        lambda: azure_max_nodes(azure, cname) == 3,
        what="maxNodeCount 3 after unpausing",
    )


def test_identity_and_node_report(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(
        k8s, namespace, manifest("ident", cname, scaleSettings={"minNodeCount": 2, "maxNodeCount": 2}, reportNodes=True)
    )
    wait_condition(k8s, "amlcompute", "ident", namespace, "MinNodesAvailable")
    obj = testbed.eventually(
        lambda: (
            (o := testbed.get_object(k8s, "amlcompute", "ident", namespace)) and o["status"].get("nodeCount") == 2 and o
        ),
        what="two nodes reported",
    )
    assert len(obj["status"]["nodes"]) == 2
    assert all(n["nodeId"] and n["privateIpAddress"] for n in obj["status"]["nodes"])

    k8s.kubectl(
        "patch",
        "amlcompute/ident",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"identity":{"type":"SystemAssigned"}}}',
    )
    obj = testbed.eventually(
        lambda: (
            (o := testbed.get_object(k8s, "amlcompute", "ident", namespace))
            and (o["status"].get("identity") or {}).get("principalId")
            and o
        ),
        what="system-assigned identity reported",
    )
    code, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert body["identity"]["type"] == "SystemAssigned"
    assert body["identity"]["principalId"] == obj["status"]["identity"]["principalId"]

    k8s.kubectl(
        "patch", "amlcompute/ident", "-n", namespace, "--type=merge", "-p", '{"spec":{"identity":{"type":"None"}}}'
    )
    testbed.eventually(
        lambda: (
            (azure.arm("GET", f"{WS_PATH}/computes/{cname}")[1].get("identity") or {"type": "None"})["type"] == "None"
        ),
        what="identity removed",
    )
    assert events(k8s, namespace, "Updating")
    del code
