"""resourceFiles fetched from Azurite blob storage with SAS URLs (httpUrl and storageContainerUrl)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.storage.blob import (
    BlobSasPermissions,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)
from azure.storage.blob.aio import BlobServiceClient

from amlops_emulator.azurite import Azurite, azurite_blob
from tests.emulator.batch.conftest import BatchEmulator

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as running:
        yield running


async def upload(azurite: Azurite, container: str, blobs: dict[str, bytes]) -> None:
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.create_container(container)
        for name, data in blobs.items():
            await service.get_blob_client(container, name).upload_blob(data)


def expiry() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


async def test_task_downloads_blob_by_sas_url(emulator: BatchEmulator, client: BatchClient, azurite: Azurite) -> None:
    await upload(azurite, "inputs", {"data/input.txt": b"hello from azurite\n"})
    sas = generate_blob_sas(
        azurite.account_name,
        "inputs",
        "data/input.txt",
        account_key=azurite.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=expiry(),
    )
    await emulator.ready_pool(client, "pool")
    await client.create_job(models.BatchJobCreateOptions(id="rf", pool_info=models.BatchPoolInfo(pool_id="pool")))
    await client.create_task(
        "rf",
        models.BatchTaskCreateOptions(
            id="reader",
            command_line="cat in/input.txt && ls -l in/input.txt | cut -c1-10",
            resource_files=[
                models.ResourceFile(
                    http_url=f"{azurite.blob_endpoint}/inputs/data/input.txt?{sas}",
                    file_path="in/input.txt",
                    file_mode="0750",
                )
            ],
        ),
    )

    await emulator.run_to_completion(client, "rf", 1)
    task = await client.get_task("rf", "reader")
    stdout = b"".join([c async for c in await client.download_task_file("rf", "reader", "stdout.txt")])

    assert task.execution_info is not None
    assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert stdout == b"hello from azurite\n-rwxr-x---\n"


async def test_task_downloads_container_prefix(emulator: BatchEmulator, client: BatchClient, azurite: Azurite) -> None:
    await upload(azurite, "batch", {"shards/a.txt": b"a", "shards/b.txt": b"b", "other/c.txt": b"c"})
    sas = generate_container_sas(
        azurite.account_name,
        "batch",
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=expiry(),
    )
    await emulator.ready_pool(client, "pool")
    await client.create_job(models.BatchJobCreateOptions(id="rc", pool_info=models.BatchPoolInfo(pool_id="pool")))
    await client.create_task(
        "rc",
        models.BatchTaskCreateOptions(
            id="lister",
            command_line="find data -type f | sort",
            resource_files=[
                models.ResourceFile(
                    storage_container_url=f"{azurite.blob_endpoint}/batch?{sas}",
                    blob_prefix="shards/",
                    file_path="data",
                )
            ],
        ),
    )

    await emulator.run_to_completion(client, "rc", 1)
    stdout = b"".join([c async for c in await client.download_task_file("rc", "lister", "stdout.txt")])

    assert stdout == b"data/shards/a.txt\ndata/shards/b.txt\n"


async def test_missing_blob_fails_the_task(emulator: BatchEmulator, client: BatchClient, azurite: Azurite) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(models.BatchJobCreateOptions(id="rm", pool_info=models.BatchPoolInfo(pool_id="pool")))
    await client.create_task(
        "rm",
        models.BatchTaskCreateOptions(
            id="orphan",
            command_line="true",
            resource_files=[models.ResourceFile(http_url=f"{azurite.blob_endpoint}/nowhere/x", file_path="x")],
        ),
    )

    await emulator.run_to_completion(client, "rm", 1)
    task = await client.get_task("rm", "orphan")

    assert task.execution_info is not None
    assert task.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert task.execution_info.failure_info is not None
    assert task.execution_info.failure_info.code in ("BlobNotFound", "BlobAccessDenied")
    assert task.execution_info.exit_code is None


def test_azurite_is_stopped_after_the_context(tmp_path: Path) -> None:
    with azurite_blob(tmp_path / "a") as running:
        endpoint = running.blob_endpoint

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint}?comp=list", timeout=2)
