"""ParallelJob's ExternalClient on an AmlCompute: one Azure ML pipeline job whose one node is the seed's own
``parallel_run_function`` (a parallel job exists in Azure ML's REST API only as a node of a pipeline job).

- ``create``: write ``task.codeConfigMap``'s files to a temporary folder that azure-ai-ml uploads, build the
  pipeline job (``paralleljob_aml.parallel_run`` → ``paralleljob_aml_job.build_pipeline_job``) with the owner tag,
  and submit it as ``pj-<uid>[-<attempt>]``: a submission repeated after a crash finds the job of that name
  instead of creating a second one (``MlJobs.submit``).
- ``observe``: the job's status from the workspace's shared job listing (one list call per interval for every job
  of the workspace); ``jobs.get`` once per submitted job (its Studio link, its parallel child once Azure ML made
  it) and once it has finished (its error). While it runs, the child's ``processed_mini-batches.csv`` (and, until
  it is known, the total from its ``job_progress_overview``), which the parallel runtime uploads as mini-batches
  settle, give the counts Batch reports too: read at most once per ``requeue_seconds`` per job
  (:class:`RunningProgress`), one blob read and no Azure ML call, however many jobs the workspace runs; once it
  has finished, read once more for the final counts. Finished: answered from the status with no Azure call
  (``job.sticky``), as on Batch.
- ``update``: cancel (suspend, activeDeadlineSeconds), or submit the next attempt (resume after suspend: Azure
  ML cannot resume a canceled parallel job, the new job runs every mini-batch again).
- ``delete``: cancel the job (idempotent); the object goes once the job is terminal or gone.

The AmlCompute scales itself up for the job and down after it (its own autoscaling): nothing of the compute is
amlops' to release, so a finished job has released everything once Azure ML says it is terminal.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from amlops.api.paralleljob import ParallelJobSpec
from amlops.azure.clients import AzureClients
from amlops.external import paralleljob_map as m
from amlops.external.code_config_map import code_files
from amlops.external.ml_target import MlTarget, aml_compute, ml_target
from amlops.external.ownership import owner_exists
from amlops.external.paralleljob_aml import (
    conda_specification,
    job_name,
    overview_total,
    parallel_run,
    report_counts,
)
from amlops.external.paralleljob_env import MAX_CONDA_FILE_BYTES, REASON_CONDA_FILE_ALIASES, load_yaml, too_large
from amlops.external.paralleljob_output import OUTPUT_FILE
from amlops.external.ports import ClusterObjects, SecretReader
from amlops.reconcile import job
from amlops.reconcile.errors import RetryableError, TerminalError
from amlops.reconcile.external import Observation, Pending, intent_of
from amlops.reconcile.managed import OWNER_TAG, Managed
from amlops.status import REASON_INVALID_SPEC, EventRecord, now_iso

Mr = Managed[ParallelJobSpec]

REASON_WAITING_FOR_COMPUTE = "WaitingForCompute"
REASON_COMPUTE_GONE = "ComputeGone"
# Azure ML ended the job without amlops asking (canceled in Studio or with the CLI): Failed, as a Batch job
# terminated from outside is (JobTerminated).
REASON_JOB_CANCELED = "JobCanceled"
REASON_JOB_FAILED = "JobFailed"  # Azure ML gave no error code with the failure
WAIT_FOR_COMPUTE_SECONDS = 5.0
# Azure ML's job statuses (azure-ai-ml ``JobStatus``): the ones after which nothing runs any more.
TERMINAL: Final = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})
CANCELING: Final = frozenset({"CancelRequested"})
# Ended by itself: its error and report are read (a canceled job's counts would say nothing about the rows).
FINISHED: Final = frozenset({"Completed", "Failed"})


# ------------------------------------------------------------------------------------------- pure decisions


def batch_only_fields(spec: ParallelJobSpec) -> list[str]:
    """Fields that only the Batch backend honours, set on a job whose compute is an AmlCompute: an AmlCompute is
    a cluster of its own VM size and priority in its own workspace storage, so they would be silently ignored."""
    fields = []
    if spec.compute.pool_id is not None:
        fields.append("compute.poolId")
    if spec.compute.instance_type is not None:  # the size of a pool amlops would create (resources: Azure ML's)
        fields.append("compute.instanceType")
    if spec.compute.low_priority:
        fields.append("compute.lowPriority")
    if spec.storage_credentials is not None:
        fields.append("storageCredentials")
    return fields


def refuse_batch_only(spec: ParallelJobSpec, compute: str) -> None:
    """InvalidSpec naming the Batch-only fields set (see :func:`batch_only_fields`), before anything is created."""
    fields = batch_only_fields(spec)
    if fields:
        raise TerminalError(
            REASON_INVALID_SPEC,
            f"{', '.join(fields)} apply only on a BatchCompute; {compute} is an AmlCompute (its VM size, priority and "
            "workspace storage are the cluster's): remove them",
        )


@dataclass(frozen=True)
class Facts:
    """What is known of the current Azure ML job: its status (Azure ML's words), whether the object is suspended
    (``spec.suspend``) or was (``status.phase`` Suspended: amlops canceled it), the error of a failed job, and the
    counts of the parallel runtime's report once the job has finished."""

    status: str
    suspend: bool = False
    was_suspended: bool = False
    elapsed: float | None = None
    deadline: int | None = None
    error: tuple[str, str] | None = None
    counts: m.Counts | None = None


def decide(facts: Facts) -> m.Decision:
    """The phase, and the one write that moves the job on: ``suspend`` and ``fail`` cancel the Azure ML job,
    ``resume`` submits the next attempt (None: wait for Azure ML)."""
    counts = facts.counts or m.Counts(0)
    deadline = job.deadline_exceeded(facts.deadline, facts.elapsed)
    if facts.status in TERMINAL:
        return _ended(facts, counts, deadline)
    if deadline is not None:
        if facts.status in CANCELING:
            return m.Decision("Running", counts, None, *deadline)
        return m.Decision("Running", counts, "fail", *deadline)
    if facts.suspend or facts.status in CANCELING:
        action: m.Action | None = None if facts.status in CANCELING else "suspend"
        return m.Decision("Running", counts, action, job.REASON_RUNNING, "canceling the Azure ML job")
    return m.Decision("Running", counts, None, job.REASON_RUNNING, f"the Azure ML job is {facts.status}")


def _ended(facts: Facts, counts: m.Counts, deadline: tuple[str, str] | None) -> m.Decision:
    if facts.status == "Completed":
        return m.Decision("Complete", counts, None, job.REASON_SUCCEEDED, finished_message(counts))
    if facts.status == "Failed":
        reason, message = facts.error or (REASON_JOB_FAILED, "the Azure ML job failed")
        return m.Decision("Failed", counts, None, reason, message)
    if deadline is not None:  # amlops canceled it for activeDeadlineSeconds
        return m.Decision("Failed", counts, None, *deadline)
    if facts.suspend:
        return m.Decision("Suspended", counts, None, job.REASON_SUSPENDED, job.SUSPENDED_MESSAGE)
    if facts.status == "Canceled" and facts.was_suspended:
        return m.Decision("Running", counts, "resume", job.REASON_RUNNING, "submitting a new Azure ML job")
    if facts.status == "Canceled":
        return m.Decision("Failed", counts, None, REASON_JOB_CANCELED, "the Azure ML job was canceled outside amlops")
    return m.Decision("Failed", counts, None, facts.status, f"the Azure ML job ended as {facts.status}")


def finished_message(counts: m.Counts) -> str:
    if counts.total == 0:
        return "the Azure ML job completed"
    text = f"{counts.succeeded} of {counts.total} mini-batches succeeded"
    return text + (f", {counts.failed} failed" if counts.failed else "")


def output_uri(spec: ParallelJobSpec) -> str | None:
    """``parallel_run_step.txt`` in the appendRowTo output (as the Batch backend reports it)."""
    if not spec.task.append_row_to:
        return None
    name = spec.task.append_row_to.removeprefix("${{outputs.").removesuffix("}}")
    output = spec.outputs.get(name)
    return None if output is None else f"{output.uri.rstrip('/')}/{OUTPUT_FILE}"


# Status fields the parallel runtime's report gives: cleared until it is known (a new attempt, a job not started).
COUNT_FIELDS = ("miniBatches", "items", "progress", "progressPercentage", "estimatedRemainingSeconds",
                "failedMiniBatches")  # fmt: skip
# Azure ML statuses before the job's parallel child runs: no report to read yet.
NOT_RUNNING: Final = frozenset({"NotStarted", "Queued", "Preparing", "Starting", "Provisioning"})


def status_fields(decision: m.Decision, elapsed: float | None) -> dict[str, Any]:
    """The Batch backend's status contract (``paralleljob_map.status_fields``) once the report says how many
    mini-batches there are (while the job runs and once it has finished); before that only the phase."""
    if decision.counts.total > 0:
        return m.status_fields(decision, elapsed)
    return {"phase": decision.phase, **dict.fromkeys(COUNT_FIELDS)}


@dataclass
class RunningProgress:
    """What is known of one Azure ML job's progress between passes: its parallel child (found once), the
    mini-batches its overview says were created, the counts last read and when (monotonic seconds)."""

    child: str | None = None
    total: int | None = None
    counts: m.Counts | None = None
    read_at: float | None = None

    def due(self, now: float, interval: float) -> bool:
        """A read is due: never read, or read ``interval`` seconds ago or more."""
        return self.read_at is None or now - self.read_at >= interval


# ------------------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Step:
    """observe()'s decision for update(): the action and the attempt it acts on."""

    decision: m.Decision
    attempt: int


class AzureMlParallelJobClient:
    def __init__(
        self,
        clients: AzureClients,
        secrets: SecretReader,
        objects: ClusterObjects,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._secrets = secrets
        self._objects = objects
        self._clock = clock
        # Azure ML job name → its progress (:class:`RunningProgress`): dropped when the job is seen finished and
        # when its object goes (:meth:`release`).
        self._progress: dict[str, RunningProgress] = {}

    async def release(self, uid: str) -> None:
        """The object ``uid`` is gone: forget its jobs' progress (every attempt's)."""
        for name in [n for n in self._progress if n == job_name(uid) or n.startswith(job_name(uid) + "-")]:
            del self._progress[name]

    async def owner_exists(self, owner: str) -> bool:
        return await owner_exists(self._objects, owner)

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        return ()

    async def _target(self, mr: Mr) -> MlTarget | None:
        obj = await aml_compute(self._objects, mr.namespace, mr.spec.compute.name)
        if obj is None:
            return None
        return await ml_target(self._clients, self._secrets, obj, mr.namespace, user=mr.uid)

    async def _summary(self, mr: Mr, target: MlTarget, name: str) -> dict[str, Any] | None:
        """The job as the workspace's shared listing has it (or None when absent from it)."""
        if mr.refresh_requested:
            state = await target.jobs.get(name)
            return None if state is None else {"name": name, "status": state.status, "owner": mr.owner}
        _, summary = await target.poller.get(name, self._clients.settings.poll_floor_seconds)
        return summary

    async def observe(self, mr: Mr) -> Observation:
        if not mr.deleting and (finished := job.sticky(mr.status, mr.owner)) is not None:
            return finished
        if not mr.deleting:
            refuse_batch_only(mr.spec, mr.spec.compute.name)
        target = await self._target(mr)
        if target is None:
            if mr.deleting:
                return Observation(False, events=(self._left_behind(mr),))
            raise RetryableError(
                REASON_WAITING_FOR_COMPUTE,
                f"AmlCompute {mr.namespace}/{mr.spec.compute.name} does not exist",
                WAIT_FOR_COMPUTE_SECONDS,
            )
        attempt = job.attempt(mr.status)
        name = job_name(mr.uid, attempt)
        summary = await self._summary(mr, target, name)
        if mr.deleting:
            return await self._observe_deleting(mr, target, name, summary)
        if summary is None:
            if mr.spec.suspend:  # created suspended (or suspended before its submission): nothing to submit yet
                return job.suspended({"phase": "Suspended", "azureJobName": name, "attempt": attempt}, mr.owner)
            if not target.ready:
                raise RetryableError(
                    REASON_WAITING_FOR_COMPUTE,
                    f"AmlCompute {mr.namespace}/{target.name} is not Ready",
                    WAIT_FOR_COMPUTE_SECONDS,
                )
            return Observation(False, at_provider={"phase": job.PENDING, "azureJobName": name, "attempt": attempt})
        return await self._observe_job(mr, target, name, attempt, summary)

    async def _observe_job(
        self, mr: Mr, target: MlTarget, name: str, attempt: int, summary: Mapping[str, Any]
    ) -> Observation:
        status = str(summary.get("status") or "")
        studio = mr.status.get("studioUrl") if mr.status.get("azureJobName") == name else None
        error: tuple[str, str] | None = None
        counts: m.Counts | None = None
        progress = self._progress.setdefault(name, RunningProgress())
        if studio is None or status in FINISHED:  # once per job, and once it has run to its end
            state = await target.jobs.get(name)
            if state is not None:
                status, studio = state.status, state.studio_url
                error = (state.error.code, state.error.message) if state.error else None
                progress.child = state.child.name if state.child is not None else progress.child
                if state.finished and state.child is not None:
                    report = await target.jobs.report(state.child.name)
                    counts = report_counts(report, progress.total) if report is not None else None
        if status in TERMINAL:
            self._progress.pop(name, None)
        else:
            counts = await self._running_counts(mr, target, name, status, progress)
        started = mr.status.get("startTime") or now_iso()
        elapsed = job.seconds_since(started, datetime.now(UTC))
        decision = decide(
            Facts(
                status=status,
                suspend=mr.spec.suspend,
                was_suspended=mr.status.get("phase") == "Suspended",
                elapsed=elapsed,
                deadline=mr.spec.active_deadline_seconds,
                error=error,
                counts=counts,
            )
        )
        ended = decision.phase in job.TERMINAL
        fields: dict[str, Any] = {
            **status_fields(decision, elapsed),
            "azureJobName": name,
            "attempt": attempt,
            "studioUrl": studio,
            "startTime": started,
            "output": output_uri(mr.spec),
            job.RELEASED: True if ended else None,
        }
        if ended:
            fields["completionTime"] = now_iso()
        if decision.action == "resume":  # the next job's name and Studio link, written before it is submitted
            fields.update(azureJobName=job_name(mr.uid, attempt + 1), attempt=attempt + 1, studioUrl=None)
        observation = m.observation(decision, fields, mr.owner)
        # The owner tag as Azure ML has it (amlops sets it on submit): a job of this name tagged otherwise is not ours.
        owner = summary.get("owner")
        return replace(observation, owner=str(owner) if owner else None, intent=Step(decision, attempt))

    async def _running_counts(
        self, mr: Mr, target: MlTarget, name: str, status: str, progress: RunningProgress
    ) -> m.Counts | None:
        """The counts of a job that runs, from the report its parallel child uploads as mini-batches settle: read
        at most once per ``requeue_seconds`` (the interval a running object is looked at), the last counts
        answered in between, so many jobs in one workspace cost one blob read each per interval. The child is
        found with one ``jobs.get`` (the pipeline job's children), the total from the progress overview until
        known; without a total the counts stay unknown (a report of finished mini-batches alone cannot say how
        many are left)."""
        now = self._clock()
        if status in NOT_RUNNING or not progress.due(now, self._clients.settings.requeue_seconds):
            return progress.counts
        progress.read_at = now
        if progress.child is None:
            state = await target.jobs.get(name)
            if state is None or state.child is None:
                return progress.counts
            progress.child = state.child.name
        if progress.total is None:
            overview = await target.jobs.overview(progress.child)
            progress.total = overview_total(overview) if overview is not None else None
            if progress.total is None:
                return progress.counts
        report = await target.jobs.report(progress.child)
        if report is not None:
            progress.counts = report_counts(report, progress.total, mr.spec.retry_settings.max_retries)
        return progress.counts

    async def _observe_deleting(
        self, mr: Mr, target: MlTarget, name: str, summary: Mapping[str, Any] | None
    ) -> Observation:
        """Gone once the job is terminal or absent. Absence in the listing is confirmed with a GET: the listing
        may predate a submission, and a job left running would bill on."""
        status = str((summary or {}).get("status") or "")
        owner = (summary or {}).get("owner")
        if summary is None:
            state = await target.jobs.get(name)
            if state is None:
                return Observation(False)
            status, owner = state.status, mr.owner  # only amlops names a job pj-<this uid>
        if status in TERMINAL:
            return Observation(False)
        return Observation(True, transitional=status in CANCELING, transitional_reason="Deleting", owner=owner)

    def _left_behind(self, mr: Mr) -> EventRecord:
        what = f"the Azure ML job {mr.status.get('azureJobName') or job_name(mr.uid, job.attempt(mr.status))}"
        return EventRecord(
            "Warning",
            REASON_COMPUTE_GONE,
            f"AmlCompute {mr.namespace}/{mr.spec.compute.name} no longer exists, so amlops cannot reach its "
            f"workspace: {what} may still run there; cancel it in Azure ML",
        )

    # ------------------------------------------------------------------------------------------- writes

    async def create(self, mr: Mr) -> Pending | None:
        refuse_batch_only(mr.spec, mr.spec.compute.name)
        target = await self._target(mr)
        if target is None or not target.ready:
            raise RetryableError(
                REASON_WAITING_FOR_COMPUTE,
                f"AmlCompute {mr.namespace}/{mr.spec.compute.name} is not Ready",
                WAIT_FOR_COMPUTE_SECONDS,
            )
        await self._submit(mr, target, job.attempt(mr.status))
        return None

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        step = await intent_of(observation, Step, lambda: self.observe(mr))
        if step is None:
            return None
        target = await self._target(mr)
        if target is None:
            raise RetryableError(REASON_WAITING_FOR_COMPUTE, f"AmlCompute {mr.spec.compute.name} is gone")
        if step.decision.action in ("suspend", "fail"):
            name = job_name(mr.uid, step.attempt)
            await target.jobs.cancel(name)
            target.poller.invalidate(name)
        elif step.decision.action == "resume":
            await self._submit(mr, target, step.attempt + 1)
        return None

    async def delete(self, mr: Mr) -> Pending | None:
        target = await self._target(mr)
        if target is None:
            return None
        name = job_name(mr.uid, job.attempt(mr.status))
        await target.jobs.cancel(name)
        target.poller.invalidate(name)
        return None

    async def _submit(self, mr: Mr, target: MlTarget, attempt: int) -> None:
        """Build the seed's pipeline job and submit it as ``pj-<uid>[-<attempt>]`` (found, not created again, when
        a crash came between an earlier submission and its status)."""
        from amlops.external.paralleljob_aml_job import build_pipeline_job  # imports azure-ai-ml: only here

        spec, name = mr.spec, job_name(mr.uid, attempt)
        files = await self._code_files(mr)
        with tempfile.TemporaryDirectory(prefix="amlops-code-") as folder:
            if files is not None:
                for key, data in files.items():  # ConfigMap keys hold no "/": each is a file of the folder
                    (Path(folder) / key).write_bytes(data)
            run = parallel_run(spec, name, folder if files is not None else None)
            tags = {**run.job["tags"], OWNER_TAG: mr.owner}
            run = replace(run, job={**run.job, "compute": target.compute, "tags": tags})
            conda = await self._conda(spec, files)
            # Built in the submission's own call (azure-ai-ml's pool); it uploads the folder: it must still exist here
            await target.jobs.submit(functools.partial(build_pipeline_job, run, conda))
        target.poller.invalidate(name)

    async def _code_files(self, mr: Mr) -> dict[str, bytes] | None:
        name = mr.spec.task.code_config_map
        if name is None:
            return None
        return await code_files(self._objects, mr.namespace, name, "task.codeConfigMap")

    async def _conda(self, spec: ParallelJobSpec, files: Mapping[str, bytes] | None) -> dict[str, Any] | None:
        """The conda specification Azure ML builds the job's image from (:func:`conda_file`, parsed off the event
        loop) with pipRequirements added; None: the image as it is."""
        environment = spec.task.environment
        if environment is None:
            return None
        data = conda_file(spec, files)
        document = None if data is None else await asyncio.to_thread(conda_document, str(environment.conda_file), data)
        return conda_specification(document, tuple(environment.pip_requirements))


def conda_file(spec: ParallelJobSpec, files: Mapping[str, bytes] | None) -> bytes | None:
    """``environment.condaFile``'s bytes from ``task.codeConfigMap``'s ``files`` (None: no conda file). Only a
    ConfigMap's can be read here: with ``task.code`` (or a key the ConfigMap lacks) it is InvalidSpec."""
    environment = spec.task.environment
    if environment is None or environment.conda_file is None:
        return None
    if files is None:
        raise TerminalError(
            REASON_INVALID_SPEC,
            "task.environment.condaFile on an AmlCompute needs task.codeConfigMap (amlops reads the file to give "
            "Azure ML the environment); with task.code use pipRequirements or an image",
        )
    data = files.get(environment.conda_file)
    if data is None:
        raise TerminalError(
            REASON_INVALID_SPEC,
            f"task.environment.condaFile {environment.conda_file} is not a key of task.codeConfigMap",
        )
    if len(data) > MAX_CONDA_FILE_BYTES:
        raise too_large(environment.conda_file)
    return data


def conda_document(path: str, data: bytes) -> dict[str, Any]:
    """Tenant YAML parsed as the Batch backend parses it: no aliases (``CondaFileHasAliases``), InvalidSpec when
    it is no YAML or no mapping."""
    aliases = TerminalError(REASON_CONDA_FILE_ALIASES, f"condaFile {path!r} uses YAML aliases (*name)")
    document = load_yaml(data.decode("utf-8", "replace"), aliases=aliases, what=f"condaFile {path!r}")
    if not isinstance(document, dict):
        raise TerminalError(REASON_INVALID_SPEC, f"{path} is no conda environment (a mapping with dependencies)")
    return document
