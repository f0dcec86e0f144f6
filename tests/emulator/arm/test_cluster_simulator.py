"""The cluster behind an AmlCompute, stepped on a frozen virtual clock: scale-up, idle scale-down, minNodeCount,
preemption, quota caps. Timings: allocation 30 s, preparation 60 s, leaving 30 s (simulator.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import BASE, Arm, aml_body

pytestmark = pytest.mark.emulator

CPU = f"{BASE}/computes/cpu"


async def _aml(arm: Arm) -> dict[str, Any]:
    status, _, body = await arm.call("GET", CPU)
    assert status == 200
    props: dict[str, Any] = body["properties"]["properties"]
    return props


async def _create(arm: Arm, **knobs: Any) -> None:
    status, _, _ = await arm.call("PUT", CPU, aml_body(**knobs))
    assert status == 201
    await arm.advance(30)  # provisioned


async def test_workload_scales_up_then_idle_nodes_leave_after_the_idle_time(frozen_arm: Arm) -> None:
    """Busy nodes scale the cluster up; once idle for nodeIdleTimeBeforeScaleDown they leave, then vanish."""
    await _create(frozen_arm, vm_size="Standard_DS2_v2", min_nodes=0, max_nodes=4, idle="PT2M")
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 3})
    aml = await _aml(frozen_arm)
    assert (aml["allocationState"], aml["currentNodeCount"], aml["targetNodeCount"]) == ("Resizing", 0, 3)
    await frozen_arm.advance(90)
    aml = await _aml(frozen_arm)
    assert (aml["allocationState"], aml["nodeStateCounts"]["runningNodeCount"]) == ("Steady", 3)
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 0})
    await frozen_arm.advance(119)
    assert (await _aml(frozen_arm))["nodeStateCounts"]["idleNodeCount"] == 3
    await frozen_arm.advance(1)
    aml = await _aml(frozen_arm)
    assert (aml["allocationState"], aml["nodeStateCounts"]["leavingNodeCount"], aml["targetNodeCount"]) == (
        "Resizing",
        3,
        0,
    )
    await frozen_arm.advance(30)
    aml = await _aml(frozen_arm)
    assert (aml["allocationState"], aml["currentNodeCount"]) == ("Steady", 0)


async def test_min_node_count_is_held_through_idle_time(frozen_arm: Arm) -> None:
    """minNodeCount nodes stay (idle) however long they idle; only the extra ones leave."""
    await _create(frozen_arm, vm_size="Standard_DS2_v2", min_nodes=1, max_nodes=3, idle="PT1M")
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 2})
    await frozen_arm.advance(90)
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 0})
    await frozen_arm.advance(3600)
    aml = await _aml(frozen_arm)
    assert (aml["currentNodeCount"], aml["nodeStateCounts"]["idleNodeCount"], aml["allocationState"]) == (
        1,
        1,
        "Steady",
    )


async def test_lowering_max_node_count_evicts_at_once(frozen_arm: Arm) -> None:
    """A PATCH to a lower maxNodeCount sends the extra nodes leaving immediately, busy ones last."""
    await _create(frozen_arm, vm_size="Standard_DS2_v2", min_nodes=3, max_nodes=3)
    await frozen_arm.advance(90)
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 1})
    patch = {"properties": {"scaleSettings": {"maxNodeCount": 1, "minNodeCount": 0}}}
    status, _, body = await frozen_arm.call("PATCH", CPU, patch)
    assert status == 200
    assert body["properties"]["provisioningState"] == "Updating"
    counts = body["properties"]["properties"]["nodeStateCounts"]
    assert (counts["leavingNodeCount"], counts["runningNodeCount"]) == (2, 1)


async def test_low_priority_nodes_are_preempted_and_replaced(frozen_arm: Arm) -> None:
    """Preemption: a low-priority node turns preempted, a replacement allocates, the preempted one vanishes."""
    await _create(frozen_arm, vm_size="Standard_DS2_v2", min_nodes=2, max_nodes=2, priority="lowpriority")
    await frozen_arm.advance(90)
    status, _, _ = await frozen_arm.call("GET", CPU)
    assert status == 200
    await frozen_arm.control("POST", "/arm/preempt", {"computeId": CPU, "count": 1})
    aml = await _aml(frozen_arm)
    assert aml["vmPriority"] == "LowPriority"
    assert (aml["nodeStateCounts"]["preemptedNodeCount"], aml["targetNodeCount"], aml["allocationState"]) == (
        1,
        2,
        "Resizing",
    )
    await frozen_arm.advance(90)
    aml = await _aml(frozen_arm)
    assert aml["nodeStateCounts"]["idleNodeCount"] == 2
    assert aml["nodeStateCounts"]["preemptedNodeCount"] == 0


async def test_dedicated_nodes_are_never_preempted(frozen_arm: Arm) -> None:
    """Preemption applies to low-priority clusters only."""
    await _create(frozen_arm, vm_size="Standard_DS2_v2", min_nodes=1, max_nodes=1)
    await frozen_arm.advance(90)
    await frozen_arm.control("POST", "/arm/preempt", {"computeId": CPU, "count": 1})
    assert (await _aml(frozen_arm))["nodeStateCounts"]["preemptedNodeCount"] == 0


async def test_scale_up_beyond_quota_is_capped_with_an_error(frozen_arm: Arm) -> None:
    """NC6 has 24 dedicated vCPUs of quota: 4 nodes fit, the 5th and 6th are reported in errors."""
    await _create(frozen_arm, vm_size="Standard_NC6", min_nodes=0, max_nodes=6)
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 6})
    aml = await _aml(frozen_arm)
    assert aml["targetNodeCount"] == 4
    assert aml["errors"][0]["error"]["code"] == "QuotaExceeded"
    await frozen_arm.control("POST", "/arm/workload", {"computeId": CPU, "busyNodes": 2})
    assert (await _aml(frozen_arm))["errors"] is None
