"""Jobs through azure-batch: B5 create/defaults/409, B11 job completion, B13 conditional writes, terminate, delete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from tests.emulator.batch.conftest import API_VERSION, BatchEmulator, RawResponse

pytestmark = pytest.mark.emulator

Raw = Callable[..., Awaitable[RawResponse]]


def job(job_id: str, pool_id: str = "pool", **kwargs: Any) -> models.BatchJobCreateOptions:
    return models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id), **kwargs)


async def test_b5_create_job_fills_defaults_and_rejects_duplicates(client: BatchClient, raw: Raw) -> None:
    body = {
        "id": "b5",
        "poolInfo": {"poolId": "pool"},
        "onAllTasksComplete": "terminatejob",
        "constraints": {"maxTaskRetryCount": 2, "maxWallClockTime": "PT1H"},
    }
    created = await raw("POST", "/jobs", body)
    await client.create_job(job("plain"))

    got = (await raw("GET", "/jobs/b5")).json()
    plain = await client.get_job("plain")
    with pytest.raises(ResourceExistsError) as raised:
        await client.create_job(job("b5"))

    assert created.status == 201
    assert got["odata.metadata"].endswith("$metadata#jobs/@Element")
    assert got["priority"] == 0
    assert got["maxParallelTasks"] == -1
    assert got["onTaskFailure"] == "noaction"
    assert got["onAllTasksComplete"] == "terminatejob"
    assert got["usesTaskDependencies"] is False
    assert got["allowTaskPreemption"] is False
    assert got["state"] == "active"
    assert got["constraints"] == {"maxTaskRetryCount": 2, "maxWallClockTime": "PT1H"}
    assert got["executionInfo"]["poolId"] == "pool"
    assert "startTime" in got["executionInfo"]
    assert plain.constraints is not None
    assert plain.constraints.max_task_retry_count == 0
    assert (await raw("GET", "/jobs/plain")).json()["constraints"]["maxWallClockTime"] == "P10675199DT2H48M5.4775807S"
    assert raised.value.error is not None
    assert raised.value.error.code == "JobExists"


async def test_b11_terminatejob_completes_job_when_all_tasks_complete(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    await emulator.ready_pool(client, "pool", dedicated=1, slots=2)
    await client.create_job(job("b11", all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB))
    await client.create_tasks("b11", [models.BatchTaskCreateOptions(id=f"t{i}", command_line="true") for i in range(3)])

    async def completed() -> models.BatchJob | None:
        current = await client.get_job("b11")
        return current if current.state == models.BatchJobState.COMPLETED else None

    done = await emulator.eventually(completed)

    assert done.execution_info is not None
    assert done.execution_info.termination_reason == "AllTasksComplete"
    assert done.execution_info.end_time is not None
    assert done.previous_state == models.BatchJobState.TERMINATING


async def test_noaction_job_stays_active_after_its_tasks(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("stays"))
    await client.create_task("stays", models.BatchTaskCreateOptions(id="only", command_line="true"))

    await emulator.run_to_completion(client, "stays", 1)

    assert (await client.get_job("stays")).state == models.BatchJobState.ACTIVE


async def test_b13_stale_if_match_is_412_and_raises_resource_modified(client: BatchClient, raw: Raw) -> None:
    await client.create_job(job("b13"))
    stale = (await client.get_job("b13")).etag
    await client.update_job(
        "b13", models.BatchJobUpdateOptions(priority=5), etag=stale, match_condition=MatchConditions.IfNotModified
    )

    response = await raw("PATCH", "/jobs/b13", {"priority": 1}, headers={"If-Match": str(stale)})
    with pytest.raises(ResourceModifiedError):
        await client.update_job(
            "b13", models.BatchJobUpdateOptions(priority=7), etag=stale, match_condition=MatchConditions.IfNotModified
        )

    assert response.status == 412
    assert response.json()["code"] == "ConditionNotMet"
    assert "Retry-After" not in response.headers
    assert (await client.get_job("b13")).priority == 5


async def test_replace_job_resets_absent_properties_to_defaults(client: BatchClient) -> None:
    await client.create_job(job("put", priority=9, constraints=models.BatchJobConstraints(max_task_retry_count=3)))

    await client.replace_job(
        "put", models.BatchJob(pool_info=models.BatchPoolInfo(pool_id="pool"), allow_task_preemption=True)
    )
    replaced = await client.get_job("put")

    assert replaced.priority == 0
    assert replaced.allow_task_preemption is True
    assert replaced.constraints is not None
    assert replaced.constraints.max_task_retry_count == 0


async def test_terminate_job_ends_running_tasks(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("term"))
    await client.create_task("term", models.BatchTaskCreateOptions(id="long", command_line="sleep 60"))
    # The pool's only slot is taken by "long", so this one is still waiting when the job ends.
    await client.create_task("term", models.BatchTaskCreateOptions(id="waiting", command_line="true"))

    async def running() -> bool:
        return (await client.get_task("term", "long")).state == models.BatchTaskState.RUNNING

    await emulator.eventually(running)
    # azure-batch 15.1.0 cannot send a terminate without a body (content_type None fails serialisation) and
    # does not export BatchJobTerminateOptions, so the options go as a plain mapping.
    poller = await client.begin_terminate_job(
        "term",
        {"terminateReason": "Shutdown"},  # type: ignore[arg-type]
        polling_interval=0,
    )
    await poller.result()
    terminated = await client.get_job("term")
    long = await client.get_task("term", "long")
    waiting = await client.get_task("term", "waiting")

    assert terminated.state == models.BatchJobState.COMPLETED
    assert terminated.execution_info is not None
    assert terminated.execution_info.termination_reason == "Shutdown"
    assert long.state == models.BatchTaskState.COMPLETED
    assert long.execution_info is not None
    assert long.execution_info.failure_info is not None
    assert long.execution_info.failure_info.code == "TaskEnded"
    # Active tasks of a terminated job stay active and are never scheduled (the SDK's docstring).
    assert waiting.state == models.BatchTaskState.ACTIVE


async def test_delete_job_goes_away(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("gone"))
    await client.create_task("gone", models.BatchTaskCreateOptions(id="long", command_line="sleep 60"))

    poller = await client.begin_delete_job("gone", polling_interval=0)
    await poller.result()

    with pytest.raises(ResourceNotFoundError):
        await client.get_job("gone")
    assert [j.id async for j in client.list_jobs()] == []


async def test_delete_of_a_terminated_job_with_waiting_tasks_is_accepted_at_once(
    emulator: BatchEmulator, client: BatchClient, raw: Raw
) -> None:
    """A job's DELETE answers 202 with no DataServiceId, ETag or Last-Modified, and terminate 202 with
    DataServiceId ``…/jobs/{id}/terminate`` (azure-batch's recording
    ``sdk/batch/azure-batch/tests/recordings/test_batch.pyTestBatchtest_batch_jobs[async].json``). The emulator
    answered 500 when a terminated job still had waiting tasks (its node agent removed the job once per task);
    azure-core's retry hid it. A client without retries sees the first answer."""
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("ended"))
    await client.create_task("ended", models.BatchTaskCreateOptions(id="long", command_line="sleep 60"))
    for waiting in ("w1", "w2"):
        await client.create_task("ended", models.BatchTaskCreateOptions(id=waiting, command_line="true"))

    async def running() -> bool:
        return (await client.get_task("ended", "long")).state == models.BatchTaskState.RUNNING

    await emulator.eventually(running)
    terminate = await client.begin_terminate_job(
        "ended",
        {"terminateReason": "Shutdown"},  # type: ignore[arg-type]
        polling_interval=0,
    )
    await terminate.result()

    terminated = await raw("GET", "/jobs/ended")
    async with emulator.client(retry_total=0) as once:
        answered = await once.send_request(HttpRequest("DELETE", f"/jobs/ended?api-version={API_VERSION}"))

    assert terminated.json()["state"] == "completed"
    assert answered.status_code == 202
    for header in ("DataServiceId", "ETag", "Last-Modified", "Location"):
        assert header not in answered.headers

    with pytest.raises(ResourceNotFoundError):
        await client.get_job("ended")


async def test_disable_then_enable_job_holds_and_releases_tasks(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("held"))
    disable = await client.begin_disable_job(
        "held", models.BatchJobDisableOptions(disable_tasks="requeue"), polling_interval=0
    )
    await disable.result()
    await client.create_task("held", models.BatchTaskCreateOptions(id="t", command_line="true"))
    held = await client.get_job("held")
    emulator.clock.advance(timedelta(minutes=5).total_seconds())
    still_active = await client.get_task("held", "t")

    enable = await client.begin_enable_job("held", polling_interval=0)
    await enable.result()
    await emulator.run_to_completion(client, "held", 1)

    assert held.state == models.BatchJobState.DISABLED
    assert still_active.state == models.BatchTaskState.ACTIVE


async def test_terminate_without_reason_records_user_terminate(client: BatchClient, raw: Raw) -> None:
    await client.create_job(job("bare"))

    response = await raw("POST", "/jobs/bare/terminate")
    ended = await client.get_job("bare")

    assert response.status == 202
    assert ended.execution_info is not None
    assert ended.execution_info.termination_reason == "UserTerminate"
    assert ended.state == models.BatchJobState.COMPLETED
