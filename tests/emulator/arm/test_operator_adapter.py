"""The operator's own ARM adapter (``amlops.azure.ml.MlClient``, built by ``AzureClients`` as the operator builds
it) and its pure readers, against the emulator: what it makes of Azure's VM-size lists, usage rows and DELETE
answers in every form public evidence shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from amlops.api.amlcompute import AmlComputeSpec
from amlops.azure.clients import AzureClients
from amlops.azure.ml import MlClient, WorkspaceId
from amlops.external import amlcompute_map as m
from amlops.settings import Settings
from amlops_emulator.arm.state import ArmSettings
from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.server import RunningEmulator

from .conftest import BASE, FAST, RG, SUB, WS, Arm, Starter, aml_body, session_for

pytestmark = pytest.mark.emulator

LOC = "westeurope"
WORKSPACE = WorkspaceId(SUB, RG, WS)


async def _ml(running: RunningEmulator) -> AsyncIterator[MlClient]:
    clients = AzureClients(
        Settings(arm_endpoint=running.arm_url, ca_bundle=running.tls.ca, static_token=EMULATOR_TOKEN)
    )
    try:
        yield clients.ml("default", SUB)
    finally:
        await clients.close()


@pytest.fixture
async def ml(emulator: RunningEmulator) -> AsyncIterator[MlClient]:
    async for client in _ml(emulator):
        yield client


def spec(vm_size: str, max_nodes: int, priority: str = "Dedicated") -> AmlComputeSpec:
    return AmlComputeSpec.model_validate(
        {
            "workspace": {"subscriptionId": SUB, "resourceGroup": RG, "name": WS},
            "vmSize": vm_size,
            "vmPriority": priority,
            "scaleSettings": {"maxNodeCount": max_nodes},
        }
    )


@pytest.mark.parametrize("key", ["amlCompute", "value"])
async def test_vm_sizes_are_read_at_the_operators_api_version(start_emulator: Starter, key: str) -> None:
    """Fidelity trap 1: the 2020-08-01 swagger (``VirtualMachineSizeListResult.amlCompute``) and SDK 1.0.1's model
    name the list ``amlCompute``; the same version's example ``examples/ListVMSizesResult.json`` shows ``value``,
    as every version from 2022-05-01 does. The adapter asks at 2025-12-01, so it gets ``value`` whichever key the
    emulator gives 2020-08-01 (``amlcompute_map.vm_sizes_of`` reads either: tests/unit/test_amlcompute_map.py),
    and judges a size by the list (an adapter reading another key would find no sizes and Stall every AmlCompute
    VmSizeNotAvailable)."""
    running = await start_emulator(speed=FAST, arm=ArmSettings(vm_sizes_key_2020_08_01=key))
    async for ml in _ml(running):
        body = await ml.vm_sizes(LOC)
        assert list(body) == ["value"]
        sizes = m.vm_sizes_of(body)
        assert "Standard_DS3_v2" in {s["name"] for s in sizes}
        _, size_error, _ = m.quota_check(spec("STANDARD_DS3_V2", 2), sizes, await ml.usages(LOC))
        assert size_error is None
        _, size_error, _ = m.quota_check(spec("Standard_B2s", 2), sizes, [])
        assert size_error is not None


async def test_the_quota_check_picks_the_subscription_family_row(frozen: RunningEmulator) -> None:
    """``examples/Usage/list.json`` (2025-12-01, the adapter's version; 2020-08-01's ``ListUsages.json`` alike in
    its own names) lists, per family, the subscription's row, each workspace's and each cluster's (same
    ``name.value``), and low-priority rows with ``limit: -1``. The dedicated check must read the subscription's
    dedicated row (24 here, 8 in use), low priority the subscription's low-priority total (100)."""
    async with session_for(frozen) as session:
        arm = Arm(frozen, session)
        await arm.call("PUT", f"{BASE}/computes/busy", aml_body("Standard_DS3_v2", min_nodes=2, max_nodes=2))
        await arm.advance(30 + 30 + 60)  # create, allocate, prepare: two nodes hold 8 vCPUs
    async for ml in _ml(frozen):
        sizes = m.vm_sizes_of(await ml.vm_sizes(LOC))
        usages = await ml.usages(LOC)
    row = m.usage_row(usages, "standardDSv2Family", low_priority=False)
    assert row is not None
    dsv2 = f"/subscriptions/{SUB}/usages/Standard_DSv2_Family_Cluster_Dedicated_vCPUs"
    assert (row["id"], row["limit"], row["currentValue"]) == (dsv2, 24, 8)
    quota, _, verdict = m.quota_check(spec("Standard_DS3_v2", 4), sizes, usages)
    assert quota == {"family": "standardDSv2Family", "limit": 24, "usage": 8, "coresPerNode": 4}
    assert verdict is not None
    assert verdict[0] is True  # 16 of the 16 vCPUs still free
    _, _, verdict = m.quota_check(spec("Standard_DS3_v2", 5), sizes, usages)
    assert verdict is not None
    assert verdict[0] is False
    quota, _, verdict = m.quota_check(spec("Standard_DS3_v2", 5, "LowPriority"), sizes, usages)
    assert quota is not None
    assert (quota["limit"], verdict is not None and verdict[0]) == (100, True)


async def test_delete_of_a_compute_that_exists_is_an_operation(emulator: RunningEmulator, ml: MlClient) -> None:
    """C7: 202 with Azure-AsyncOperation: the adapter hands back the operation to follow."""
    async with session_for(emulator) as session:
        status, _, _ = await Arm(emulator, session).call("PUT", f"{BASE}/computes/there", aml_body("Standard_DS2_v2"))
    assert status == 201
    pending = await ml.begin_delete_compute(WORKSPACE, "there", "Delete")
    assert pending is not None
    assert pending.operation == "delete"


@pytest.mark.parametrize(
    ("source", "fault"),
    [
        ("C9 at 2020-08-01: the emulator's own 404 ResourceNotFound", None),
        (
            "the ML RP's 404 UserError (Azure/azure-cli-extensions#6662)",
            {"status": 404, "code": "UserError", "message": "Compute not found"},
        ),
        ("Compute_Delete's 204 for a compute that does not exist (stable/2024-10-01 swagger)", {"status": 204}),
    ],
)
async def test_delete_of_a_missing_compute_is_gone(
    emulator: RunningEmulator, ml: MlClient, source: str, fault: dict[str, object] | None
) -> None:
    """Azure says "not there" with a 404 (any code) or, in newer api-versions, a 204 that SDK 1.0.1's 2020-08-01
    code does not accept. Either is "gone" at every api-version: nothing to follow, nothing to retry."""
    async with session_for(emulator) as session:
        arm = Arm(emulator, session)
        if fault is not None:
            await arm.control("POST", "/faults", {"method": "DELETE", "path": "/computes/gone$", **fault})
        assert await ml.begin_delete_compute(WORKSPACE, "gone", "Delete") is None, source
        stats = await arm.control("GET", "/stats")
    deletes = [c for c in stats["recent"] if c["operation"] == "MachineLearningCompute_Delete"]
    assert len(deletes) == 1, "answered once, never retried"
