"""C1-C9 and C21: an AmlCompute's create, poll, read, update, patch and delete, through the real SDK client."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ResponseNotReadError
from azure.core.pipeline import PipelineResponse
from azure.mgmt.machinelearningservices import models
from azure.mgmt.machinelearningservices.aio import MachineLearningServicesMgmtClient

from amlops_emulator.server import RunningEmulator

from .conftest import BASE, RG, SUB, WS, Arm, aml_body, client_for

pytestmark = pytest.mark.emulator

STATE_COUNTS = (
    "idleNodeCount",
    "runningNodeCount",
    "preparingNodeCount",
    "unusableNodeCount",
    "leavingNodeCount",
    "preemptedNodeCount",
)


class Recorder:
    """A ``raw_response_hook``: the SDK's own HTTP exchanges, in order."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, int, dict[str, str], str]] = []

    def __call__(self, response: PipelineResponse[Any, Any]) -> None:
        http = response.http_response
        try:
            text = http.text()
        except ResponseNotReadError:  # streamed error bodies are read later by the SDK
            text = ""
        self.exchanges.append((http.request.method, http.request.url, http.status_code, dict(http.headers), text))


async def test_c01_create_amlcompute_answers_201_with_azure_asyncoperation(frozen: RunningEmulator) -> None:
    """C1: PUT answers 201, an absolute https Azure-AsyncOperation URL with api-version, no Location, Creating."""
    recorder = Recorder()
    async with client_for(frozen) as client:
        await client.machine_learning_compute.begin_create_or_update(
            RG, WS, "gpu-cluster", _io(aml_body()), raw_response_hook=recorder
        )
    method, _, status, headers, _ = recorder.exchanges[0]
    assert (method, status) == ("PUT", 201)
    operation = headers["Azure-AsyncOperation"]
    assert operation.startswith(f"{frozen.arm_url}/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/")
    assert "/locations/westeurope/computeOperationsStatus/" in operation
    assert "api-version=2020-08-01" in operation
    assert "Location" not in headers
    assert "Retry-After" not in headers


async def test_c01_create_body_is_the_recorded_initial_shape(frozen_arm: Arm) -> None:
    """C1: the 201 body: Creating, vmSize upper-cased, observed fields null, no credentials, tags null."""
    body = aml_body("Standard_NC6")
    body["properties"]["properties"]["userAccountCredentials"] = {
        "adminUserName": "azureuser",
        "adminUserPassword": "x",
    }
    status, _, created = await frozen_arm.call("PUT", f"{BASE}/computes/gpu-cluster", body)
    assert status == 201
    assert created["id"] == f"{BASE}/computes/gpu-cluster"
    assert created["name"] == "gpu-cluster"
    assert created["type"] == "Microsoft.MachineLearningServices/workspaces/computes"
    assert created["location"] == "westeurope"
    assert created["tags"] is None
    props = created["properties"]
    assert (props["computeType"], props["provisioningState"], props["resourceId"]) == ("AmlCompute", "Creating", None)
    aml = props["properties"]
    assert aml["vmSize"] == "STANDARD_NC6"
    assert aml["currentNodeCount"] is None
    assert aml["allocationState"] is None
    assert aml["nodeStateCounts"] is None
    assert "userAccountCredentials" not in aml
    assert created["identity"]["type"] == "SystemAssigned"
    assert created["identity"]["principalId"]


async def test_c02_async_operation_goes_in_progress_then_succeeded(frozen: RunningEmulator, frozen_arm: Arm) -> None:
    """C2: the operation reads {"status":"InProgress"} until done, then Succeeded with percentComplete 100.0."""
    recorder = Recorder()
    async with client_for(frozen) as client:
        poller = await client.machine_learning_compute.begin_create_or_update(
            RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")), raw_response_hook=recorder
        )
        operation = recorder.exchanges[0][3]["Azure-AsyncOperation"]
        async with frozen_arm.session.get(operation) as response:
            assert (response.status, await response.json()) == (200, {"status": "InProgress"})
        assert not poller.done()
        await frozen_arm.advance(30)
        async with frozen_arm.session.get(operation) as response:
            assert await response.json() == {"status": "Succeeded", "percentComplete": 100.0}
        result = await poller.result()
    assert compute_of(result).provisioning_state == "Succeeded"
    polls = [e for e in recorder.exchanges if "computeOperationsStatus" in e[1]]
    assert polls
    assert all(e[2] == 200 for e in polls)
    # The SDK's final GET is on the compute's own URL.
    assert recorder.exchanges[-1][0] == "GET"
    assert recorder.exchanges[-1][1].split("?")[0].endswith("/computes/cpu")


async def test_c03_sdk_final_get_shows_a_steady_empty_cluster(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """C3: after success: Succeeded, Steady, 0/0 nodes, six zero state counts, scale settings echoed. vmSize stays
    upper-cased as in the recording's GETs after Succeeded (see test_recorded_details: the issue's claim of
    canonical casing conflicts with the recording; the operator compares case-insensitively)."""
    params = models.ComputeResource(
        location="westeurope",
        properties=models.AmlCompute(
            properties=models.AmlComputeProperties(
                vm_size="Standard_DS2_v2",
                vm_priority="Dedicated",
                scale_settings=models.ScaleSettings(
                    max_node_count=2, min_node_count=0, node_idle_time_before_scale_down=timedelta(minutes=5)
                ),
            )
        ),
    )
    poller = await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", params)
    result = await poller.result()
    aml = cluster(result)
    assert compute_of(result).provisioning_state == "Succeeded"
    assert (aml.allocation_state, aml.current_node_count, aml.target_node_count) == ("Steady", 0, 0)
    assert aml.vm_size == "STANDARD_DS2_V2"
    assert scale(result).max_node_count == 2
    assert scale(result).node_idle_time_before_scale_down == timedelta(minutes=5)
    _, _, raw = await arm.call("GET", f"{BASE}/computes/cpu")
    props = raw["properties"]["properties"]
    assert all(props["nodeStateCounts"][key] == 0 for key in STATE_COUNTS)
    assert props["errors"] is None
    assert props["subnet"] is None
    assert raw["tags"] == {}
    assert raw["properties"]["provisioningErrors"] is None


@pytest.mark.parametrize(
    ("subnet", "settled"),
    [
        pytest.param(None, "Enabled", id="no VNet: open"),
        pytest.param(
            {
                "id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
                "/virtualNetworks/v/subnets/default"
            },
            "Disabled",
            id="in a VNet: closed",
        ),
    ],
)
async def test_c03_not_specified_remote_login_settles_by_vnet(
    frozen_arm: Arm, subnet: dict[str, str] | None, settled: str
) -> None:
    """The swagger's description of ``remoteLoginPortPublicAccess`` (Microsoft.MachineLearningServices
    stable/2020-08-01 … 2025-12-01, ``AmlComputeProperties``): NotSpecified is "closed on all nodes of the
    cluster if VNet is defined, else is open all public nodes. It can be default only during cluster creation
    time, after creation it will be either enabled or disabled". The 201 echoes what was sent (recording of
    ``test_aml_compute_create_and_delete``); the GET after success shows the settled value."""
    body = aml_body()
    body["properties"]["properties"]["subnet"] = subnet
    status, _, created = await frozen_arm.call("PUT", f"{BASE}/computes/ssh", body)
    await frozen_arm.advance(60)
    _, _, got = await frozen_arm.call("GET", f"{BASE}/computes/ssh")

    assert status == 201
    assert created["properties"]["properties"]["remoteLoginPortPublicAccess"] == "NotSpecified"
    assert got["properties"]["provisioningState"] == "Succeeded"
    assert got["properties"]["properties"]["remoteLoginPortPublicAccess"] == settled


async def test_c04_transitional_get_shows_resizing_with_target_above_current(frozen_arm: Arm) -> None:
    """C4: with minNodeCount 1: Succeeded + Resizing, current 0, target 1; then preparing; then Steady idle."""
    await frozen_arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2", min_nodes=1, max_nodes=2))
    await frozen_arm.advance(30)  # provisioning done, VM allocation starts
    _, _, body = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    aml = body["properties"]["properties"]
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert (aml["allocationState"], aml["currentNodeCount"], aml["targetNodeCount"]) == ("Resizing", 0, 1)
    await frozen_arm.advance(30)  # allocated: the node prepares
    _, _, body = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    aml = body["properties"]["properties"]
    assert (aml["currentNodeCount"], aml["nodeStateCounts"]["preparingNodeCount"]) == (1, 1)
    await frozen_arm.advance(60)  # prepared
    _, _, body = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    aml = body["properties"]["properties"]
    assert (aml["allocationState"], aml["nodeStateCounts"]["idleNodeCount"]) == ("Steady", 1)


async def test_c05_put_on_existing_compute_is_201_creating_and_ignores_vm_size(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """C5: a second PUT answers 201 + Azure-AsyncOperation + Creating; the new idle time shows; vmSize kept."""
    await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")))
    ).result()
    changed = aml_body("Standard_D4_v2", idle="PT3M20S", max_nodes=3)
    status, headers, body = await arm.call("PUT", f"{BASE}/computes/cpu", changed)
    assert status == 201
    assert "Azure-AsyncOperation" in headers
    assert "Location" not in headers
    assert body["properties"]["provisioningState"] == "Creating"
    # The same PUT again while that update runs joins it (a retried PUT is idempotent); the SDK polls it.
    poller = await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(changed))
    result = await poller.result()
    aml = cluster(result)
    assert scale(result).node_idle_time_before_scale_down == timedelta(minutes=3, seconds=20)
    assert scale(result).max_node_count == 3
    assert aml.vm_size == "STANDARD_DS2_V2"  # Azure silently ignores vmSize changes on an existing cluster


async def _until_settled(arm: Arm, name: str) -> None:
    async with asyncio.timeout(60):
        while True:
            _, _, body = await arm.call("GET", f"{BASE}/computes/{name}")
            if body["properties"]["provisioningState"] in ("Succeeded", "Failed"):
                return
            await asyncio.sleep(0.01)


async def test_c06_patch_scale_settings(ml_client: MachineLearningServicesMgmtClient, arm: Arm) -> None:
    """C6: PATCH answers 200 + Updating + Azure-AsyncOperation; unchanged, 200 without it; the SDK converges."""
    await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")))
    ).result()
    patch = {
        "properties": {"scaleSettings": {"maxNodeCount": 4, "minNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT5M"}}
    }
    status, headers, body = await arm.call("PATCH", f"{BASE}/computes/cpu", patch)
    assert status == 200
    assert "Azure-AsyncOperation" in headers
    assert body["properties"]["provisioningState"] == "Updating"
    assert body["properties"]["properties"]["scaleSettings"]["minNodeCount"] == 4
    # Azure refuses a second update while the first runs (Conflict, as the emulator does): wait for it to end.
    # How long that takes in real time depends on the machine, so wait on the state, never on a clock.
    await _until_settled(arm, "cpu")
    update = models.ClusterUpdateParameters(
        scale_settings=models.ScaleSettings(
            max_node_count=2, min_node_count=0, node_idle_time_before_scale_down=timedelta(minutes=2)
        )
    )
    result = await (await ml_client.machine_learning_compute.begin_update(RG, WS, "cpu", update)).result()
    assert compute_of(result).provisioning_state == "Succeeded"
    assert scale(result).max_node_count == 2
    same = {
        "properties": {"scaleSettings": {"maxNodeCount": 2, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT2M"}}
    }
    status, headers, body = await arm.call("PATCH", f"{BASE}/computes/cpu", same)
    assert status == 200
    assert "Azure-AsyncOperation" not in headers
    assert body["properties"]["provisioningState"] == "Succeeded"


async def test_c06_discard_fault_accepts_a_patch_and_changes_nothing(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """C6 with a ``discard`` fault: the PATCH is answered as one that changed nothing (200, the current body, no
    Azure-AsyncOperation: C6's recorded answer to an unchanged PATCH), as when the RP normalises or ignores a
    value; the next GET shows the old value. Lets a test prove amlops stops retrying a diff that never converges."""
    await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")))
    ).result()
    await arm.control("POST", "/faults", {"method": "PATCH", "path": "/computes/cpu$", "discard": True})
    patch = {"properties": {"scaleSettings": {"maxNodeCount": 7, "minNodeCount": 0}}}
    status, headers, body = await arm.call("PATCH", f"{BASE}/computes/cpu", patch)
    assert status == 200
    assert "Azure-AsyncOperation" not in headers
    assert body["properties"]["provisioningState"] == "Succeeded"
    _, _, after = await arm.call("GET", f"{BASE}/computes/cpu")
    assert after["properties"]["properties"]["scaleSettings"]["maxNodeCount"] != 7


async def test_c06_patch_identity_with_a_raw_body(ml_client: MachineLearningServicesMgmtClient) -> None:
    """C6 (identity): azureml-core's PATCH {"identity": ...} assigns and removes identities."""
    await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")))
    ).result()
    uai = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    body = {"identity": {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {uai: {}}}}
    result = await (await ml_client.machine_learning_compute.begin_update(RG, WS, "cpu", _io(body))).result()
    identity = result.identity
    assert identity is not None
    assert identity.type == "SystemAssigned,UserAssigned"
    assert identity.principal_id
    assert identity.user_assigned_identities is not None
    assert identity.user_assigned_identities[uai].client_id
    result = await (
        await ml_client.machine_learning_compute.begin_update(RG, WS, "cpu", _io({"identity": {"type": "None"}}))
    ).result()
    assert result.identity is None


async def test_c07_delete_answers_202_and_the_compute_is_gone(ml_client: MachineLearningServicesMgmtClient) -> None:
    """C7: DELETE ?underlyingResourceAction=Delete answers 202, empty, Azure-AsyncOperation; then GET is 404."""
    await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")))
    ).result()
    recorder = Recorder()
    poller = await ml_client.machine_learning_compute.begin_delete(RG, WS, "cpu", "Delete", raw_response_hook=recorder)
    await poller.result()
    method, url, status, headers, text = recorder.exchanges[0]
    assert (method, status, text, headers["Content-Length"]) == ("DELETE", 202, "", "0")
    assert "underlyingResourceAction=Delete" in url
    assert "computeOperationsStatus" in headers["Azure-AsyncOperation"]
    assert "Location" not in headers
    assert '"Succeeded"' in recorder.exchanges[-1][4]  # no final GET after a DELETE
    with pytest.raises(ResourceNotFoundError):
        await ml_client.machine_learning_compute.get(RG, WS, "cpu")


async def test_c07_repeated_delete_joins_the_running_one(frozen_arm: Arm) -> None:
    """C7: while a delete runs, GET shows Deleting and a second DELETE answers 202 with the same operation."""
    await frozen_arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2"))
    await frozen_arm.advance(30)
    _, first, _ = await frozen_arm.call("DELETE", f"{BASE}/computes/cpu", underlyingResourceAction="Delete")
    _, _, body = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    assert body["properties"]["provisioningState"] == "Deleting"
    status, second, _ = await frozen_arm.call("DELETE", f"{BASE}/computes/cpu", underlyingResourceAction="delete")
    assert status == 202
    assert second["Azure-AsyncOperation"] == first["Azure-AsyncOperation"]
    await frozen_arm.advance(20)
    status, _, body = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")


async def test_c08_delete_without_underlying_resource_action_is_400(arm: Arm) -> None:
    """C8: the required query parameter missing: 400 with an ARM error body and no Retry-After."""
    await arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2"))
    status, headers, body = await arm.call("DELETE", f"{BASE}/computes/cpu")
    assert status == 400
    assert "Retry-After" not in headers
    assert body["error"]["code"] == "MissingRequiredParameter"
    status, _, body = await arm.call("DELETE", f"{BASE}/computes/cpu", underlyingResourceAction="Destroy")
    assert (status, body["error"]["code"]) == (400, "InvalidParameter")


async def test_c09_delete_of_a_missing_compute(ml_client: MachineLearningServicesMgmtClient, arm: Arm) -> None:
    """C9: policy: 404 ResourceNotFound for 2020-08-01 (its SDK accepts only 200/202); 204 from 2022-05-01 (C22)."""
    with pytest.raises(ResourceNotFoundError) as raised:
        await ml_client.machine_learning_compute.begin_delete(RG, WS, "nope", "Delete")
    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceNotFound"
    status, _, body = await arm.call(
        "DELETE", f"{BASE}/computes/nope", api_version="2024-10-01", underlyingResourceAction="Delete"
    )
    assert (status, body) == (204, None)


async def test_c21_injected_async_failure_shows_in_status_and_provisioning_errors(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """C21: a fault's asyncFailure makes the operation end {"status":"Failed","error":{code,message}}."""
    await arm.control(
        "POST",
        "/faults",
        {
            "method": "PUT",
            "path": "/computes/cpu$",
            "asyncFailure": {"code": "AllocationFailed", "message": "no capacity"},
            "count": 1,
        },
    )
    recorder = Recorder()
    poller = await ml_client.machine_learning_compute.begin_create_or_update(
        RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")), raw_response_hook=recorder
    )
    with pytest.raises(HttpResponseError):
        await poller.result()
    final = [e for e in recorder.exchanges if "computeOperationsStatus" in e[1]][-1]
    assert '"status": "Failed"' in final[4]
    assert '"code": "AllocationFailed"' in final[4]
    _, _, body = await arm.call("GET", f"{BASE}/computes/cpu")
    assert body["properties"]["provisioningState"] == "Failed"
    assert body["properties"]["provisioningErrors"] == [
        {"error": {"code": "AllocationFailed", "message": "no capacity"}}
    ]
    # A PUT again recreates it (the fault was used up).
    result = await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "cpu", _io(aml_body("Standard_DS2_v2")))
    ).result()
    assert compute_of(result).provisioning_state == "Succeeded"


def compute_of(resource: models.ComputeResource) -> models.Compute:
    """The compute inside an ARM resource (every field of the SDK's models is optional)."""
    assert resource.properties is not None, resource
    return resource.properties


def cluster(resource: models.ComputeResource) -> models.AmlComputeProperties:
    """An AmlCompute's own properties: the SDK types ``properties`` as the Compute base class."""
    aml = resource.properties
    assert isinstance(aml, models.AmlCompute), aml
    assert aml.properties is not None, aml
    return aml.properties


def scale(resource: models.ComputeResource) -> models.ScaleSettings:
    settings = cluster(resource).scale_settings
    assert settings is not None, resource
    return settings


def _io(body: dict[str, Any]) -> Any:
    import io
    import json

    return io.BytesIO(json.dumps(body).encode())


async def test_c05_get_during_create_and_update_matches_the_recording(frozen_arm: Arm) -> None:
    """C5: while creating, observed fields are null; while a PUT-update runs, resourceId is the BatchAI cluster."""
    await frozen_arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2"))
    _, _, creating = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    assert creating["properties"]["provisioningState"] == "Creating"
    assert creating["properties"]["resourceId"] is None
    assert creating["properties"]["properties"]["allocationState"] is None
    await frozen_arm.advance(30)
    await frozen_arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2", idle="PT3M20S"))
    _, _, updating = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    assert updating["properties"]["provisioningState"] == "Creating"
    assert updating["properties"]["resourceId"].endswith(f"/providers/Microsoft.BatchAI/workspaces/{WS}/clusters/cpu")
    await frozen_arm.advance(30)
    _, _, done = await frozen_arm.call("GET", f"{BASE}/computes/cpu")
    assert (done["properties"]["provisioningState"], done["properties"]["resourceId"]) == ("Succeeded", None)
    assert done["properties"]["properties"]["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] == "PT3M20S"
