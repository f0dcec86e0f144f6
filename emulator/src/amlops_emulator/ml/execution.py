"""Runs on AmlCompute clusters: a queue per cluster that drives its autoscaler, nodes that really run the work.

This is the emulator-internal API the jobs REST surface calls (``RunExecutor.submit``, ``get``, ``runs``,
``cancel``); a run is what Azure ML calls a job's run, named by the job's name (its ``runId``).

Life of a run, with Azure ML's status names (azure-ai-ml's ``JobStatus`` enum and its descriptions):

- ``NotStarted`` → ``Queued`` at submit: the run waits on its AmlCompute "while waiting for all required nodes
  to be ready". The cluster (``arm/simulator.py``) counts it in what the autoscaler must provide: nodes from
  ``minNodeCount`` up to what the queued runs need (≤ ``maxNodeCount``, ≤ the core quota), allocated, prepared,
  then ``running`` with the run's id as each node's ``runId`` in listNodes. Runs are gang-scheduled first in,
  first out.
- ``Preparing`` once its nodes are its own: each node gets a working directory (Azure ML's
  ``/mnt/azureml/cr/j/{run}/exe/wd``, here ``{state_dir}/aml/nodes/{node}/cr/j/{run}/exe/wd``) holding a copy of
  the ``code`` folder, ``outputs/`` and ``user_logs/``, and a copy of each data input at :func:`input_dir` (the
  jobs surface fetched them once, ``ml/inputs.py``). An input with nothing at its path fails the run here, as
  Azure ML's data capability does (:func:`_input_not_found`). When the run ends, its copies of code and inputs
  (``{code_root}/{run}``, ``{input_root}/{run}``) are removed.
- ``Running`` (``startTimeUtc``) while the processes run: ``instance_count`` x ``process_count_per_instance``
  of them (``ml/distribution.py`` says which, with which environment and log name), each
  ``/bin/sh -c <command>`` in its own process group with stdout and stderr in its ``user_logs/`` file.
- ``Finalizing`` while the logs and ``outputs/`` of every node are collected into the run's directory
  (``{state_dir}/aml/runs/{run}/user_logs`` and ``/outputs``): "in output collection state".
- ``Completed`` when every process exited 0; ``Failed`` as soon as one exits otherwise (the others are
  killed, as mpirun does), with the error Azure ML's common runtime reports: code ``UserError``, "Execution
  failed. User process '<program>' exited with status code N. Please check log file '<log>' for error
  details. Error: <the log's last lines>". Evidence (2026-11-29 pass): no azure-sdk-for-python recording or
  azureml-examples file holds a failed run's body; a public project's Azure ML troubleshooting guide quotes the
  service's message as "Execution failed. User process 'python' exited with status code 2. Error: usage: ..."
  (the prefix, the exit code and the log's tail after "Error:" as here); the "Please check log file ..." sentence
  is kept from the Studio wording the emulator started with, unconfirmed by a public source. ``endTimeUtc``
  either way; the nodes go idle and, after ``nodeIdleTimeBeforeScaleDown``, away.
- ``limits.timeout``: azure-ai-ml's ``CommandJobLimits`` says "the maximum run duration, in seconds, after which
  the job will be cancelled": the processes are killed and the run ends ``Canceled``, with an error naming the
  timeout (code ``JobTimeout`` and its wording are the emulator's choice: no public failed-run body shows what
  Azure reports).
- ``cancel``: ``CancelRequested``, the processes are killed, then ``Canceled``; a queued run leaves the queue.
- Preemption of a low-priority node the run holds: the processes are killed and the run goes back to
  ``Queued`` in its place to start again from scratch on a full set of nodes (``requeue_count`` + 1). Azure ML
  restarts a preempted job: "having the job interrupted and later re-started" (hi-ml's "Using Cheap Low
  Priority VMs"); batch deployments requeue the lost work "by queuing the failed tasks to the cluster"
  (learn.microsoft.com, how-to-use-low-priority-batch). The preempted attempt's node directories go with the
  node; its logs are collected, then replaced by the next attempt's.

Time: the emulator's clock and ``--speed`` govern provisioning, node preparation and scale-down (the cluster);
user processes and ``limits.timeout`` run in real time. The statuses' times are read from the virtual clock.

Busy nodes: runs are the real source now. The ``/_emulator/arm/workload`` knob still adds synthetic busy nodes
(no process behind them) for the tests that drive the autoscaler directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from amlops_emulator.arm.compute import AML_COMPUTE, ComputeRecord
from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.simulator import Cluster, Node
from amlops_emulator.arm.state import ArmState
from amlops_emulator.ml import parallel
from amlops_emulator.ml.distribution import Distribution, DistributionError, Process, plan
from amlops_emulator.processes import free_port, kill_group, tick

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05  # how often cluster transitions on the virtual clock are looked at when nothing wakes the loop
LOG_TAIL_CHARS = 2000  # how much of a failed process's log its error quotes


class RunStatus(StrEnum):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})

# Why an attempt was stopped from outside its processes.
_CANCEL = "cancel"
_REQUEUE = "requeue"
_LOST = "lost"  # the compute was deleted under it


# A failed attempt's error body, made once the logs are collected (it may quote them).
Failure = Callable[[], dict[str, Any]]


class SubmitError(Exception):
    """A run Azure ML would refuse at submission: ``status`` and ``code`` for the REST layer's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class RunInput:
    """A data input of a run (``uri_file``, ``uri_folder``, ``mltable``), already fetched from its datastore into
    ``source`` (a file or a folder) by the jobs surface; each attempt copies it to every node at
    :func:`input_dir` before the processes start, as Azure ML's data capability mounts or downloads it."""

    name: str
    kind: str  # the REST ``jobInputType``: uri_file, uri_folder, mltable
    source: Path  # missing when nothing was at the input's path: the run fails as it prepares
    uri: str = ""  # as the job gave it, for that failure's message


@dataclass(frozen=True)
class ParallelTask:
    """What a ``parallel`` node asks of Azure ML's parallel runtime (azure-ai-ml ``parallel_run_function``, the
    REST parallel component's ``task`` and the node's settings), with the defaults azure-ai-ml documents. A run
    with a task runs it instead of ``command`` (``ml/parallel.py``)."""

    entry_script: str  # relative to the code folder
    input_data: str  # the input whose data is split into mini-batches (``${{inputs.<name>}}`` → ``<name>``)
    program_arguments: str = ""  # ``${{inputs.x}}`` / ``${{outputs.x}}`` are replaced per node, as in commands
    mini_batch_size: str | None = None  # files (file input) or a size such as "10 MB" (tabular input)
    partition_keys: tuple[str, ...] = ()  # take precedence over ``mini_batch_size``
    max_concurrency_per_instance: int = 1
    error_threshold: int = -1  # -1: ignore every failure
    mini_batch_error_threshold: int = -1
    max_retries: int = 2  # ``retry_settings.max_retries``: tries after the first (Azure ML's documented default)
    timeout_seconds: float = 60.0  # ``retry_settings.timeout``: per ``run(mini_batch)`` call
    logging_level: str = "INFO"
    append_row_to: str | None = None  # an output's name; None = summary only


@dataclass(frozen=True)
class RunRequest:
    run_id: str
    compute_id: str  # the AmlCompute's ARM id
    command: str
    instance_count: int = 1
    distribution: Mapping[str, Any] | None = None  # the REST ``distribution`` object
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    code: Path | None = None  # a local folder copied into every node's working directory
    timeout_seconds: float | None = None  # ``limits.timeout``, real seconds
    # Named outputs (``${{outputs.<name>}}``): a folder per node, see :func:`output_dir`; collected into
    # :attr:`Run.named_outputs`.
    outputs: tuple[str, ...] = ()
    inputs: tuple[RunInput, ...] = ()  # data inputs, copied to every node (``${{inputs.<name>}}`` → its path)
    parallel: ParallelTask | None = None  # a parallel node's work, run instead of ``command``
    # Called while the run is Finalizing (and before a failed or timed-out run ends), once its outputs are
    # collected: the jobs surface uploads them to the datastore here. A fault in it fails the run.
    finalize: Callable[[Run], Awaitable[None]] | None = field(default=None, compare=False)
    # Called while a parallel run runs, with its progress files (``parallel.progress_files``: path under logs/ →
    # content) each time they changed: the jobs surface uploads them. Calls never overlap, and none is in flight
    # once the run finalizes, so the final upload is the last word.
    progress: Callable[[Run, dict[str, bytes]], Awaitable[None]] | None = field(default=None, compare=False)


@dataclass
class Run:
    request: RunRequest
    distribution: Distribution
    directory: Path
    created: datetime
    status: RunStatus = RunStatus.NOT_STARTED
    history: list[tuple[RunStatus, datetime]] = field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: dict[str, Any] | None = None
    exit_codes: dict[str, int] = field(default_factory=dict)  # log name → exit code, of the last attempt
    requeue_count: int = 0
    node_ids: list[str] = field(default_factory=list)  # the nodes of the current (or last) attempt
    node_addresses: list[str] = field(default_factory=list)  # their private IP addresses, as listNodes shows them
    _attempt: asyncio.Task[None] | None = field(default=None, repr=False)
    _processes: list[asyncio.subprocess.Process] = field(default_factory=list, repr=False)
    _stop: str | None = field(default=None, repr=False)
    _requeues_seen: int = field(default=0, repr=False)

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def logs(self) -> Path:
        return self.directory / "user_logs"

    @property
    def outputs(self) -> Path:
        return self.directory / "outputs"

    @property
    def parallel_logs(self) -> Path:
        """A parallel run's ``logs/`` (``ml/parallel.py``): progress, job result, reports, per-process logs."""
        return self.directory / "logs"

    @property
    def named_outputs(self) -> Path:
        """``{name}/`` per named output, what every node wrote into it (the nodes of one run share the folder,
        as they share the blob path their mount writes to on Azure)."""
        return self.directory / "named_outputs"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def set_status(self, status: RunStatus, now: datetime) -> None:
        self.status = status
        self.history.append((status, now))


class RunExecutor:
    def __init__(self, arm: ArmState, state_dir: Path) -> None:
        self._arm = arm
        self._root = state_dir / "aml"
        self._runs: dict[str, Run] = {}
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="aml-run-executor")

    async def close(self) -> None:
        """Kill and reap every process; safe to call twice."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        attempts = [run._attempt for run in self._runs.values() if run._attempt is not None]
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)

    def reset(self) -> None:
        """``/_emulator/reset``: the computes are gone, so are their runs (processes killed) and their files."""
        for run in self._runs.values():
            self._stop_attempt(run, _LOST)
        self._runs.clear()
        for folder in (self.code_root, self.input_root):
            shutil.rmtree(folder, ignore_errors=True)

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def code_root(self) -> Path:
        """Where the jobs surface keeps each run's code folder (``{code_root}/{run}``) for the run's life: removed
        when the run ends."""
        return self._root / "code"

    @property
    def input_root(self) -> Path:
        """Where the jobs surface keeps each run's fetched data inputs (``{input_root}/{run}``, ``ml/inputs.py``)
        for the run's life: removed when the run ends."""
        return self._root / "inputs"

    # ----------------------------------------------------------------- the API

    def submit(self, request: RunRequest) -> Run:
        if request.run_id in self._runs:
            raise SubmitError(409, "UserError", f"A run named '{request.run_id}' already exists.")
        record = self._compute(request.compute_id)
        cluster = record.cluster
        assert cluster is not None
        assert record.aml is not None
        try:
            distribution = Distribution.from_rest(request.distribution)
            plan(distribution, request.instance_count, lambda: 0)  # validates the layout; ports come at start
        except DistributionError as exc:
            raise SubmitError(400, "UserError", str(exc)) from None
        if request.instance_count > record.aml.scale.max_nodes:
            raise SubmitError(
                400,
                "UserError",
                f"The job requests {request.instance_count} nodes but the compute '{record.name}' can scale to at "
                f"most {record.aml.scale.max_nodes} (maxNodeCount).",
            )
        if request.code is not None and not request.code.is_dir():
            raise SubmitError(400, "UserError", f"The code folder '{request.code}' does not exist.")
        if request.timeout_seconds is not None and request.timeout_seconds <= 0:
            raise SubmitError(400, "UserError", "limits.timeout must be positive.")
        if request.parallel is not None:
            _check_parallel(request, request.parallel)
        now = self._arm.clock.now()
        run = Run(request, distribution, self._root / "runs" / request.run_id, now)
        run.set_status(RunStatus.NOT_STARTED, now)
        self._runs[request.run_id] = run
        cluster.submit(now, request.run_id, request.instance_count)
        run.set_status(RunStatus.QUEUED, now)
        self.wake()
        return run

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def runs(self, compute_id: str | None = None) -> list[Run]:
        return [
            r for r in self._runs.values() if compute_id is None or r.request.compute_id.lower() == compute_id.lower()
        ]

    def cancel(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise SubmitError(404, "UserError", f"The run '{run_id}' was not found.")
        if run.done or run.status == RunStatus.CANCEL_REQUESTED:
            return run
        now = self._arm.clock.now()
        run.set_status(RunStatus.CANCEL_REQUESTED, now)
        if run._attempt is None:
            self._end(run, RunStatus.CANCELED, None)
        else:
            self._stop_attempt(run, _CANCEL)
        return run

    # ----------------------------------------------------------------- the loop

    def _compute(self, compute_id: str) -> ComputeRecord:
        try:
            record = self._arm.find_by_id(compute_id)
        except ArmError as exc:
            raise SubmitError(exc.status, exc.code, exc.message) from None
        if record is None:
            raise SubmitError(404, "UserError", f"The compute '{compute_id.rsplit('/', 1)[-1]}' was not found.")
        if record.compute_type != AML_COMPUTE or record.cluster is None or record.aml is None:
            raise SubmitError(
                400, "UserError", f"The compute '{record.name}' is not an AmlCompute cluster that can run jobs."
            )
        return record

    async def _loop(self) -> None:
        while True:
            await tick(self._wakeup, TICK_SECONDS)
            for run in [r for r in self._runs.values() if not r.done]:
                try:
                    self._watch(run)
                except Exception:  # one run's fault must not stop every other run's progress
                    log.exception("watching run %s failed", run.run_id)

    def _cluster(self, run: Run) -> Cluster | None:
        with contextlib.suppress(ArmError):
            record = self._arm.find_by_id(run.request.compute_id)  # advances the cluster to now
            return record.cluster if record is not None else None
        return None

    def _watch(self, run: Run) -> None:
        """Start an attempt when the run holds its nodes; stop it when it lost them or its compute."""
        cluster = self._cluster(run)
        if cluster is None:
            if run._attempt is None and run.status == RunStatus.QUEUED:
                self._end(run, RunStatus.FAILED, _compute_gone(run))
            else:
                self._stop_attempt(run, _LOST)
            return
        gang = cluster.runs.get(run.run_id)
        nodes = cluster.holding(run.run_id)
        if run._attempt is None:
            if run.status == RunStatus.QUEUED and nodes is not None and gang is not None:
                run._requeues_seen = gang.requeues
                self._start(run, nodes)
        elif gang is None or gang.requeues != run._requeues_seen:
            self._stop_attempt(run, _REQUEUE)

    def _start(self, run: Run, nodes: list[Node]) -> None:
        run._stop = None
        run.node_ids = [n.node_id for n in nodes]
        run.node_addresses = [str(n.to_wire()["privateIpAddress"]) for n in nodes]
        run.set_status(RunStatus.PREPARING, self._arm.clock.now())
        run._attempt = asyncio.get_running_loop().create_task(self._attempt(run), name=f"run-{run.run_id}")

    def _stop_attempt(self, run: Run, reason: str) -> None:
        if run._stop is None or reason == _LOST:
            run._stop = reason
        _kill(run)

    # ----------------------------------------------------------------- one attempt

    def _workdir(self, run: Run, node_id: str) -> Path:
        return self._root / "nodes" / node_id / "cr" / "j" / run.run_id / "exe" / "wd"

    async def _attempt(self, run: Run) -> None:
        workdirs = [self._workdir(run, node_id) for node_id in run.node_ids]
        try:
            processes = plan(run.distribution, run.request.instance_count, free_port)
            missing = next((i for i in run.request.inputs if not i.source.exists()), None)
            if missing is not None:
                self._end(run, RunStatus.FAILED, _input_not_found(missing))
                return
            await asyncio.to_thread(_prepare, workdirs, run.request.code, run.request.outputs, run.request.inputs)
            if run._stop is None:
                await self._execute(run, processes, workdirs)
            else:
                self._after_stop(run)
        except asyncio.CancelledError:
            self._stop_attempt(run, _LOST)
            raise
        except Exception as exc:  # the emulator must not leave a run hanging on its own fault
            log.exception("run %s failed in the emulator", run.run_id)
            self._end(run, RunStatus.FAILED, {"code": "SystemError", "message": f"The emulator failed: {exc}"})
        finally:
            for process in run._processes:
                kill_group(process.pid)
                if process.returncode is None:
                    await asyncio.shield(process.wait())
            run._processes = []
            await asyncio.shield(asyncio.to_thread(_remove, workdirs))
            run._attempt = None
            self.wake()

    async def _execute(self, run: Run, processes: list[Process], workdirs: list[Path]) -> None:
        if run.request.parallel is None:
            failure, timed_out = await self._command(run, processes, workdirs)
        else:
            failure, timed_out = await self._parallel(run, run.request.parallel, workdirs)
        succeeded = run._stop is None and not timed_out and failure is None
        if succeeded:
            run.set_status(RunStatus.FINALIZING, self._arm.clock.now())
        await asyncio.to_thread(_collect, workdirs, run.directory, run.request.outputs, run._stop != _REQUEUE)
        if run._stop is None and run.request.finalize is not None:
            await run.request.finalize(run)
        if run._stop is not None:
            self._after_stop(run)
        elif timed_out:
            self._end(run, RunStatus.CANCELED, _timeout_error(run.request.timeout_seconds))
        elif failure is not None:
            self._end(run, RunStatus.FAILED, failure())
        else:
            self._end(run, RunStatus.COMPLETED, None)

    def _running(self, run: Run) -> None:
        now = self._arm.clock.now()
        run.start_time = run.start_time or now
        run.set_status(RunStatus.RUNNING, now)

    async def _command(self, run: Run, processes: list[Process], workdirs: list[Path]) -> tuple[Failure | None, bool]:
        """The command in every process of the distribution: (the job's error, whether limits.timeout passed)."""
        for process in processes:
            run._processes.append(await self._spawn(run, process, workdirs[process.node_rank]))
        if run._stop is not None:  # stopped while spawning: reach the processes started after the kill
            _kill(run)
        self._running(run)
        failure, timed_out = await self._wait(run, processes)
        run.exit_codes = {
            p.log_name: code
            for p, proc in zip(processes, run._processes, strict=True)
            if (code := proc.returncode) is not None
        }
        return (None if failure is None else functools.partial(_user_error, run, *failure)), timed_out

    async def _parallel(self, run: Run, task: ParallelTask, workdirs: list[Path]) -> tuple[Failure | None, bool]:
        """Azure ML's parallel runtime instead of a command (``ml/parallel.py``); ``limits.timeout`` bounds it."""
        source = next(i for i in run.request.inputs if i.name == task.input_data)
        try:
            work = await asyncio.to_thread(parallel.plan, task, source.kind, source.source)
        except (parallel.PlanError, OSError, ValueError) as exc:
            error = {"code": "UserError", "message": f"The parallel input_data cannot be split: {exc}"}
            return (lambda: error), False
        nodes = [
            parallel.NodeLayout(
                address,
                workdir,
                {n: Path(path) for n, path in node_inputs(workdir, run.request.inputs).items()},
                {i.name: input_dir(workdir, i.name) for i in run.request.inputs},
                {name: output_dir(workdir, name) for name in run.request.outputs},
                _environment(run, workdir),
            )
            for address, workdir in zip(run.node_addresses, workdirs, strict=True)
        ]
        uploads = ProgressUploads(run, workdirs[0] / "logs")
        coordinator = parallel.Coordinator(
            task, work, nodes, run._processes, lambda: run._stop is not None, self._arm.clock.now, uploads.request
        )
        self._running(run)
        attempt = asyncio.ensure_future(coordinator.run())
        try:
            done, _ = await asyncio.wait({attempt}, timeout=run.request.timeout_seconds)
            if not done:  # limits.timeout: kill everything, let the coordinator see its processes gone
                coordinator.abandon()
                _kill(run)
            failure = await attempt
            return (None if failure is None else lambda: failure), not done
        finally:
            if not attempt.done():  # cancelled (emulator shutdown): the processes go with the run
                coordinator.abandon()
                _kill(run)
                await asyncio.gather(attempt, return_exceptions=True)
            await uploads.close()

    async def _spawn(self, run: Run, process: Process, workdir: Path) -> asyncio.subprocess.Process:
        log = workdir / process.log_name
        outputs = {name: str(output_dir(workdir, name)) for name in run.request.outputs}
        env = {**_environment(run, workdir), **process.env}  # Azure ML owns the distribution's variables
        with log.open("ab") as sink:
            return await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                render_inputs(render_outputs(run.request.command, outputs), node_inputs(workdir, run.request.inputs)),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: a kill reaches everything the command started
            )

    async def _wait(self, run: Run, processes: list[Process]) -> tuple[tuple[Process, int] | None, bool]:
        """Until all exit 0, one fails (the rest are killed), the timeout passes, or the run is stopped.
        Answers (the first failing process and its exit code, whether the timeout passed)."""
        loop = asyncio.get_running_loop()
        limit = run.request.timeout_seconds
        deadline = None if limit is None else loop.time() + limit
        waits: dict[asyncio.Future[int], Process] = {
            asyncio.ensure_future(p.wait()): plan_entry for p, plan_entry in zip(run._processes, processes, strict=True)
        }
        pending: set[asyncio.Future[int]] = set(waits)
        try:
            while pending:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if run._stop is not None:
                    return None, False
                if not done:
                    _kill(run)
                    return None, True
                failed = [(waits[d], d.result()) for d in done if d.result() != 0]
                if failed:
                    _kill(run)
                    return min(failed, key=lambda f: processes.index(f[0])), False
            return None, False
        finally:
            for future in pending:
                future.cancel()
            # Also reached on cancellation (emulator shutdown): kill every group (and what outlived its leader).
            for process in run._processes:
                kill_group(process.pid)
            await asyncio.shield(asyncio.gather(*(p.wait() for p in run._processes), return_exceptions=True))

    def _after_stop(self, run: Run) -> None:
        if run._stop == _REQUEUE:
            run.requeue_count += 1
            run.set_status(RunStatus.QUEUED, self._arm.clock.now())
        elif run._stop == _CANCEL:
            self._end(run, RunStatus.CANCELED, None)
        else:
            self._end(run, RunStatus.FAILED, _compute_gone(run))

    def _end(self, run: Run, status: RunStatus, error: dict[str, Any] | None) -> None:
        """A terminal status; the run's nodes go idle (or it leaves the queue) at the same instant."""
        now = self._arm.clock.now()
        run.error, run.end_time = error, now
        run.set_status(status, now)
        self._release(run)
        self._discard(run)

    def _discard(self, run: Run) -> None:
        """The run's copies of its code and data inputs: nothing reads them once it ended (its logs and outputs
        stay in its directory, for run history). Small folders, removed in line."""
        for folder in (self.code_root / run.run_id, self.input_root / run.run_id):
            shutil.rmtree(folder, ignore_errors=True)

    def _release(self, run: Run) -> None:
        cluster = self._cluster(run)
        if cluster is not None:
            cluster.release(self._arm.clock.now(), run.run_id)


class ProgressUploads:
    """A parallel run's progress files handed to its ``progress`` hook as they change: one call at a time, and a
    change during a call makes one more call after it (changes coalesce: a burst of mini-batches costs two
    uploads, not one each)."""

    def __init__(self, run: Run, logs: Path) -> None:
        self._run = run
        self._logs = logs
        self._pending = False
        self._task: asyncio.Task[None] | None = None

    def request(self) -> None:
        if self._run.request.progress is None:
            return
        self._pending = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        hook = self._run.request.progress
        assert hook is not None
        while self._pending:
            self._pending = False
            try:
                files = await asyncio.to_thread(parallel.progress_files, self._logs)
                await hook(self._run, files)
            except Exception:  # progress is informative: a failed upload leaves the next one (or the final) to tell
                log.warning("progress upload of run %s failed", self._run.run_id, exc_info=True)

    async def close(self) -> None:
        """No more calls: the one in flight (if any) ends before the run's logs are collected and finalized."""
        self._pending = False
        if self._task is not None:
            await asyncio.shield(self._task)


def _environment(run: Run, workdir: Path) -> dict[str, str]:
    """What every user process of a run sees, before its distribution's variables."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(workdir),
        "AZUREML_RUN_ID": run.run_id,
        **run.request.environment_variables,
        **{f"AZURE_ML_INPUT_{name}": path for name, path in node_inputs(workdir, run.request.inputs).items()},
        **{f"AZURE_ML_OUTPUT_{name}": str(output_dir(workdir, name)) for name in run.request.outputs},
    }


def _check_parallel(request: RunRequest, task: ParallelTask) -> None:
    """What Azure ML refuses of a parallel node before it runs (the emulator's wording)."""
    if task.input_data not in {i.name for i in request.inputs}:
        raise SubmitError(400, "UserError", f"input_data '{task.input_data}' is not a data input of the job.")
    if task.append_row_to is not None and task.append_row_to not in request.outputs:
        raise SubmitError(400, "UserError", f"append_row_to '{task.append_row_to}' is not an output of the job.")
    if task.max_concurrency_per_instance < 1 or task.max_retries < 0 or task.timeout_seconds <= 0:
        raise SubmitError(
            400,
            "UserError",
            "max_concurrency_per_instance must be >= 1, retry_settings.max_retries >= 0 and "
            "retry_settings.timeout > 0.",
        )
    kind = next(i.kind for i in request.inputs if i.name == task.input_data)
    try:
        if kind == "uri_folder" and not task.partition_keys:
            parallel.file_count(task.mini_batch_size)  # an mltable's unit is known once its MLTable is read
    except parallel.PlanError as exc:
        raise SubmitError(400, "UserError", str(exc)) from None


def _kill(run: Run) -> None:
    for process in run._processes:
        if process.returncode is None:
            kill_group(process.pid)


def output_dir(workdir: Path, name: str) -> Path:
    """Where a node's named output ``name`` lives: beside the working directory, as Azure ML's common runtime
    mounts it (``/mnt/azureml/cr/j/{run}/cap/data-capability/wd/{name}`` next to ``.../exe/wd``)."""
    return workdir.parent.parent / "cap" / "data-capability" / "wd" / name


def input_dir(workdir: Path, name: str) -> Path:
    """Where a node's data input ``name`` is: ``/mnt/azureml/cr/j/{run}/cap/data-capability/wd/INPUT_{name}`` on
    Azure ML (a ``uri_file`` input is the file of that name inside it)."""
    return workdir.parent.parent / "cap" / "data-capability" / "wd" / f"INPUT_{name}"


def node_inputs(workdir: Path, inputs: tuple[RunInput, ...]) -> dict[str, str]:
    """Each data input's path on the node of ``workdir``: its folder, or for a file input the file inside it."""
    return {
        i.name: str(input_dir(workdir, i.name) / i.source.name if i.source.is_file() else input_dir(workdir, i.name))
        for i in inputs
    }


def render_outputs(command: str, outputs: Mapping[str, str]) -> str:
    """``command`` with each ``${{outputs.<name>}}`` replaced by that output's folder on the node."""
    for name, path in outputs.items():
        command = command.replace("${{outputs." + name + "}}", path)
    return command


def render_inputs(command: str, inputs: Mapping[str, str]) -> str:
    """``command`` with each ``${{inputs.<name>}}`` replaced by that data input's path on the node."""
    for name, path in inputs.items():
        command = command.replace("${{inputs." + name + "}}", path)
    return command


def _prepare(
    workdirs: list[Path], code: Path | None, outputs: tuple[str, ...] = (), inputs: tuple[RunInput, ...] = ()
) -> None:
    for workdir in workdirs:
        shutil.rmtree(workdir.parent.parent, ignore_errors=True)  # a requeued run starts from scratch
        if code is not None:
            shutil.copytree(code, workdir)
        for sub in ("outputs", "user_logs"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        for name in outputs:
            output_dir(workdir, name).mkdir(parents=True, exist_ok=True)
        for data in inputs:
            _copy_input(data, input_dir(workdir, data.name))


def _copy_input(data: RunInput, target: Path) -> None:
    """A data input downloaded to the node: a folder's content into ``target``, a file inside it."""
    if data.source.is_dir():
        shutil.copytree(data.source, target)
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data.source, target / data.source.name)


def _collect(workdirs: list[Path], directory: Path, named: tuple[str, ...], outputs: bool) -> None:
    """Every node's ``user_logs/`` (and ``outputs/`` and named outputs, unless the attempt is being thrown away)
    into the run's."""
    shutil.rmtree(directory / "user_logs", ignore_errors=True)
    shutil.rmtree(directory / "logs", ignore_errors=True)
    for workdir in workdirs:
        for sub in ("user_logs", "logs", "outputs") if outputs else ("user_logs", "logs"):
            if (workdir / sub).is_dir():
                shutil.copytree(workdir / sub, directory / sub, dirs_exist_ok=True)
        for name in named if outputs else ():
            if output_dir(workdir, name).is_dir():
                shutil.copytree(output_dir(workdir, name), directory / "named_outputs" / name, dirs_exist_ok=True)
    (directory / "user_logs").mkdir(parents=True, exist_ok=True)


def _remove(workdirs: list[Path]) -> None:
    for workdir in workdirs:
        shutil.rmtree(workdir.parent.parent, ignore_errors=True)  # .../cr/j/{run}


def _user_error(run: Run, process: Process, exit_code: int) -> dict[str, Any]:
    words = shlex.split(run.request.command) or ["sh"]
    program = Path(words[0]).name
    log = run.directory / process.log_name
    tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip() if log.is_file() else ""
    return {
        "code": "UserError",
        "message": (
            f"Execution failed. User process '{program}' exited with status code {exit_code}. "
            f"Please check log file '{process.log_name}' for error details. Error: {tail}"
        ),
    }


def _input_not_found(data: RunInput) -> dict[str, Any]:
    """Azure ML's data capability failing to mount or download an input whose path holds nothing: error code
    ``ScriptExecution.StreamAccess.NotFound``, "The specified file or folder path doesn't exist" (the
    data-access troubleshooting guide, learn.microsoft.com ``how-to-troubleshoot-data-access``), category
    ``UserError``, target ``UriMountSession:INPUT_{name}``. As a run-history error: ``code`` the category,
    ``innerError.code`` the specific code (the nesting is the emulator's choice)."""
    return {
        "code": "UserError",
        "message": (
            f"The specified file or folder path doesn't exist: input '{data.name}' ({data.uri}). "
            "Check that the path exists in the datastore."
        ),
        "target": f"UriMountSession:INPUT_{data.name}",
        "innerError": {"code": "ScriptExecution.StreamAccess.NotFound"},
    }


def _timeout_error(seconds: float | None) -> dict[str, Any]:
    return {
        "code": "JobTimeout",
        "message": f"The job ran longer than its limits.timeout of {seconds:g} seconds and was canceled.",
    }


def _compute_gone(run: Run) -> dict[str, Any]:
    """The compute deleted under a queued or running run: ``ComputeNotFound`` and its wording are the emulator's
    choice (no public recording of a run whose compute was deleted was found)."""
    name = run.request.compute_id.rsplit("/", 1)[-1]
    return {"code": "ComputeNotFound", "message": f"The compute '{name}' the job ran on was deleted."}
