"""C21: creates Azure accepts and then fails: an unsupported vmSize, a vCPU quota too small.

Azure answers such a PUT with 201 like any other and reports the failure through the operation
(``{"status": "Failed", "error": {...}}``) and the compute (``provisioningState: Failed`` with
``provisioningErrors``). The error texts are the ones public threads quote from the real service; no SDK recording
of either failure exists (azure-mgmt-machinelearningservices has none, azure-ai-ml's record only successes).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from amlops_emulator.arm.catalogue import SIZES
from amlops_emulator.arm.state import ArmSettings

from .conftest import BASE, FAST, RG, WS, Arm, Starter, aml_body, client_for, session_for

pytestmark = pytest.mark.emulator


async def _create_and_fail(start_emulator: Starter, body: dict[str, Any], **settings: Any) -> tuple[Any, Any]:
    """(the SDK's exception, the compute's GET after it) for a create that must fail."""
    running = await start_emulator(speed=FAST, arm=ArmSettings(**settings))
    async with client_for(running) as client:
        poller = await client.machine_learning_compute.begin_create_or_update(
            RG, WS, "c1", io.BytesIO(json.dumps(body).encode()), content_type="application/json"
        )
        with pytest.raises(HttpResponseError) as raised:
            await poller.result()
        compute = await client.machine_learning_compute.get(RG, WS, "c1")
    return raised.value, compute


async def _operation(arm: Arm, url: str) -> Any:
    async with arm.session.get(url) as response:
        assert response.status == 200
        return await response.json()


async def test_an_unsupported_vm_size_is_accepted_then_fails_with_invalid_property_value(frozen_arm: Arm) -> None:
    """Azure/MachineLearningNotebooks#1169 (2020) quotes ``provisioning errors: [{'error': {'code':
    'InvalidPropertyValue', 'message': 'The specified value Standard_B2s for property Cluster.Properties.VMSize is
    not a supported VM size. See additional details for supported VM sizes.', 'details': [{'code':
    'SupportedVMSizes', 'message': 'STANDARD_D1,STANDARD_D2,...'}]}}]`` after a create that had been accepted
    (``wait_for_completion``: "Terminal state of Failed"); microsoft/az-deep-batch-score#4 (2019) the same text,
    then wrapped in a BadRequest. No 400 at PUT time."""
    arm = frozen_arm
    status, headers, body = await arm.call("PUT", f"{BASE}/computes/b2s", aml_body("Standard_B2s"))
    assert status == 201
    assert body["properties"]["provisioningState"] == "Creating"
    assert body["properties"]["properties"]["vmSize"] == "STANDARD_B2S"  # echoed upper-cased, as any size
    assert await _operation(arm, headers["Azure-AsyncOperation"]) == {"status": "InProgress"}
    await arm.advance(30)
    operation = await _operation(arm, headers["Azure-AsyncOperation"])
    assert operation["status"] == "Failed"
    error = operation["error"]
    assert error["code"] == "InvalidPropertyValue"
    assert error["message"] == (
        "The specified value Standard_B2s for property Cluster.Properties.VMSize is not a supported VM size. "
        "See additional details for supported VM sizes."
    )
    [detail] = error["details"]
    assert detail["code"] == "SupportedVMSizes"
    supported = detail["message"].split(",")
    assert supported == sorted(supported)
    assert set(supported) == {s.name.upper() for s in SIZES}
    _, _, compute = await arm.call("GET", f"{BASE}/computes/b2s")
    assert compute["properties"]["provisioningState"] == "Failed"
    assert compute["properties"]["provisioningErrors"] == [{"error": error}]


async def test_the_sdk_raises_and_reads_the_supported_sizes(start_emulator: Starter) -> None:
    """The same failure through SDK 1.0.1: ``result()`` raises, the compute's provisioningErrors deserialize with
    their details (2020-08-01 ``MachineLearningServiceError``)."""
    raised, compute = await _create_and_fail(start_emulator, aml_body("Standard_B2s"))
    assert "InvalidPropertyValue" in str(raised)
    assert compute.properties.provisioning_state == "Failed"
    [error] = compute.properties.provisioning_errors
    assert error.error.code == "InvalidPropertyValue"
    assert error.error.details[0].code == "SupportedVMSizes"
    assert "STANDARD_DS3_V2" in error.error.details[0].message.split(",")


async def test_a_family_quota_too_small_fails_as_bad_request(start_emulator: Starter) -> None:
    """dotnet/machinelearning-modelbuilder#2140 (2022) quotes the create's failure: "The specified subscription has
    a Standard NC family vCPU quota of 0 and cannot accomodate for at least 1 requested managed compute nodes which
    maps to 12 vCPUs. Talk to your Subscription Admin or refer to https://docs.microsoft.com/azure/machine-learning/
    how-to-manage-quotas#request-quota-increases to increase the family quota" (Azure's spelling, "accomodate").
    The code is BadRequest (Azure/mlops-v2#81, the same message family). Checked for at least one node, even with
    minNodeCount 0. Another public account shows the same text under ClusterMinNodesExceedCoreQuota: the evidence
    conflicts, and the operator classifies both (tests/unit/test_arm_errors.py)."""
    raised, compute = await _create_and_fail(
        start_emulator, aml_body("Standard_NC12", min_nodes=0, max_nodes=2), family_quotas={"standardNCFamily": 0}
    )
    message = (
        "The specified subscription has a Standard NC family vCPU quota of 0 and cannot accomodate for at least 1 "
        "requested managed compute nodes which maps to 12 vCPUs. Talk to your Subscription Admin or refer to "
        "https://docs.microsoft.com/azure/machine-learning/how-to-manage-quotas#request-quota-increases to increase "
        "the family quota"
    )
    assert raised.error is not None
    assert (raised.error.code, raised.error.message) == ("BadRequest", message)
    [error] = compute.properties.provisioning_errors
    assert (error.error.code, error.error.message) == ("BadRequest", message)


async def test_the_subscription_total_too_small_names_the_total(start_emulator: Starter) -> None:
    """Azure/mlops-v2#81 (2022): Terraform "waiting for creation of Compute Cluster ... Code="BadRequest"
    Message=The specified subscription has a total vCPU quota of 0 and cannot accomodate for at least 1 requested
    managed compute node which maps to 2 vCPUs." (and microsoft/InnerEye-DeepLearning#253, 2020: "total vCPU quota
    of 4 ... which maps to 24 vCPUs"). Which quota a message names: the one that leaves the least room; whether
    Azure counts the quota's limit or its free part in "quota of N" is not verified (the limit here)."""
    raised, _ = await _create_and_fail(
        start_emulator, aml_body("Standard_DS2_v2", min_nodes=5, max_nodes=5), total_dedicated_cores=8
    )
    assert raised.error is not None
    assert raised.error.code == "BadRequest"
    assert raised.error.message.startswith(
        "The specified subscription has a total vCPU quota of 8 and cannot accomodate for at least 5 requested "
        "managed compute nodes which maps to 10 vCPUs."
    )


async def test_a_low_priority_cluster_is_created_whatever_its_quota(start_emulator: Starter) -> None:
    """Low priority is not quota-checked at create: the cluster is Succeeded and only its nodes fail to come. The
    evidence is thin: one public write-up of real creates (2026) says "A *low-priority* cluster is not [checked],
    and creates happily whatever the quota", next to ClusterMinNodesExceedCoreQuota for a dedicated one; no
    recording either way."""
    running = await start_emulator(speed=FAST, arm=ArmSettings(total_low_priority_cores=0))
    async with client_for(running) as client:
        body = aml_body("Standard_NC6", min_nodes=1, max_nodes=1, priority="LowPriority")
        poller = await client.machine_learning_compute.begin_create_or_update(
            RG, WS, "lp", io.BytesIO(json.dumps(body).encode()), content_type="application/json"
        )
        await poller.result()
    async with session_for(running) as session:
        _, _, compute = await Arm(running, session).call("GET", f"{BASE}/computes/lp")
    assert compute["properties"]["provisioningState"] == "Succeeded"
    assert compute["properties"]["properties"]["currentNodeCount"] == 0
