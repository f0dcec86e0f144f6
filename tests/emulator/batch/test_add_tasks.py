"""amlops' ``batch_jobs.add_tasks`` through the real azure-batch client against the Batch emulator: the REST API's
task JSON goes as it is (no SDK model per task), in collections of at most 100; a collection Batch finds over 1 MB
goes again in halves (B8, ``RequestBodyTooLarge``, as the SDK's own ``create_tasks`` does); tasks that exist
already are skipped (B7, ``TaskExists``: adding again after a crash is harmless); a collection Batch refuses stops
the add with Batch's code. B7 and B8 are the service's answers as the SDK's ``create_tasks`` handles them
(azure-batch ``_TaskWorkflowManager._bulk_add_tasks``); tests/emulator/batch/test_tasks.py proves the emulator
gives them."""

from __future__ import annotations

from typing import Any

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient

from amlops.azure import batch_jobs
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.emulator


@pytest.fixture
async def job(client: BatchClient) -> str:
    """A job on a pool that does not exist: its tasks stay active, nothing runs."""
    await client.create_job(models.BatchJobCreateOptions(id="job", pool_info=models.BatchPoolInfo(pool_id="pool")))
    return "job"


async def _tasks(client: BatchClient, job: str) -> dict[str, Any]:
    return {t.id: t async for t in client.list_tasks(job)}


async def test_every_task_goes_as_its_json_in_collections_of_at_most_100(client: BatchClient, job: str) -> None:
    bodies = [
        {
            "id": f"t{i:04d}",
            "commandLine": "/bin/sh -c true",
            "environmentSettings": [{"name": "INDEX", "value": str(i)}],
            "resourceFiles": [{"httpUrl": f"https://example.blob.core.windows.net/c/f{i}", "filePath": "in"}],
            "constraints": {"maxTaskRetryCount": 2},
        }
        for i in range(250)
    ]

    assert await batch_jobs.add_tasks(client, job, bodies, concurrency=3) == 250

    added = await _tasks(client, job)
    assert sorted(added) == [b["id"] for b in bodies]
    sample = added["t0123"]
    assert sample.command_line == "/bin/sh -c true"
    assert [(e.name, e.value) for e in sample.environment_settings or []] == [("INDEX", "123")]
    assert [r.file_path for r in sample.resource_files or []] == ["in"]
    assert sample.constraints is not None
    assert sample.constraints.max_task_retry_count == 2


async def test_a_collection_over_1_mb_goes_again_in_halves(client: BatchClient, job: str) -> None:
    padding = "x" * 12_000  # 100 such tasks are ~1.2 MB: Batch answers 413; 50 are well under 1 MB
    bodies = [{"id": f"big{i}", "commandLine": f"echo {padding}"} for i in range(100)]

    assert await batch_jobs.add_tasks(client, job, bodies) == 100

    assert len(await _tasks(client, job)) == 100


async def test_adding_again_skips_the_tasks_that_exist(client: BatchClient, job: str) -> None:
    first = [{"id": f"t{i}", "commandLine": "true"} for i in range(150)]
    await batch_jobs.add_tasks(client, job, first)

    again = [*first, {"id": "t150", "commandLine": "true"}]
    assert await batch_jobs.add_tasks(client, job, again) == 151

    assert len(await _tasks(client, job)) == 151


async def test_a_collection_batch_refuses_stops_the_add_with_its_code(client: BatchClient, job: str) -> None:
    bodies: list[dict[str, Any]] = [{"id": f"t{i}", "commandLine": "true"} for i in range(100)]
    bodies.append({"id": "no-command"})  # commandLine is required: Batch refuses the whole collection

    with pytest.raises(TerminalError) as refused:
        await batch_jobs.add_tasks(client, job, bodies, concurrency=1)

    assert refused.value.reason == "MissingRequiredProperty"
    assert len(await _tasks(client, job)) == 100
