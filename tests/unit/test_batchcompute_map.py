"""BatchCompute's pure mappings, case by case: the attach body (azureml-core ``BatchCompute.attach_configuration``
→ ARM ``computeType: Batch``, azure-rest-api-specs 2020-08-01 ``BatchCompute`` definition), the attached
compute's status, Batch pool bodies (Batch REST ``Pool - Add``) and the pools' status from
``list_pool_node_counts`` (Batch REST ``Account - List Pool Node Counts``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from amlops.api.batchcompute import BatchComputeSpec, ManagedPool
from amlops.external import batchcompute_map as m

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
WORKSPACE = {"subscriptionId": SUB, "resourceGroup": "rg", "name": "ws-1"}
ACCOUNT_ID = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct"
OWNER = "team-a.batch.6f1c6b7e-0000-4000-8000-000000000001"


def spec(**fields: Any) -> BatchComputeSpec:
    return BatchComputeSpec.model_validate({"workspace": WORKSPACE, **fields})


@dataclass(frozen=True)
class Account:
    reason: str
    fields: dict[str, Any]
    account_id: str


ACCOUNTS = [
    Account("seed's (resource_group, account_name) in the workspace's subscription",
            {"batchAccount": {"resourceGroup": "batch-rg", "accountName": "acct"}}, ACCOUNT_ID),
    Account("seed's resource_id as given", {"resourceId": ACCOUNT_ID.replace("batch-rg", "other")},
            ACCOUNT_ID.replace("batch-rg", "other")),
]  # fmt: skip


@pytest.mark.parametrize("case", ACCOUNTS, ids=lambda c: c.reason)
def test_account_id_and_name(case: Account) -> None:
    s = spec(**case.fields)
    assert m.account_id(s) == case.account_id
    assert m.account_name(s) == "acct"


@pytest.mark.parametrize(
    ("reason", "fields", "template", "location", "expected"),
    [
        ("Azure's template with the compute's location", {}, "https://{account}.{location}.batch.azure.com",
         "westeurope", "https://acct.westeurope.batch.azure.com"),
        ("the emulator's path-style template", {}, "https://127.0.0.1:8444/{account}/", None,
         "https://127.0.0.1:8444/acct"),
        ("spec.endpoint wins, without its trailing slash", {"endpoint": "https://acct.eastus.batch.azure.com/"},
         "https://{account}.{location}.batch.azure.com", "westeurope", "https://acct.eastus.batch.azure.com"),
    ],
)  # fmt: skip
def test_endpoint(reason: str, fields: dict[str, Any], template: str, location: str | None, expected: str) -> None:
    s = spec(batchAccount={"resourceGroup": "batch-rg", "accountName": "acct"}, **fields)
    assert m.endpoint(s, template, location) == expected, reason


def test_attach_body_names_the_account_and_carries_the_owner() -> None:
    s = spec(resourceId=ACCOUNT_ID, description="scoring", tags={"team": "a", "amlops.io-owner": "forged"})
    body = m.attach_body(s, owner=OWNER, location="westeurope")
    assert body == {
        "location": "westeurope",
        "tags": {"team": "a", "amlops.io-owner": OWNER},
        "properties": {"computeType": "Batch", "resourceId": ACCOUNT_ID, "description": "scoring"},
    }
    assert "description" not in m.attach_body(spec(resourceId=ACCOUNT_ID), owner=OWNER, location="w")["properties"]


def test_attached_status_and_account() -> None:
    body: dict[str, Any] = {
        "id": "/subscriptions/s/.../computes/batch",
        "location": "westeurope",
        "properties": {
            "computeType": "Batch",
            "provisioningState": "Succeeded",
            "isAttachedCompute": True,
            "resourceId": ACCOUNT_ID,
            "provisioningErrors": [{"error": {"code": "Conflict", "message": "m"}}],
        },
    }
    assert m.attached_status(body) == {
        "resourceId": body["id"],
        "provisioningState": "Succeeded",
        "isAttachedCompute": True,
        "clusterLocation": "westeurope",
        "provisioningErrors": [{"code": "Conflict", "message": "m"}],
    }
    assert m.attached_account(body) == ACCOUNT_ID
    with_location = {**body, "properties": {**body["properties"], "computeLocation": "eastus"}}
    assert m.attached_status(with_location)["clusterLocation"] == "eastus", "the compute's own location wins"


def test_pool_body_is_batch_pool_add_with_the_owner_in_metadata() -> None:
    pool = ManagedPool.model_validate(
        {
            "id": "cpu",
            "vmSize": "STANDARD_D2S_V3",
            "targetDedicatedNodes": 2,
            "targetLowPriorityNodes": 1,
            "taskSlotsPerNode": 4,
            "startTask": {"commandLine": "/bin/true", "environment": {"A": "1"}},
        }
    )
    body = m.pool_body(pool, OWNER)
    assert body["id"] == "cpu"
    assert (body["targetDedicatedNodes"], body["targetLowPriorityNodes"], body["taskSlotsPerNode"]) == (2, 1, 4)
    assert body["virtualMachineConfiguration"] == {
        "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts",
                           "version": "latest"},
        "nodeAgentSKUId": "batch.node.ubuntu 22.04",
    }  # fmt: skip
    assert body["metadata"] == [{"name": "amlops.io-owner", "value": OWNER}]
    assert m.pool_owner(body) == OWNER
    assert body["startTask"] == {
        "commandLine": "/bin/true",
        "waitForSuccess": True,
        "environmentSettings": [{"name": "A", "value": "1"}],
    }
    assert "startTask" not in m.pool_body(ManagedPool(id="p", vm_size="x"), OWNER)
    assert m.pool_owner({"id": "foreign"}) is None


def test_pools_status_counts_nodes_per_state_and_marks_managed_pools() -> None:
    pools = [
        {"id": "zeta", "vmSize": "A", "allocationState": "resizing", "currentDedicatedNodes": 1,
         "targetDedicatedNodes": 3},
        {"id": "alpha", "vmSize": "B", "allocationState": "steady", "currentDedicatedNodes": 2,
         "currentLowPriorityNodes": 1, "targetDedicatedNodes": 2, "targetLowPriorityNodes": 1, "taskSlotsPerNode": 2},
    ]  # fmt: skip
    counts = {
        "alpha": {
            "dedicated": {"idle": 1, "running": 1, "total": 2, "poolId": "ignored"},
            "lowPriority": {"running": 1, "preempted": 0},
        }
    }
    s = spec(resourceId=ACCOUNT_ID, pools=[{"id": "alpha", "vmSize": "B"}])
    status = m.pools_status(s, pools, counts)
    assert [p["id"] for p in status["pools"]] == ["alpha", "zeta"], "sorted by id"
    alpha, zeta = status["pools"]
    assert alpha["managed"] is True
    assert zeta["managed"] is False
    assert alpha["nodeCounts"] == {"idle": 1, "running": 2, "preempted": 0}, "dedicated + low priority; no totals"
    assert zeta["nodeCounts"] == {}
    assert (status["poolCount"], status["dedicatedNodes"], status["lowPriorityNodes"]) == (2, 3, 1)
    assert m.any_resizing(pools)
    assert not m.any_resizing([pools[1]])


def attached(state: str, *errors: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {"computeType": "Batch", "provisioningState": state, "resourceId": ACCOUNT_ID}
    if errors:
        properties["provisioningErrors"] = [{"error": e} for e in errors]
    return {"id": "/subscriptions/s/.../computes/batch", "location": "westeurope", "properties": properties}


@pytest.mark.parametrize(
    ("reason", "body", "expected"),
    [
        ("an attach that succeeded is no failure", attached("Succeeded"), None),
        ("one still running is no failure yet", attached("Creating"), None),
        (
            "a Failed attach: Azure's code and message (its provisioningErrors, as the seed prints them)",
            attached("Failed", {"code": "InternalServerError", "message": "the attach failed"}),
            ("InternalServerError", "the attach failed"),
        ),
        (
            "the details follow the message",
            attached(
                "Failed",
                {"code": "BadRequest", "message": "invalid", "details": [{"code": "Account", "message": "gone"}]},
            ),
            ("BadRequest", "invalid (Account: gone)"),
        ),
        (
            "Failed without an error still fails",
            attached("Failed"),
            ("ProvisioningFailed", "Azure reports provisioningState Failed without an error"),
        ),
    ],
)
def test_attach_failure(reason: str, body: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert m.attach_failure(body) == expected, reason
