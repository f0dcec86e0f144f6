"""Tasks through azure-batch: B6-B10, B12, B15, task counts, task files, terminate/reactivate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.exceptions import ResourceNotFoundError

from tests.emulator.batch.conftest import BatchEmulator, RawResponse

pytestmark = pytest.mark.emulator

Raw = Callable[..., Awaitable[RawResponse]]


def task(task_id: str, command_line: str = "true", **kwargs: Any) -> models.BatchTaskCreateOptions:
    return models.BatchTaskCreateOptions(id=task_id, command_line=command_line, **kwargs)


@pytest.fixture
async def job(client: BatchClient) -> str:
    """A job on pool ``pool``, which does not exist yet: its tasks stay active until a test creates it."""
    await client.create_job(models.BatchJobCreateOptions(id="job", pool_info=models.BatchPoolInfo(pool_id="pool")))
    return "job"


async def test_b6_add_task_collection_reports_lowercase_success(job: str, raw: Raw) -> None:
    body = {"value": [{"id": "simple1", "commandLine": "true"}, {"id": "simple2", "commandLine": "true"}]}

    response = await raw("POST", f"/jobs/{job}/addtaskcollection", body)

    assert response.status == 200
    results = {r["taskId"]: r for r in response.json()["value"]}
    assert set(results) == {"simple1", "simple2"}
    for task_id, result in results.items():
        assert result["status"] == "success"
        assert result["eTag"]
        assert result["lastModified"]
        assert result["location"].endswith(f"/amlopsbatch/jobs/{job}/tasks/{task_id}")


async def test_b7_existing_task_id_is_a_clienterror_task_exists(client: BatchClient, job: str, raw: Raw) -> None:
    await client.create_task(job, task("dup"))

    response = await raw(
        "POST",
        f"/jobs/{job}/addtaskcollection",
        {"value": [{"id": "dup", "commandLine": "true"}, {"id": "new", "commandLine": "true"}]},
    )
    # create_tasks counts TaskExists as done, so re-submitting the same ids is safe.
    again = await client.create_tasks(job, [task("dup"), task("new")])

    results = {r["taskId"]: r for r in response.json()["value"]}
    assert results["new"]["status"] == "success"
    assert results["dup"]["status"] == "clienterror"
    assert results["dup"]["error"]["code"] == "TaskExists"
    assert results["dup"]["error"]["message"]["value"].startswith("The specified task already exists.\nRequestId:")
    assert len(again.result_values or []) == 2


async def test_b8_body_over_1mb_is_413_and_create_tasks_halves_the_chunk(
    client: BatchClient, job: str, raw: Raw
) -> None:
    padding = "x" * 12_000  # 100 such tasks are ~1.2 MB, 50 are well under 1 MB
    big = [{"id": f"big{i}", "commandLine": f"echo {padding}"} for i in range(100)]

    response = await raw("POST", f"/jobs/{job}/addtaskcollection", {"value": big})
    result = await client.create_tasks(job, [task(f"big{i}", f"echo {padding}") for i in range(100)])

    assert response.status == 413
    assert response.json()["code"] == "RequestBodyTooLarge"
    assert "Retry-After" not in response.headers
    assert len(result.result_values or []) == 100
    assert len([t async for t in client.list_tasks(job)]) == 100


async def test_more_than_100_tasks_in_one_request_is_rejected(job: str, raw: Raw) -> None:
    response = await raw(
        "POST",
        f"/jobs/{job}/addtaskcollection",
        {"value": [{"id": f"t{i}", "commandLine": "true"} for i in range(101)]},
    )

    assert response.status == 400
    assert response.json()["code"] == "InvalidPropertyValue"


async def test_b9_task_counts(emulator: BatchEmulator, client: BatchClient, job: str) -> None:
    # One node with two slots: ok and bad run first, then the two sleepers hold both slots while last waits.
    await client.create_tasks(job, [task("ok"), task("bad", "exit 3")])
    await client.create_tasks(job, [task("slow1", "sleep 30"), task("slow2", "sleep 30")])
    await client.create_task(job, task("last"))
    await emulator.ready_pool(client, "pool", dedicated=1, slots=2)

    async def settled() -> models.BatchTaskCountsResult | None:
        counts = await client.get_job_task_counts(job)
        return counts if counts.task_counts.completed == 2 and counts.task_counts.running == 2 else None

    result = await emulator.eventually(settled)

    counts, slots = result.task_counts, result.task_slot_counts
    assert (counts.active, counts.running, counts.completed) == (1, 2, 2)
    assert (counts.succeeded, counts.failed) == (1, 1)
    assert (slots.active, slots.running, slots.completed) == (1, 2, 2)


async def test_b10_task_lifecycle_and_execution_info(emulator: BatchEmulator, client: BatchClient, job: str) -> None:
    await client.create_task(job, task("life", "sleep 0.3"))
    queued = await client.get_task(job, "life")
    await emulator.ready_pool(client, "pool")

    async def running() -> bool:
        return (await client.get_task(job, "life")).state == models.BatchTaskState.RUNNING

    await emulator.eventually(running)
    await emulator.run_to_completion(client, job, 1)
    done = await client.get_task(job, "life")

    assert queued.state == models.BatchTaskState.ACTIVE
    assert queued.execution_info is not None
    assert (queued.execution_info.retry_count, queued.execution_info.requeue_count) == (0, 0)
    assert queued.execution_info.start_time is None
    assert done.state == models.BatchTaskState.COMPLETED
    assert done.previous_state == models.BatchTaskState.RUNNING
    info = done.execution_info
    assert info is not None
    assert info.result == models.BatchTaskExecutionResult.SUCCESS
    assert info.exit_code == 0
    assert (info.retry_count, info.requeue_count) == (0, 0)
    assert info.start_time is not None
    assert info.end_time is not None
    assert info.end_time >= info.start_time
    assert done.node_info is not None
    assert done.node_info.pool_id == "pool"


async def test_b12_list_tasks_follows_next_link(client: BatchClient, job: str, raw: Raw) -> None:
    await client.create_tasks(job, [task(f"t{i:03d}") for i in range(25)])

    first = (await raw("GET", f"/jobs/{job}/tasks?maxresults=10")).json()
    listed = [t.id async for t in client.list_tasks(job, max_results=10)]
    active = [t.id async for t in client.list_tasks(job, max_results=7, filter="state eq 'active'", select=["id"])]

    assert len(first["value"]) == 10
    assert "$skiptoken=" in first["odata.nextLink"]
    # create_tasks submits from the end of its queue, so the service saw the ids in another order.
    assert sorted(listed) == [f"t{i:03d}" for i in range(25)]
    assert active == listed


async def test_b15_request_id_always_client_request_id_only_on_request(client: BatchClient, job: str, raw: Raw) -> None:
    plain = await raw("GET", f"/jobs/{job}", headers={"client-request-id": "abc"})
    echoed = await raw("GET", f"/jobs/{job}", headers={"client-request-id": "abc", "return-client-request-id": "true"})
    failed = await raw("GET", "/jobs/none", headers={"client-request-id": "abc", "return-client-request-id": "true"})

    for response in (plain, echoed, failed):
        assert response.headers["request-id"]
    assert "client-request-id" not in plain.headers
    assert echoed.headers["client-request-id"] == "abc"
    assert failed.status == 404
    assert failed.headers["client-request-id"] == "abc"
    assert plain.headers["request-id"] != echoed.headers["request-id"]


async def test_task_files_are_downloadable(emulator: BatchEmulator, client: BatchClient, job: str) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_task(job, task("files", "echo out; echo err >&2; echo data > result.txt"))
    await emulator.run_to_completion(client, job, 1)

    stdout = b"".join([c async for c in await client.download_task_file(job, "files", "stdout.txt")])
    stderr = b"".join([c async for c in await client.download_task_file(job, "files", "stderr.txt")])
    result = b"".join([c async for c in await client.download_task_file(job, "files", "wd/result.txt")])
    names = {f.name async for f in client.list_task_files(job, "files", recursive=True)}

    assert (stdout, stderr, result) == (b"out\n", b"err\n", b"data\n")
    assert {"stdout.txt", "stderr.txt", "wd", "wd/result.txt"} <= names
    with pytest.raises(ResourceNotFoundError):
        await client.download_task_file(job, "files", "nope.txt")


async def test_terminate_active_task_and_reactivate_it(emulator: BatchEmulator, client: BatchClient, job: str) -> None:
    await client.create_task(job, task("again"))
    await client.terminate_task(job, "again")
    ended = await client.get_task(job, "again")

    await client.reactivate_task(job, "again")
    reactivated = await client.get_task(job, "again")
    await emulator.ready_pool(client, "pool")
    await emulator.run_to_completion(client, job, 1)
    final = await client.get_task(job, "again")

    assert ended.state == models.BatchTaskState.COMPLETED
    assert ended.execution_info is not None
    assert ended.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert reactivated.state == models.BatchTaskState.ACTIVE
    assert final.execution_info is not None
    assert final.execution_info.result == models.BatchTaskExecutionResult.SUCCESS


async def test_delete_task(client: BatchClient, job: str) -> None:
    await client.create_task(job, task("doomed"))

    await client.delete_task(job, "doomed")

    with pytest.raises(ResourceNotFoundError) as raised:
        await client.get_task(job, "doomed")
    assert raised.value.error is not None
    assert raised.value.error.code == "TaskNotFound"


async def test_b12_list_task_entries_carry_the_service_defaults(client: BatchClient, job: str, raw: Raw) -> None:
    """Tasks_ListTasks.json (azure-rest-api-specs, Batch data plane stable/2025-06-01): every entry of a list,
    even one never run, carries ``executionInfo`` ``{"retryCount": 0, "requeueCount": 0}`` (no start time yet),
    ``userIdentity`` ``{"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}`` when the task named no
    user, and ``requiredSlots`` (1 unless sent, as sent otherwise), beside ``constraints`` filled in full."""
    await client.create_task(job, task("plain"))
    await client.create_task(
        job,
        task(
            "admin",
            required_slots=2,
            user_identity=models.UserIdentity(
                auto_user=models.AutoUserSpecification(
                    scope=models.AutoUserScope.POOL, elevation_level=models.ElevationLevel.ADMIN
                )
            ),
        ),
    )

    listed = await raw("GET", f"/jobs/{job}/tasks")

    assert listed.status == 200
    entries = {entry["id"]: entry for entry in listed.json()["value"]}
    plain, admin = entries["plain"], entries["admin"]
    assert plain["state"] == "active"
    assert plain["executionInfo"] == {"retryCount": 0, "requeueCount": 0}
    assert plain["userIdentity"] == {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}
    assert plain["requiredSlots"] == 1
    assert set(plain["constraints"]) == {"maxWallClockTime", "retentionTime", "maxTaskRetryCount"}
    assert plain["constraints"]["maxWallClockTime"] == "P10675199DT2H48M5.4775807S"
    assert admin["requiredSlots"] == 2
    assert admin["userIdentity"] == {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}
    assert admin["executionInfo"] == {"retryCount": 0, "requeueCount": 0}
