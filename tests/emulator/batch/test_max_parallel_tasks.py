"""A job's ``maxParallelTasks``: stored, returned on GET, changeable, refused at 0, and honoured by the scheduler.

Evidence: azure-batch 15.1.0's ``BatchJob``/``BatchJobCreateOptions``/``BatchJobUpdateOptions.max_parallel_tasks``
("The maximum number of tasks that can be executed in parallel for the job. The value of maxParallelTasks must be
-1 or greater than 0 if specified. If not specified, the default value is -1, which means there's no limit to the
number of tasks that can be run at once. You can update a job's maxParallelTasks after it has been created using
the update job API."), the REST API's ``JobAddParameter.maxParallelTasks`` since api-version 2020-09-01.12.0, and
the job recording of azure-api-fidelity.md §4.3 (``maxParallelTasks: -1`` when not given). A value out of range is
the service's usual 400 ``InvalidPropertyValue``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient

from tests.emulator.batch.conftest import BatchEmulator, RawResponse

pytestmark = pytest.mark.emulator

Raw = Callable[..., Awaitable[RawResponse]]


def gated(job_id: str, count: int, gate: Path) -> list[models.BatchTaskCreateOptions]:
    """Tasks that run until the test creates ``gate``: while they wait, they hold their slot."""
    command = f"/bin/sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done'"
    return [models.BatchTaskCreateOptions(id=f"{job_id}-{i}", command_line=command) for i in range(count)]


async def test_max_parallel_tasks_is_stored_returned_and_updated(client: BatchClient, raw: Raw) -> None:
    created = await raw("POST", "/jobs", {"id": "capped", "poolInfo": {"poolId": "pool"}, "maxParallelTasks": 3})
    before = (await raw("GET", "/jobs/capped")).json()["maxParallelTasks"]
    await client.update_job("capped", models.BatchJobUpdateOptions(max_parallel_tasks=-1))
    after = await client.get_job("capped")

    assert created.status == 201
    assert before == 3
    assert after.max_parallel_tasks == -1


@pytest.mark.parametrize(
    ("value", "why"),
    [(0, "0 would never run a task: the service wants -1 or more than 0"), (-2, "below -1"), ("2", "not an integer")],
)
async def test_max_parallel_tasks_out_of_range_is_refused(raw: Raw, value: object, why: str) -> None:
    refused = await raw("POST", "/jobs", {"id": "bad", "poolInfo": {"poolId": "pool"}, "maxParallelTasks": value})
    assert refused.status == 400, why
    assert refused.json()["code"] == "InvalidPropertyValue"
    assert {"key": "PropertyName", "value": "maxParallelTasks"} in refused.json()["values"]


async def test_the_scheduler_runs_at_most_max_parallel_tasks_of_a_job(
    emulator: BatchEmulator, client: BatchClient, tmp_path: Path
) -> None:
    """One node with 4 slots. Job ``capped`` (maxParallelTasks 2) has 4 waiting tasks, queued first: 2 run. Job
    ``free`` then gets its 2 tasks running on the 2 slots left: the scheduler passed over ``capped``'s tasks with
    slots free, because of the cap and nothing else. Once the gate opens, every task of both completes (the cap
    delays tasks, it never drops them)."""
    gate = tmp_path / "go"
    await emulator.ready_pool(client, "pool", dedicated=1, slots=4)
    await client.create_job(
        models.BatchJobCreateOptions(id="capped", pool_info=models.BatchPoolInfo(pool_id="pool"), max_parallel_tasks=2)
    )
    await client.create_tasks("capped", gated("capped", 4, gate))

    async def running(job_id: str, count: int) -> bool:
        return (await client.get_job_task_counts(job_id)).task_counts.running == count

    await emulator.eventually(lambda: running("capped", 2))
    await client.create_job(models.BatchJobCreateOptions(id="free", pool_info=models.BatchPoolInfo(pool_id="pool")))
    await client.create_tasks("free", gated("free", 2, gate))
    await emulator.eventually(lambda: running("free", 2))

    capped = (await client.get_job_task_counts("capped")).task_counts
    assert (capped.running, capped.active) == (2, 2)

    gate.touch()
    await emulator.run_to_completion(client, "capped", 4)
    await emulator.run_to_completion(client, "free", 2)
    counts = (await client.get_job_task_counts("capped")).task_counts
    assert (counts.succeeded, counts.failed) == (4, 0)
