"""Pools through azure-batch: B1 create, B2 get, B3 unknown pool, B4 resize/stop-resize, B14 delete, node counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from amlops_emulator.batch.pools import DELETE_SECONDS, NODE_START_SECONDS, RESIZE_SECONDS, STOP_RESIZE_SECONDS
from tests.emulator.batch.conftest import BatchEmulator, RawResponse

pytestmark = pytest.mark.emulator

Raw = Callable[..., Awaitable[RawResponse]]


def pool(pool_id: str, dedicated: int = 0, low: int = 0) -> models.BatchPoolCreateOptions:
    return models.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=dedicated, target_low_priority_nodes=low
    )


async def test_b1_create_pool_answers_201_with_headers_and_409_on_duplicate(raw: Raw) -> None:
    body = {"id": "b1", "vmSize": "standard_d2s_v3"}

    first = await raw("POST", "/pools", body)
    duplicate = await raw("POST", "/pools", body)

    assert first.status == 201
    assert first.body == b""
    for header in ("ETag", "Last-Modified", "DataServiceId", "Location", "request-id"):
        assert first.headers.get(header), header
    assert first.headers["DataServiceVersion"] == "3.0"
    assert first.headers["Location"].endswith("/amlopsbatch/pools/b1")
    assert duplicate.status == 409
    error = duplicate.json()
    assert error["code"] == "PoolExists"
    assert error["odata.metadata"].endswith(
        "$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
    )
    assert error["message"]["lang"] == "en-US"
    assert "Retry-After" not in duplicate.headers


async def test_b1_duplicate_pool_raises_resource_exists(client: BatchClient) -> None:
    await client.create_pool(pool("dup"))

    with pytest.raises(ResourceExistsError) as raised:
        await client.create_pool(pool("dup"))

    assert raised.value.error is not None
    assert raised.value.error.code == "PoolExists"


async def test_b2_get_pool_has_defaults_and_matching_etag(client: BatchClient, raw: Raw) -> None:
    await client.create_pool(pool("b2"))

    response = await raw("GET", "/pools/b2")
    typed = await client.get_pool("b2")

    body = response.json()
    assert body["odata.metadata"].endswith("/amlopsbatch/$metadata#pools/@Element")
    assert body["allocationState"] == "steady"
    assert body["taskSlotsPerNode"] == 1
    assert body["resizeTimeout"] == "PT15M"
    assert body["state"] == "active"
    for count in ("currentDedicatedNodes", "targetDedicatedNodes", "currentLowPriorityNodes", "targetLowPriorityNodes"):
        assert body[count] == 0, count
    assert response.headers["ETag"] == body["eTag"]
    assert typed.allocation_state == models.AllocationState.STEADY
    assert typed.vm_size == "standard_d2s_v3"


async def test_b3_unknown_pool_is_404_pool_not_found(client: BatchClient, raw: Raw) -> None:
    response = await raw("GET", "/pools/nope")

    with pytest.raises(ResourceNotFoundError) as raised:
        await client.get_pool("nope")

    assert response.status == 404
    body = response.json()
    assert body["code"] == "PoolNotFound"
    value = body["message"]["value"]
    assert value.startswith("The specified pool does not exist.\nRequestId:")
    assert f"RequestId:{response.headers['request-id']}\nTime:" in value
    assert "Retry-After" not in response.headers
    assert raised.value.error is not None
    assert raised.value.error.code == "PoolNotFound"


async def test_b4_resize_goes_resizing_then_steady_and_nodes_boot(emulator: BatchEmulator, client: BatchClient) -> None:
    await client.create_pool(pool("b4"))

    poller = await client.begin_resize_pool(
        "b4", models.BatchPoolResizeOptions(target_dedicated_nodes=2, target_low_priority_nodes=1), polling_interval=0
    )
    during = await client.get_pool("b4")
    emulator.clock.advance(RESIZE_SECONDS)
    await poller.result()
    after = await client.get_pool("b4")
    starting = [n.state async for n in client.list_nodes("b4")]
    emulator.clock.advance(NODE_START_SECONDS)
    booted = [n async for n in client.list_nodes("b4")]

    assert during.allocation_state == models.AllocationState.RESIZING
    assert during.target_dedicated_nodes == 2
    assert during.current_dedicated_nodes == 0
    assert after.allocation_state == models.AllocationState.STEADY
    assert (after.current_dedicated_nodes, after.current_low_priority_nodes) == (2, 1)
    assert starting == [models.BatchNodeState.STARTING] * 3
    assert [n.state for n in booted] == [models.BatchNodeState.IDLE] * 3
    assert sorted(str(n.is_dedicated) for n in booted) == ["False", "True", "True"]


async def test_b4_stop_resize_shows_stopping_then_steady(emulator: BatchEmulator, client: BatchClient) -> None:
    await client.create_pool(pool("b4s", low=2))

    poller = await client.begin_stop_pool_resize("b4s", polling_interval=0)
    during = await client.get_pool("b4s")
    emulator.clock.advance(STOP_RESIZE_SECONDS)
    await poller.result()
    after = await client.get_pool("b4s")

    assert during.allocation_state == models.AllocationState.STOPPING
    assert during.target_low_priority_nodes == 2
    assert after.allocation_state == models.AllocationState.STEADY
    assert after.current_low_priority_nodes == 0  # stopped before any VM was allocated


async def test_resize_while_resizing_is_409(client: BatchClient, raw: Raw) -> None:
    await client.create_pool(pool("busy", dedicated=1))

    response = await raw("POST", "/pools/busy/resize", {"targetDedicatedNodes": 3})

    assert response.status == 409
    assert response.json()["code"] == "PoolNotSteady"


async def test_shrinking_pool_removes_nodes(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "shrink", dedicated=3)

    await client.begin_resize_pool("shrink", models.BatchPoolResizeOptions(target_dedicated_nodes=1))
    leaving = [n.state async for n in client.list_nodes("shrink")]
    emulator.clock.advance(RESIZE_SECONDS)
    remaining = [n async for n in client.list_nodes("shrink")]

    assert sorted(leaving) == ["idle", "leavingpool", "leavingpool"]
    assert [n.state for n in remaining] == [models.BatchNodeState.IDLE]


async def test_b14_delete_pool_goes_deleting_then_404(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "b14", dedicated=1)

    poller = await client.begin_delete_pool("b14", polling_interval=0)
    during = await client.get_pool("b14")
    emulator.clock.advance(DELETE_SECONDS)
    await poller.result()

    assert during.state == models.BatchPoolState.DELETING
    with pytest.raises(ResourceNotFoundError):
        await client.get_pool("b14")


async def test_list_pools_and_task_slots_per_node(client: BatchClient) -> None:
    await client.create_pool(
        models.BatchPoolCreateOptions(id="slots", vm_size="standard_d2s_v3", task_slots_per_node=4)
    )
    await client.create_pool(pool("other"))

    listed = {p.id: p async for p in client.list_pools()}

    assert set(listed) == {"slots", "other"}
    assert listed["slots"].task_slots_per_node == 4


async def test_pool_node_counts_per_state(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "counts", dedicated=2, low=1)
    await client.create_pool(pool("counts-pending", low=2))

    counts = {c.pool_id: c async for c in client.list_pool_node_counts()}

    ready = counts["counts"]
    assert ready.dedicated is not None
    assert ready.low_priority is not None
    assert (ready.dedicated.idle, ready.dedicated.total) == (2, 2)
    assert (ready.low_priority.idle, ready.low_priority.total) == (1, 1)
    pending = counts["counts-pending"]
    assert pending.low_priority is not None
    assert pending.low_priority.total == 0


async def test_missing_vm_size_is_400_missing_required_property(raw: Raw) -> None:
    response = await raw("POST", "/pools", {"id": "novm"})

    assert response.status == 400
    body = response.json()
    assert body["code"] == "MissingRequiredProperty"
    assert {"key": "PropertyName", "value": "vmSize"} in body["values"]
