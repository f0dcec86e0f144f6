"""The node agent really runs tasks: environment, exit codes, retries, maxWallClockTime, preemption, cleanup."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from azure.batch import models
from azure.batch.aio import BatchClient

from amlops_emulator.batch import BatchEmulatorSettings, build_batch_app
from amlops_emulator.clock import VirtualClock
from amlops_emulator.seed import Seed
from tests.emulator.batch.conftest import BatchEmulator

pytestmark = pytest.mark.emulator


def exists(pid: int) -> bool:
    """A /proc entry: a live process or a zombie nobody reaped."""
    return Path(f"/proc/{pid}").exists()


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed grandchild is reparented, so init may reap it a moment later)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def job(job_id: str, pool_id: str = "pool", **kwargs: Any) -> models.BatchJobCreateOptions:
    return models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id), **kwargs)


async def completed(emulator: BatchEmulator, client: BatchClient, job_id: str, task_id: str) -> models.BatchTask:
    async def probe() -> models.BatchTask | None:
        current = await client.get_task(job_id, task_id)
        return current if current.state == models.BatchTaskState.COMPLETED else None

    return await emulator.eventually(probe)


async def output(client: BatchClient, job_id: str, task_id: str, name: str = "stdout.txt") -> str:
    return b"".join([c async for c in await client.download_task_file(job_id, task_id, name)]).decode()


async def test_task_succeeds_with_batch_environment(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(
        job("env", common_environment_settings=[models.EnvironmentSetting(name="SHARED", value="from-job")])
    )
    script = (
        'echo "$AZ_BATCH_TASK_ID $AZ_BATCH_JOB_ID $AZ_BATCH_POOL_ID $AZ_BATCH_ACCOUNT_NAME $SHARED $OWN"; '
        'echo "$AZ_BATCH_NODE_ID"; pwd; echo "$AZ_BATCH_TASK_WORKING_DIR"'
    )
    await client.create_task(
        "env",
        models.BatchTaskCreateOptions(
            id="hello",
            command_line=f"/bin/sh -c '{script}'",
            environment_settings=[models.EnvironmentSetting(name="OWN", value="from-task")],
        ),
    )

    task = await completed(emulator, client, "env", "hello")
    lines = (await output(client, "env", "hello")).splitlines()

    assert task.execution_info is not None
    assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert task.node_info is not None
    assert lines[0] == "hello env pool amlopsbatch from-job from-task"
    assert lines[1] == task.node_info.node_id
    assert lines[2] == lines[3]
    assert Path(lines[2]).is_relative_to(emulator.state_dir)
    assert lines[2].endswith("/workitems/env/job-1/hello/wd")


async def test_failing_task_reports_exit_code_and_failure_info(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("fail"))
    await client.create_task("fail", models.BatchTaskCreateOptions(id="bad", command_line="echo oops >&2; exit 7"))

    task = await completed(emulator, client, "fail", "bad")

    info = task.execution_info
    assert info is not None
    assert info.exit_code == 7
    assert info.result == models.BatchTaskExecutionResult.FAILURE
    assert info.failure_info is not None
    assert info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
    assert info.failure_info.code == "FailureExitCode"
    assert await output(client, "fail", "bad", "stderr.txt") == "oops\n"


async def test_task_is_retried_up_to_max_task_retry_count(
    emulator: BatchEmulator, client: BatchClient, tmp_path: Path
) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("retry", constraints=models.BatchJobConstraints(max_task_retry_count=2)))
    attempts = tmp_path / "attempts"
    # Fails twice, succeeds on the third attempt: the job's retry count (2) is inherited by the task.
    command = f"echo x >> {attempts}; test $(wc -l < {attempts}) -ge 3"
    await client.create_task("retry", models.BatchTaskCreateOptions(id="flaky", command_line=command))
    await client.create_task(
        "retry",
        models.BatchTaskCreateOptions(
            id="hopeless", command_line="exit 1", constraints=models.BatchTaskConstraints(max_task_retry_count=1)
        ),
    )

    flaky = await completed(emulator, client, "retry", "flaky")
    hopeless = await completed(emulator, client, "retry", "hopeless")

    assert flaky.execution_info is not None
    assert flaky.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert flaky.execution_info.retry_count == 2
    assert flaky.execution_info.last_retry_time is not None
    assert attempts.read_text() == "x\nx\nx\n"
    assert hopeless.execution_info is not None
    assert hopeless.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert hopeless.execution_info.retry_count == 1


async def test_max_wall_clock_time_kills_the_process_group(
    emulator: BatchEmulator, client: BatchClient, tmp_path: Path
) -> None:
    await emulator.ready_pool(client, "pool")
    await client.create_job(job("slow"))
    pid_file = tmp_path / "child.pid"
    await client.create_task(
        "slow",
        models.BatchTaskCreateOptions(
            id="sleeper",
            # A background grandchild too: the whole process group must go, not just the shell.
            command_line=f"sleep 60 & echo $! > {pid_file}; wait",
            constraints=models.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=0.5), max_task_retry_count=3),
        ),
    )

    task = await completed(emulator, client, "slow", "sleeper")

    info = task.execution_info
    assert info is not None
    assert info.result == models.BatchTaskExecutionResult.FAILURE
    assert info.failure_info is not None
    assert info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
    assert info.failure_info.code == "TaskEnded"
    assert info.retry_count == 0  # a timeout is not retried
    grandchild = int(pid_file.read_text())
    assert not running(grandchild)


async def test_preempted_node_requeues_its_running_task(emulator: BatchEmulator, client: BatchClient) -> None:
    await emulator.ready_pool(client, "spot", dedicated=0, low=1)
    await client.create_job(job("spot", pool_id="spot"))
    await client.create_task("spot", models.BatchTaskCreateOptions(id="victim", command_line="sleep 60"))

    async def running() -> models.BatchTask | None:
        current = await client.get_task("spot", "victim")
        return current if current.state == models.BatchTaskState.RUNNING else None

    before = await emulator.eventually(running)
    assert before.node_info is not None
    node_id = before.node_info.node_id
    assert node_id is not None
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.root_url}/_emulator/batch/amlopsbatch/pools/spot/nodes/{node_id}/preempt"
        async with http.post(url) as response:
            preempted = await response.json()

    async def requeued() -> models.BatchTask | None:
        current = await client.get_task("spot", "victim")
        return current if current.state == models.BatchTaskState.ACTIVE else None

    after = await emulator.eventually(requeued)
    node = await client.get_node("spot", node_id)
    emulator.clock.advance(timedelta(hours=1).total_seconds())  # the Spot node comes back and reruns it
    again = await emulator.eventually(running)
    async with aiohttp.ClientSession() as http, http.get(f"{emulator.root_url}/_emulator/batch/stats") as stats:
        agent = (await stats.json())["nodeAgent"]

    assert preempted["requeuedTasks"] == ["jobs/spot/tasks/victim"]
    assert node.state == models.BatchNodeState.PREEMPTED
    assert after.execution_info is not None
    assert after.execution_info.requeue_count == 1
    assert after.execution_info.retry_count == 0
    assert again.execution_info is not None
    assert again.execution_info.requeue_count == 1
    assert agent["tasksRequeued"] == 1
    assert agent["processesLive"] == 1


async def test_stopping_the_emulator_kills_and_reaps_every_task(tmp_path: Path) -> None:
    clock = VirtualClock()
    app = build_batch_app(BatchEmulatorSettings(state_dir=tmp_path), clock, Seed.default())
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    emulator = BatchEmulator(f"http://127.0.0.1:{sock.getsockname()[1]}", clock, tmp_path, app)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    try:
        async with emulator.client() as client:
            await emulator.ready_pool(client, "pool", dedicated=1, slots=3)
            await client.create_job(job("stuck"))
            await client.create_tasks(
                "stuck",
                [
                    models.BatchTaskCreateOptions(id=f"s{i}", command_line=f"echo $$ > {pid_dir}/s{i}; exec sleep 300")
                    for i in range(3)
                ],
            )

            async def all_started() -> bool:
                return len(list(pid_dir.iterdir())) == 3 and all(p.read_text().strip() for p in pid_dir.iterdir())

            await emulator.eventually(all_started)
    finally:
        await runner.cleanup()

    pids = [int(p.read_text()) for p in pid_dir.iterdir()]
    # Reaped (no zombie left behind) and gone: /proc has no entry for any of them.
    assert [pid for pid in pids if exists(pid)] == []
    assert os.getpid() not in pids
