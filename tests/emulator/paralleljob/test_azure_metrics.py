"""Every Azure service the operator talks to is counted by the one recorder (``amlops.azure.pipeline``):
``amlops_azure_requests_total{service,operation,code}`` and its latency for the Batch data plane and Blob storage
as for ARM, with operations named by kind of request, never by a pool, job or blob name.

The Batch client is the one the operator builds (``AzureClients.batch``) against the Batch emulator; the Blob
store is the operator's (``BlobStore.from_connection_string``) against Azurite. Status codes are the services':
404 ``PoolNotFound`` (Batch REST reference, Pool - Get) and 404 ``BlobNotFound`` (Blob service error codes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from amlops.azure import batch
from amlops.azure.blob import BlobFolder, BlobStore
from amlops.azure.clients import AzureClients
from amlops.settings import Settings
from amlops_emulator.azurite import Azurite
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY
from tests.emulator.batch.conftest import BatchEmulator

pytestmark = pytest.mark.emulator

REQUESTS = "amlops_azure_requests_total"
LATENCY = "amlops_azure_request_duration_seconds_count"


def requests(service: str, operation: str, code: str) -> float:
    return REGISTRY.get_sample_value(REQUESTS, {"service": service, "operation": operation, "code": code}) or 0.0


def latencies(service: str, operation: str) -> float:
    return REGISTRY.get_sample_value(LATENCY, {"service": service, "operation": operation}) or 0.0


def operations(service: str) -> set[str]:
    return {
        sample.labels["operation"]
        for metric in REGISTRY.collect()
        if metric.name == REQUESTS.removesuffix("_total")
        for sample in metric.samples
        if sample.labels.get("service") == service
    }


@pytest.fixture
async def clients() -> AsyncIterator[AzureClients]:
    built = AzureClients(Settings(static_token="t"))
    yield built
    await built.close()


async def test_batch_requests_are_counted_as_batch(emulator: BatchEmulator, clients: AzureClients) -> None:
    client = clients.batch(emulator.endpoint, DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY)
    before = {
        "add": requests("batch", "pools.add", "201"),
        "get": requests("batch", "pools.get", "200"),
        "missing": requests("batch", "pools.get", "404"),
        "list": requests("batch", "pools.list", "200"),
        "latency": latencies("batch", "pools.get"),
    }

    assert await batch.create_pool(client, {"id": "metrics-pool-1", "vmSize": "standard_d2s_v3"})
    assert await batch.get_pool(client, "metrics-pool-1") is not None
    assert await batch.get_pool(client, "metrics-pool-404") is None
    await batch.list_pools(client)

    assert requests("batch", "pools.add", "201") == before["add"] + 1
    assert requests("batch", "pools.get", "200") == before["get"] + 1
    assert requests("batch", "pools.get", "404") == before["missing"] + 1
    assert requests("batch", "pools.list", "200") == before["list"] + 1
    assert latencies("batch", "pools.get") == before["latency"] + 2
    assert not any("metrics-pool" in operation for operation in operations("batch")), "no names in labels"


async def test_blob_requests_are_counted_as_blob(azurite: Azurite) -> None:
    folder = BlobFolder("metrics", "run-1/")
    before = {
        "create": requests("blob", "container.put", "201"),
        "put": requests("blob", "blob.put", "201"),
        "get": requests("blob", "blob.get", "206"),
        "missing": requests("blob", "blob.get", "404"),
        "list": requests("blob", "container.list", "200"),
    }
    async with BlobStore.from_connection_string(azurite.connection_string) as store:
        await store.create_container("metrics")
        await store.write(folder, "a.txt", b"hello")
        assert await store.read(folder, "a.txt", 0, 5) == b"hello"
        assert await store.read(folder, "absent.txt") is None
        assert [b.name async for b in store.list_folder(folder)] == ["a.txt"]

    assert requests("blob", "container.put", "201") == before["create"] + 1
    assert requests("blob", "blob.put", "201") == before["put"] + 1
    assert requests("blob", "blob.get", "206") == before["get"] + 1
    assert requests("blob", "blob.get", "404") == before["missing"] + 1
    assert requests("blob", "container.list", "200") == before["list"] + 1
    assert not any("a.txt" in operation or "run-1" in operation for operation in operations("blob"))
