"""10,000 tasks through ``create_tasks`` run to completion without leaking processes or file handles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient

from tests.emulator.batch.conftest import BatchEmulator

pytestmark = pytest.mark.emulator

TASKS = 10_000


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> list[int]:
    """Processes whose parent is this test process (zombies included: they too would be a leak)."""
    mine = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                mine.append(int(entry.name))
    return mine


async def test_ten_thousand_tasks_run_to_completion_without_leaks(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "many", dedicated=2, slots=24)
    baseline_children = children()
    await client.create_job(models.BatchJobCreateOptions(id="many", pool_info=models.BatchPoolInfo(pool_id="many")))
    fds_before = open_fds()
    tasks = [models.BatchTaskCreateOptions(id=f"t{i:05d}", command_line="true") for i in range(TASKS)]

    result = await client.create_tasks("many", tasks, max_concurrency=4)

    assert len(result.result_values or []) == TASKS
    assert {r.status for r in result.result_values or []} == {models.BatchTaskAddStatus.SUCCESS}
    # The documented way to end a job once every task is in: set terminatejob after adding them (B11).
    await client.update_job(
        "many", models.BatchJobUpdateOptions(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB)
    )

    async def job_completed() -> bool:
        return (await client.get_job("many")).state == models.BatchJobState.COMPLETED

    await emulator.eventually(job_completed, within=120)
    counts = await client.get_job_task_counts("many")
    assert counts.task_counts.succeeded == TASKS
    assert counts.task_counts.failed == 0
    assert children() == baseline_children
    # Tolerance for the client's connection pool; a per-task leak would show thousands.
    assert open_fds() - fds_before < 20
