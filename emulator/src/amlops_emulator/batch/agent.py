"""The node agent: schedules tasks onto the pools' simulated nodes and really runs them as local processes.

Each task attempt runs ``/bin/sh -c <commandLine>`` (Linux pool semantics) in its own process group, in a
task directory laid out as on a Batch node (``workitems/{job}/job-1/{task}/`` holding ``stdout.txt``,
``stderr.txt`` and the working directory ``wd/``). A node runs at most ``taskSlotsPerNode`` slots at once.

Outcomes follow the service: exit code 0 → ``success``; another exit code → retried up to
``maxTaskRetryCount`` (-1 = forever), then ``failure`` with ``FailureExitCode``; ``maxWallClockTime``
exceeded → the process group is killed, ``failure`` with ``TaskEnded`` and no retry; a node that is
preempted or leaves the pool → the task is requeued (``requeueCount``), not retried. Execution is real time;
pool and node transitions and ``retentionTime`` are on the virtual clock.

Every process is reaped: a finished attempt kills what is left of its group, and ``close`` kills and awaits
every attempt, so a stopped emulator leaves no children.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from amlops_emulator.batch import pools
from amlops_emulator.batch.model import Account, Job, Node, Pool, Task
from amlops_emulator.batch.wire import JSON, duration_seconds
from amlops_emulator.clock import VirtualClock
from amlops_emulator.processes import kill_group, tick

TICK_SECONDS = 0.05  # how often virtual-clock transitions are looked at when nothing else wakes the agent

# Why an attempt was stopped from outside its process.
REQUEUE = "requeue"  # node preempted or leaving the pool: run again elsewhere, requeueCount + 1
TERMINATE = "terminate"  # task or job terminated, job deleted: completed with TaskEnded


@dataclass
class AgentStats:
    tasks_started: int = 0  # attempts that reached ``running`` (processes spawned)
    tasks_completed: int = 0  # tasks that reached ``completed``
    tasks_retried: int = 0
    tasks_requeued: int = 0
    tasks_timed_out: int = 0

    def to_wire(self, live: int) -> JSON:
        return {
            "tasksStarted": self.tasks_started,
            "tasksCompleted": self.tasks_completed,
            "tasksRetried": self.tasks_retried,
            "tasksRequeued": self.tasks_requeued,
            "tasksTimedOut": self.tasks_timed_out,
            "processesLive": live,
        }


@dataclass
class Run:
    """One attempt of a task on a node."""

    account: Account
    job: Job
    pool: Pool
    node: Node
    task: Task
    process: asyncio.subprocess.Process | None = None
    abort: str | None = None
    abort_message: str = ""
    worker: asyncio.Task[None] | None = field(default=None, repr=False)


class NodeAgent:
    def __init__(self, accounts: dict[str, Account], clock: VirtualClock, state_dir: Path) -> None:
        self._accounts = accounts
        self._clock = clock
        self._root = state_dir / "batch"
        self._runs: dict[tuple[str, str], Run] = {}
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._retention: list[tuple[float, str]] = []  # (virtual POSIX time, directory) min-heap
        self._closing = False
        self.stats = AgentStats()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="batch-node-agent")

    async def close(self) -> None:
        """Kill and reap every task process; safe to call twice."""
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        workers = [run.worker for run in self._runs.values() if run.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def live_processes(self) -> int:
        return sum(1 for run in self._runs.values() if run.process and run.process.returncode is None)

    def node_root(self, account: str, pool_id: str, node_id: str) -> Path:
        return self._root / account / pool_id / node_id

    # ----------------------------------------------------------------- requests from the API

    def enqueue(self, account: Account, job: Job, task: Task) -> None:
        if job.pool_id is not None:
            account.ready[job.pool_id].append(task)
            self.wake()

    def refresh(self, account: Account) -> None:
        """Apply the pool transitions due on the virtual clock (called before serving a request)."""
        self._advance(account)
        self.wake()

    def evict(self, account: Account, nodes: list[Node], message: str) -> None:
        """Nodes preempted or leaving: their running tasks go back to the queue."""
        for node in nodes:
            for key in list(node.running):
                self._abort(account, key, REQUEUE, message)

    def terminate(self, account: Account, task: Task, message: str) -> None:
        """End a task: a running one is killed; an active one completes without running."""
        if (account.name, task.key) in self._runs:
            self._abort(account, task.key, TERMINATE, message)
        elif task.state == "active":
            self._complete_ended(account, task, message)

    def reactivate(self, account: Account, job: Job, task: Task) -> None:
        task.retry_count = 0
        task.exit_code, task.result, task.failure_info = None, None, None
        task.start_time = task.end_time = None
        task.set_state("active", self._clock.now())
        self.enqueue(account, job, task)

    # ----------------------------------------------------------------- the loop

    async def _loop(self) -> None:
        while True:
            await tick(self._wakeup, TICK_SECONDS)
            for account in self._accounts.values():
                self._advance(account)
                for pool_id in list(account.ready):
                    ready_pool = account.pools.get(pool_id)
                    if ready_pool is not None and ready_pool.state == "active":
                        self._schedule(account, ready_pool)
                for job in list(account.jobs.values()):
                    self.check_job(account, job)
            self._expire_retention()

    def _advance(self, account: Account) -> None:
        now = self._clock.now()
        for pool in list(account.pools.values()):
            if pools.advance(pool, now):
                del account.pools[pool.id]

    def _schedule(self, account: Account, pool: Pool) -> None:
        queue = account.ready[pool.id]
        nodes = [n for n in pool.nodes.values() if n.schedulable and n.free_slots > 0]
        held: list[Task] = []
        while queue and nodes:
            task = queue[0]
            job = account.jobs.get(task.job_id)
            if task.deleted or task.state != "active" or job is None:
                queue.popleft()
                continue
            if job.state in ("terminating", "completed", "deleting"):  # never scheduled again
                queue.popleft()
                continue
            # disabling, disabled, enabling, or as many tasks running as the job's maxParallelTasks: later
            if job.state != "active" or job.at_max_parallel_tasks:
                held.append(queue.popleft())
                continue
            node = _pick_node(nodes, task.required_slots, pool)
            if node is None:
                break
            queue.popleft()
            self._start(account, job, pool, node, task)
            nodes = [n for n in nodes if n.free_slots > 0]
        queue.extendleft(reversed(held))

    def _start(self, account: Account, job: Job, pool: Pool, node: Node, task: Task) -> None:
        now = self._clock.now()
        node.running[task.key] = task.required_slots
        node.set_state("running", now)
        task.pool_id, task.node_id = pool.id, node.id
        task.exit_code, task.result, task.failure_info, task.end_time = None, None, None, None
        task.set_state("preparing", now)
        run = Run(account, job, pool, node, task)
        self._runs[(account.name, task.key)] = run
        run.worker = asyncio.get_running_loop().create_task(self._attempt(run), name=task.key)

    # ----------------------------------------------------------------- one attempt

    async def _attempt(self, run: Run) -> None:
        task = run.task
        try:
            directory = self._task_directory(run)
            task.directory = directory
            workdir = directory / "wd"
            workdir.mkdir(parents=True, exist_ok=True)
            failure = await self._download_resource_files(task, workdir)
            if failure is not None:
                self._complete(run, None, failure)
            elif run.abort is None:
                await self._execute(run, directory, workdir)
            else:
                self._after_abort(run)
        finally:
            self._release(run)

    async def _execute(self, run: Run, directory: Path, workdir: Path) -> None:
        task = run.task
        with (directory / "stdout.txt").open("wb") as out, (directory / "stderr.txt").open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                str(task.spec["commandLine"]),
                cwd=workdir,
                env=self._environment(run, directory, workdir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: a kill reaches everything the task started
            )
        run.process = process
        if run.abort is not None:  # terminated or evicted while the process was being spawned
            kill_group(process.pid)
        self.stats.tasks_started += 1
        task.start_time = self._clock.now()
        task.set_state("running", task.start_time)
        limit = duration_seconds(task.spec["constraints"]["maxWallClockTime"])
        try:
            try:
                exit_code = await asyncio.wait_for(process.wait(), limit)
            except TimeoutError:
                kill_group(process.pid)
                await process.wait()
                self.stats.tasks_timed_out += 1
                self._complete(
                    run,
                    None,
                    _failure("TaskEnded", "The task ran longer than its maxWallClockTime and was terminated."),
                )
                return
        finally:
            # Reached also on cancellation (emulator shutdown): kill the group and reap the shell.
            kill_group(process.pid)
            if process.returncode is None:
                await asyncio.shield(process.wait())
        if run.abort is not None:
            self._after_abort(run)
        elif exit_code == 0:
            self._complete(run, 0, None)
        elif task.max_retries == -1 or task.retry_count < task.max_retries:
            self._retry(run)
        else:
            self._complete(
                run,
                exit_code,
                _failure("FailureExitCode", "The task process exited with an unexpected exit code"),
            )

    def _after_abort(self, run: Run) -> None:
        task, now = run.task, self._clock.now()
        if run.abort == REQUEUE:
            task.requeue_count += 1
            task.last_requeue_time = now
            task.set_state("active", now)
            self.stats.tasks_requeued += 1
            run.account.ready[run.pool.id].appendleft(task)
        else:
            self._complete(run, None, _failure("TaskEnded", run.abort_message))

    def _retry(self, run: Run) -> None:
        task, now = run.task, self._clock.now()
        task.retry_count += 1
        task.last_retry_time = now
        task.set_state("active", now)
        self.stats.tasks_retried += 1
        run.account.ready[run.pool.id].appendleft(task)

    def _complete(self, run: Run, exit_code: int | None, failure: JSON | None) -> None:
        task, now = run.task, self._clock.now()
        task.exit_code, task.failure_info = exit_code, failure
        task.result = "success" if failure is None else "failure"
        task.end_time = now
        task.set_state("completed", now)
        self.stats.tasks_completed += 1
        if failure is None:
            run.node.total_tasks_succeeded += 1
        self._schedule_retention(task)

    def _complete_ended(self, account: Account, task: Task, message: str) -> None:
        now = self._clock.now()
        task.failure_info = _failure("TaskEnded", message)
        task.result, task.end_time = "failure", now
        task.set_state("completed", now)
        self.stats.tasks_completed += 1
        job = account.jobs.get(task.job_id)
        if job is not None:
            self.check_job(account, job)

    def _release(self, run: Run) -> None:
        node, task = run.node, run.task
        self._runs.pop((run.account.name, task.key), None)
        node.running.pop(task.key, None)
        node.total_tasks_run += 1
        if node.state == "running" and not node.running:
            node.set_state("idle", self._clock.now())
        if not self._closing:
            self.check_job(run.account, run.job)
            self.wake()

    def _abort(self, account: Account, key: str, reason: str, message: str) -> None:
        run = self._runs.get((account.name, key))
        if run is None or run.abort is not None:
            return
        run.abort, run.abort_message = reason, message
        if run.process is not None and run.process.returncode is None:
            kill_group(run.process.pid)

    # ----------------------------------------------------------------- jobs

    def check_job(self, account: Account, job: Job) -> None:
        """Job-level transitions that follow from its tasks: terminatejob, terminating → completed, deletion."""
        now = self._clock.now()
        if job.state == "active":
            limit = duration_seconds(job.spec["constraints"]["maxWallClockTime"])
            if limit is not None and time.monotonic() - job.started_monotonic > limit:
                self.terminate_job(account, job, "MaxWallClockTimeExpiry")
            elif job.spec["onAllTasksComplete"] == "terminatejob" and job.all_tasks_complete:
                self.terminate_job(account, job, "AllTasksComplete")
        if job.state == "enabling":
            job.set_state("active", now)
            self.wake()
        if job.state == "disabling" and (job.disable_tasks == "wait" or not self._job_running(account, job)):
            job.set_state("disabled", now)
        if job.state in ("terminating", "deleting") and not self._job_running(account, job):
            if job.state == "terminating":
                job.end_time = now
                job.set_state("completed", now)
            elif account.jobs.pop(job.id, None) is job:
                # Ending a deleted job's waiting tasks calls back here once per task: remove the job only once.
                for task in job.tasks.values():
                    task.deleted = True
                    self._remove_directory(task)

    def terminate_job(self, account: Account, job: Job, reason: str) -> None:
        """Running tasks are ended; active ones stay active and are never scheduled (as the SDK documents)."""
        job.terminate_reason = reason
        job.set_state("terminating", self._clock.now())
        for run in [r for r in self._runs.values() if r.job is job]:
            self._abort(account, run.task.key, TERMINATE, "The task was ended because its job was terminated.")
        self.check_job(account, job)

    def delete_job(self, account: Account, job: Job) -> None:
        job.set_state("deleting", self._clock.now())
        for task in job.tasks.values():
            if task.state != "completed":
                self.terminate(account, task, "The task was ended because its job was deleted.")
        self.check_job(account, job)

    def disable_job(self, account: Account, job: Job, disable_tasks: str) -> None:
        job.disable_tasks = disable_tasks
        job.set_state("disabling", self._clock.now())
        reason = {"requeue": REQUEUE, "terminate": TERMINATE}.get(disable_tasks)
        if reason is not None:
            for run in [r for r in self._runs.values() if r.job is job]:
                self._abort(account, run.task.key, reason, "The task was ended because its job was disabled.")
        self.check_job(account, job)

    def enable_job(self, account: Account, job: Job) -> None:
        job.set_state("enabling", self._clock.now())
        self.wake()

    def _job_running(self, account: Account, job: Job) -> bool:
        return any(run.job is job for run in self._runs.values() if run.account is account)

    # ----------------------------------------------------------------- files and environment

    def _task_directory(self, run: Run) -> Path:
        task = run.task
        return (
            self.node_root(run.account.name, run.pool.id, run.node.id) / "workitems" / task.job_id / "job-1" / task.id
        )

    def _environment(self, run: Run, directory: Path, workdir: Path) -> dict[str, str]:
        node_root = self.node_root(run.account.name, run.pool.id, run.node.id)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(workdir),
            "AZ_BATCH_ACCOUNT_NAME": run.account.name,
            "AZ_BATCH_POOL_ID": run.pool.id,
            "AZ_BATCH_NODE_ID": run.node.id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if run.node.dedicated else "false",
            "AZ_BATCH_NODE_ROOT_DIR": str(node_root),
            "AZ_BATCH_NODE_SHARED_DIR": str(node_root / "shared"),
            "AZ_BATCH_NODE_STARTUP_DIR": str(node_root / "startup"),
            "AZ_BATCH_JOB_ID": run.job.id,
            "AZ_BATCH_TASK_ID": run.task.id,
            "AZ_BATCH_TASK_DIR": str(directory),
            "AZ_BATCH_TASK_WORKING_DIR": str(workdir),
        }
        for setting in (
            *run.job.spec.get("commonEnvironmentSettings", ()),
            *run.task.spec.get("environmentSettings", ()),
        ):
            env[str(setting["name"])] = str(setting.get("value", ""))
        return env

    async def _download_resource_files(self, task: Task, workdir: Path) -> JSON | None:
        """Fetch ``resourceFiles`` (``httpUrl`` or ``storageContainerUrl``, e.g. Azurite SAS URLs)."""
        files = task.spec.get("resourceFiles") or []
        if not files:
            return None
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        try:
            for spec in files:
                for url, target in await self._resource_file_sources(spec, workdir):
                    await self._download(url, target, spec.get("fileMode"))
        except _DownloadError as exc:
            return _failure(exc.code, exc.message, category="usererror")
        return None

    async def _resource_file_sources(self, spec: JSON, workdir: Path) -> list[tuple[str, Path]]:
        file_path = str(spec.get("filePath") or "")
        if spec.get("httpUrl"):
            if not file_path:
                raise _DownloadError("ResourceFileDownloadError", "filePath is required with httpUrl.")
            return [(str(spec["httpUrl"]), _inside(workdir, file_path))]
        if spec.get("storageContainerUrl"):
            container = str(spec["storageContainerUrl"])
            names = await self._list_blobs(container, str(spec.get("blobPrefix") or ""))
            parts = urlsplit(container)
            return [
                (
                    urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}")),
                    _inside(workdir, f"{file_path}/{name}" if file_path else name),
                )
                for name in names
            ]
        raise _DownloadError(
            "ResourceFileDownloadError", "Only httpUrl and storageContainerUrl resource files are emulated."
        )

    async def _list_blobs(self, container: str, prefix: str) -> list[str]:
        assert self._http is not None
        parts = urlsplit(container)
        query = "&".join(q for q in (parts.query, "restype=container&comp=list") if q)
        params = {"prefix": prefix} if prefix else None
        async with self._http.get(urlunsplit(parts._replace(query=query)), params=params) as response:
            if response.status != 200:
                raise _blob_error(response.status, container)
            document = ElementTree.fromstring(await response.read())
        return [name.text for name in document.iter("Name") if name.text]

    async def _download(self, url: str, target: Path, file_mode: object) -> None:
        assert self._http is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self._http.get(url) as response:
                if response.status != 200:
                    raise _blob_error(response.status, url)
                with target.open("wb") as sink:
                    async for chunk in response.content.iter_chunked(1 << 16):
                        sink.write(chunk)
        except aiohttp.ClientError as exc:
            raise _DownloadError("BlobDownloadMiscError", f"Downloading {url} failed: {exc}") from exc
        if file_mode:
            os.chmod(target, int(str(file_mode), 8))

    # ----------------------------------------------------------------- retention

    def _schedule_retention(self, task: Task) -> None:
        seconds = duration_seconds(task.spec["constraints"].get("retentionTime"))
        if seconds is not None and task.directory is not None and task.end_time is not None:
            deadline = (task.end_time + timedelta(seconds=seconds)).timestamp()
            heapq.heappush(self._retention, (deadline, str(task.directory)))

    def _expire_retention(self) -> None:
        now = self._clock.now().timestamp()
        while self._retention and self._retention[0][0] <= now:
            _, directory = heapq.heappop(self._retention)
            shutil.rmtree(directory, ignore_errors=True)

    def _remove_directory(self, task: Task) -> None:
        if task.directory is not None:
            shutil.rmtree(task.directory, ignore_errors=True)


class _DownloadError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _blob_error(status: int, url: str) -> _DownloadError:
    # The failure codes are the service's resource-file codes as far as known; not verified against traffic.
    code = {403: "BlobAccessDenied", 404: "BlobNotFound"}.get(status, "BlobDownloadMiscError")
    return _DownloadError(code, f"Downloading {urlsplit(url).path} failed with HTTP {status}.")


def _inside(workdir: Path, relative: str) -> Path:
    target = (workdir / relative).resolve()
    if not target.is_relative_to(workdir.resolve()):
        raise _DownloadError("ResourceFileDownloadError", f"filePath {relative!r} leaves the working directory.")
    return target


def _failure(code: str, message: str, category: str = "usererror") -> JSON:
    return {"category": category, "code": code, "message": message, "details": [{"name": "Message", "value": message}]}


def _pick_node(nodes: list[Node], slots: int, pool: Pool) -> Node | None:
    fitting = [n for n in nodes if n.free_slots >= slots]
    if not fitting:
        return None
    fill = str(pool.spec.get("taskSchedulingPolicy", {}).get("nodeFillType", "Spread")).lower()
    if fill == "pack":
        return min(fitting, key=lambda n: n.free_slots)
    return max(fitting, key=lambda n: n.free_slots)
