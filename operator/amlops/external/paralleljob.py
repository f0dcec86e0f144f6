"""ParallelJob's ExternalClient on a BatchCompute: one Azure Batch job per ParallelJob, one task per mini-batch
(``paralleljob_backend`` chooses it; ``paralleljob_azureml`` is the one on an AmlCompute).

- ``create``: plan the input into the manifest (resumable: a restarted operator continues the plan), upload the
  node driver, create the pool amlops owns for the job (when ``compute.poolId`` is absent) and the Batch job
  (id from the object's uid: creating it twice is harmless).
- ``observe``: the job's task counts (one call), its finished tasks (listed only when more finished than are
  known; finished facts never change, so they are kept) and their summaries → one decision
  (``paralleljob_map.decide``). A job done in Batch is Complete or Failed only once the pool amlops created for
  it is gone (``resourcesReleased``): until then its release is the action. After that, Complete and Failed are
  answered from the status, with no Azure call.
- ``update``: carries out that decision's one action: add tasks from where the job's count ends (streamed
  from the manifest chunks, a slice at a time; a small manifest travels inside its task), suspend
  (disable with requeue), resume, fail (terminate), finish (write ``parallel_run_step.txt`` exactly once,
  end the job, release the pool).
- ``delete``: delete the Batch job (its running tasks end) and the pool amlops created for it, through the
  BatchCompute whatever its state (a BatchCompute's deletion waits for its ParallelJobs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from azure.batch.aio import BatchClient

from amlops.api.batchcompute import ManagedPool
from amlops.api.paralleljob import ParallelJobSpec
from amlops.azure import batch, batch_jobs
from amlops.azure.blob import (
    READ_WRITE,
    WRITE,
    BlobFolder,
    BlobRangeReader,
    BlobSigner,
    BlobStore,
    JsonFolder,
    sas_expiry,
)
from amlops.azure.clients import AzureClients
from amlops.azure.leases import Leases
from amlops.external import paralleljob_map as m
from amlops.external.batchcompute import AccountAccess, account_access
from amlops.external.batchcompute_map import pool_body, pool_owner
from amlops.external.code_config_map import code_files
from amlops.external.credentials import namespace_listed, secret_value
from amlops.external.ownership import owner_exists
from amlops.external.paralleljob_env import (
    MAX_CONDA_FILE_BYTES,
    container_pool,
    container_settings,
    pool_mismatch,
    requirements,
    too_large,
)
from amlops.external.paralleljob_inputs import (
    JOB_INPUT_FILES_LIMIT,
    MAX_MLTABLE_BYTES,
    MLTABLE_FILE,
    REASON_INPUT_NOT_FOUND,
    REASON_JOB_INPUT_TOO_LARGE,
    check_references,
    data_inputs,
    in_table,
    job_inputs,
    literals,
    mltable_paths,
)
from amlops.external.paralleljob_output import (
    INVALID_SUMMARY,
    OUTPUT_FILE,
    Summary,
    aggregate,
    ordered,
    output_written,
    read_summary,
)
from amlops.external.paralleljob_plan import (
    INDEX_NAME,
    PLAN_CHANGED,
    InputItem,
    Kind,
    MiniBatch,
    PlanIndex,
    PlanProgress,
    PlanSpec,
    manifest_prefix,
    mini_batch_name,
    plan_blob_missing,
    read_chunk,
    read_index,
    results_prefix,
    write_manifest,
)
from amlops.external.ports import ClusterObjects, SecretReader
from amlops.reconcile import job
from amlops.reconcile.errors import RetryableError, TerminalError
from amlops.reconcile.external import Observation, Pending, intent_of
from amlops.reconcile.managed import Managed
from amlops.runtime.command import (
    DRIVER_FILE,
    MANIFEST_FILE,
    MINI_BATCH_VARIABLE,
    REQUIREMENTS_FILE,
    code_file_path,
    driver_command_line,
    driver_environment,
    driver_source,
    input_paths,
    job_input_path,
    with_input_urls,
)
from amlops.status import REASON_CREDENTIALS_MISSING, REASON_INVALID_SPEC, EventRecord, now_iso

Mr = Managed[ParallelJobSpec]

REASON_WAITING_FOR_COMPUTE = "WaitingForCompute"
REASON_POOL_NOT_FOUND = "PoolNotFound"
REASON_COMPUTE_GONE = "ComputeGone"
REASON_INVALID_CONNECTION_STRING = "InvalidConnectionString"
REASON_STORAGE_NOT_ALLOWED = "StorageNotAllowed"
REASON_CODE_FOLDER_TOO_LARGE = "CodeFolderTooLarge"
# How long the SAS tokens of tasks added now live when the job has no activeDeadlineSeconds (with one: the
# deadline plus SAS_MARGIN). Each slice of tasks gets fresh tokens, so only a task that waits in the queue
# longer than this fails (its resource files cannot be downloaded: BlobAccessDenied).
SAS_LIFETIME = timedelta(hours=6)
SAS_MARGIN = timedelta(minutes=30)
# Code files are resource files of every task, one SAS URL each: a code folder is small (Batch's 1 MB request
# body holds 100 tasks with a few dozen files each; the SDK splits larger ones).
CODE_FILES_LIMIT = 100
# Beside the plan: the blobs of the inputs other than input_data every task downloads, listed once at planning.
JOB_INPUTS_DOC = "job-inputs.json"
# Beside the plan: this job reused an identical job's output (isDeterministic); read by observe after a restart.
REUSE_MARKER = "reused.json"
SUMMARY_WINDOW = 16
# Tasks built and submitted together (memory holds one slice, and the next one being built).
ADD_SLICE = 1_000
# Task bodies built between two yields to the event loop (about 2 ms of CPU).
BUILD_PART = 100
# A pass adds slices for at most this long, so a huge job's status moves while it is being added, whatever Batch's
# pace. Each pass ends with a status write and the next starts a requeue interval later: a count a pass (50,000)
# cost 100,000 mini-batches such a pause at the emulator's pace, a tenth of their plan + submit time
# (bench/paralleljob_plan_submit.py), and would leave the status still for minutes at a slower pace.
ADD_PASS_SECONDS = 15.0
# A manifest up to this size travels in the task's environment: 100 such tasks stay under Batch's 1 MB body.
INLINE_MANIFEST_BYTES = 4_096
WAIT_FOR_COMPUTE_SECONDS = 5.0
# One encoder for every task's manifest: json.dumps with separators builds a new one per call.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
TABULAR_SUFFIXES = (".csv", ".jsonl", ".json")


class Planning(Protocol):
    """``write_manifest`` with everything but its ``progress`` given."""

    def __call__(self, *, progress: Callable[[PlanIndex], None] | None = None) -> Awaitable[PlanIndex]: ...


async def together(*steps: Awaitable[object]) -> None:
    """Run ``steps`` at once until all are done; the first to fail cancels the others and its error is raised as
    it is (not in an ExceptionGroup: the engine reads RetryableError and TerminalError)."""
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(_awaited(step))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


async def _awaited(step: Awaitable[object]) -> None:
    await step


def added_tasks(counts: Mapping[str, Any]) -> int:
    """The tasks a job has been given, from Batch's job task counts: active, running or completed."""
    return sum(int(counts.get(state) or 0) for state in ("active", "running", "completed"))


def job_id(mr: Mr) -> str:
    """Batch job id (≤ 64 characters): from the uid, so a recreated object with the same name is a new job."""
    return f"pj-{mr.uid}"


def pool_id(mr: Mr) -> str:
    return mr.spec.compute.pool_id or job_id(mr)


def owns_pool(mr: Mr) -> bool:
    return mr.spec.compute.pool_id is None


def validate(spec: ParallelJobSpec) -> None:
    """What can be refused from the spec alone, before anything is read, written or created (nothing bills)."""
    if spec.task.program_arguments is not None:
        try:
            shlex.split(spec.task.program_arguments)
        except ValueError as e:  # unbalanced quotes, a trailing escape
            raise TerminalError(
                REASON_INVALID_SPEC,
                f"task.programArguments cannot be split like a shell would ({e}): balance its quotes",
            ) from None
    data = reference(spec.input_data, spec.inputs, "inputs")
    if spec.inputs[data].uri is None:
        raise TerminalError(
            REASON_INVALID_SPEC, f"inputData {spec.input_data} is a literal input: it must be a data input (a uri)"
        )
    check_references(spec)
    if spec.task.append_row_to:
        reference(spec.task.append_row_to, spec.outputs, "outputs")
    if (why := m.azure_ml_only(spec)) is not None:
        raise TerminalError(m.REASON_REQUIRES_AML_COMPUTE, why)


# Settings that decide whether the same rows make a Complete or a Failed job. They are not in the content hash
# (changing it would stall plans being made across an upgrade), so reuse compares them as well: a job with a
# stricter errorThreshold must not reuse the output of one that completed with failed items.
OUTCOME_SETTINGS = ("errorThreshold", "miniBatchErrorThreshold", "retrySettings")


def same_outcome_settings(spec: ParallelJobSpec, other: dict[str, Any]) -> bool:
    """Whether another ParallelJob's spec (as the apiserver returns it) has this one's outcome settings."""
    try:
        theirs = ParallelJobSpec.model_validate(other)
    except ValueError:  # a pydantic ValidationError: not a spec this operator would run, never reused
        return False
    mine, dumped = spec.model_dump(mode="json", by_alias=True), theirs.model_dump(mode="json", by_alias=True)
    return all(mine[k] == dumped[k] for k in OUTCOME_SETTINGS)


def reference(value: str, names: dict[str, Any], kind: str) -> str:
    """``${{inputs.data}}`` → ``data``, which must name one of ``names``."""
    name = value.strip().removeprefix("${{").removesuffix("}}").strip().removeprefix(f"{kind}.")
    if name not in names:
        raise TerminalError(REASON_INVALID_SPEC, f"{value} names no entry of spec.{kind} ({sorted(names)})")
    return name


@dataclass(frozen=True)
class Step:
    """observe()'s decision for update() (``Observation.intent``): the action, the tasks the job has, the plan."""

    decision: m.Decision
    added: int
    index: PlanIndex | None


@dataclass(frozen=True)
class TaskFiles:
    """What every task of a job downloads besides its mini-batch's inputs: the code folder's blobs, whether there
    is a requirements.txt, and the blobs of each input other than input_data."""

    installs: bool
    code: list[str]
    job_input_files: dict[str, list[str]]


@dataclass(frozen=True)
class Layout:
    """Where everything of one job lives in blob storage."""

    store: BlobStore
    inputs: BlobFolder
    only: str | None  # uri_file: the one blob of ``inputs`` that is the input
    kind: Kind
    output: BlobFolder
    plan: BlobFolder
    results: BlobFolder
    code: BlobFolder
    # The inputs other than input_data: name → (folder, the one blob of a uri_file input or None).
    job_inputs: Mapping[str, tuple[BlobFolder, str | None]] = field(default_factory=dict)
    table: bool = False  # input_data is an mltable: its MLTable file names the data

    @property
    def output_uri(self) -> str:
        return f"{self.store.folder_url(self.output)}{OUTPUT_FILE}"


class ParallelJobClient:
    def __init__(self, clients: AzureClients, secrets: SecretReader, objects: ClusterObjects) -> None:
        self._clients = clients
        self._secrets = secrets
        self._objects = objects
        self._stores: dict[str, BlobStore] = {}
        self._store_users = Leases[str]()  # which jobs use which store: closed when none does
        # Finished mini-batches by job: a completed task and its summary never change.
        self._finished: dict[str, dict[int, m.Finished]] = {}

    async def close(self) -> None:
        for store in self._stores.values():
            await store.close()
        self._stores.clear()

    async def release(self, uid: str) -> None:
        """The object is gone: drop what was kept for it, and close a store no other job uses."""
        self._finished.pop(f"pj-{uid}", None)
        await self._close_stores(self._store_users.release(uid))

    async def _close_stores(self, connections: list[str]) -> None:
        for connection in connections:
            if (store := self._stores.pop(connection, None)) is not None:
                await store.close()

    # ------------------------------------------------------------------------------------------- observe

    async def owner_exists(self, owner: str) -> bool:
        return await owner_exists(self._objects, owner)

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        return ()

    async def observe(self, mr: Mr) -> Observation:
        if not mr.deleting and (finished := job.sticky(mr.status, mr.owner)) is not None:
            return finished
        if not mr.deleting and job.unreleased(mr.status) and not owns_pool(mr):
            return job.finished(mr.status, mr.owner, {job.RELEASED: True})  # no pool of its own to release
        client = await self._batch(mr)
        if client is None:  # deleting, and the BatchCompute is gone: nothing of ours can be reached any more
            return Observation(False, events=(self._left_behind(mr),))
        if not mr.deleting and job.unreleased(mr.status):
            # Finished before, its pool's release not recorded (a crash in between, or the job ended from outside).
            left = await self._pool_left(mr, client)
            observation = job.releasing(mr.status, mr.owner, left=left, what="the job's pool")
            release = m.Decision(mr.status["phase"], m.Counts(0), "release")
            return replace(observation, intent=Step(release, 0, None)) if left else observation
        batch_job = await batch_jobs.get_job(client, job_id(mr))
        if mr.deleting:
            return await self._observe_deleting(mr, client, batch_job)
        if batch_job is None:
            if mr.spec.is_deterministic and (reused := await self._reused(mr)) is not None:
                return reused
            return Observation(False, at_provider={"phase": job.PENDING, "jobId": job_id(mr), "poolId": pool_id(mr)})
        layout = await self._layout(mr)
        index = await read_index(JsonFolder(layout.store, layout.plan))
        if index is None:  # create() writes the whole plan before the job: it was there, and is gone
            raise plan_blob_missing(INDEX_NAME)
        if not index.done:  # create() plans on while it adds the first tasks: a restart left it there, it goes on
            return Observation(False, at_provider={"phase": job.PENDING, "jobId": job_id(mr), "poolId": pool_id(mr)})
        counts = await batch_jobs.task_counts(client, job_id(mr))
        done = await self._finished_tasks(mr, client, layout, int(counts.get("completed") or 0))
        added = added_tasks(counts)
        started = mr.status.get("startTime") or batch_job.get("creationTime")
        elapsed = job.seconds_since(started, datetime.now(UTC))
        all_finished = len(done) == index.count
        output_ready = not mr.spec.task.append_row_to or (
            all_finished and await output_written(layout.store, layout.results, layout.output)
        )
        decision = m.decide(
            m.Facts(
                total=index.count,
                added=added,
                running=int(counts.get("running") or 0),
                finished=done,
                job_state=str(batch_job.get("state") or ""),
                suspend=mr.spec.suspend,
                error_threshold=mr.spec.error_threshold,
                mini_batch_error_threshold=mr.spec.mini_batch_error_threshold,
                output_ready=output_ready,
                elapsed=elapsed,
                deadline=mr.spec.active_deadline_seconds,
                terminate_reason=(batch_job.get("executionInfo") or {}).get("terminateReason"),
            )
        )
        decision = m.releasing(decision, decision.phase in job.TERMINAL and await self._pool_left(mr, client))
        ended = decision.phase in job.TERMINAL
        status = {
            **m.status_fields(decision, elapsed),
            "jobId": job_id(mr),
            "poolId": pool_id(mr),
            "startTime": started,
            "output": layout.output_uri if mr.spec.task.append_row_to else None,
            "contentHash": index.hash,
            job.RELEASED: True if ended else None,
        }
        if ended:
            status["completionTime"] = now_iso()
            self._finished.pop(job_id(mr), None)
        return replace(m.observation(decision, status, mr.owner), intent=Step(decision, added, index))

    async def _pool_left(self, mr: Mr, client: BatchClient) -> bool:
        """The pool amlops created for this job is still there (and not already going)."""
        if not owns_pool(mr):
            return False
        pool = await batch.get_pool(client, pool_id(mr))
        return pool is not None and pool.get("state") != "deleting" and mr.owns(pool_owner(pool))

    def _left_behind(self, mr: Mr) -> EventRecord:
        what = f"the Batch job {job_id(mr)}"
        if owns_pool(mr) and not mr.status.get(job.RELEASED):
            what += f" and the pool {pool_id(mr)} (its nodes bill until it is deleted)"
        return EventRecord(
            "Warning",
            REASON_COMPUTE_GONE,
            f"BatchCompute {mr.namespace}/{mr.spec.compute.name} no longer exists, so amlops cannot reach its "
            f"account: {what} may remain there; delete them in the Batch account",
        )

    async def _observe_deleting(self, mr: Mr, client: BatchClient, batch_job: dict[str, Any] | None) -> Observation:
        pool_left = await self._pool_left(mr, client)
        if batch_job is None and not pool_left:
            return Observation(False)
        going = batch_job is not None and batch_job.get("state") == "deleting"
        return Observation(True, transitional=going and not pool_left, transitional_reason="Deleting", owner=mr.owner)

    async def _finished_tasks(
        self, mr: Mr, client: BatchClient, layout: Layout, completed: int
    ) -> dict[int, m.Finished]:
        """Every finished mini-batch. The completed tasks are listed only when the job counts more of them
        than are known (after a restart: once), and only the new ones' summaries are read."""
        known = self._finished.setdefault(job_id(mr), {})
        if completed <= len(known):
            return known
        tasks = m.task_facts(await batch_jobs.list_tasks(client, job_id(mr), state="completed"))
        new = {t.index: t for t in tasks if t.index not in known}

        async def fetch(index: int) -> Summary | None:
            # No summary: the driver could not even start (setup failure); its items are unknown.
            return await read_summary(layout.store, layout.results, index)

        async for index, summary in ordered(sorted(new), fetch, SUMMARY_WINDOW):
            counts = (summary.processed, summary.failed) if summary else None
            valid = summary is None or (summary.error or {}).get("type") != INVALID_SUMMARY
            known[index] = m.finished(new[index], counts, valid)
        return known

    # ------------------------------------------------------------------------------------------- writes

    async def create(self, mr: Mr) -> Pending | None:
        validate(mr.spec)
        access = await self._access(mr)
        if access is None or access.client is None or access.spec is None:
            raise RetryableError(REASON_WAITING_FOR_COMPUTE, f"BatchCompute {mr.spec.compute.name} is gone")
        managed = [p.id for p in access.spec.pools]
        if (why := m.unmanaged_pool(mr.spec.compute.pool_id, managed, mr.spec.compute.name)) is not None:
            raise TerminalError(m.REASON_POOL_NOT_MANAGED, why)
        client = access.client
        layout = await self._layout(mr)
        layout.store.check_signing()  # nodes reach blobs through SAS URLs: refuse now, not after the pool exists
        planning = partial(
            write_manifest, self._listing(layout), await self._plan_spec(mr, layout),
            JsonFolder(layout.store, layout.plan), BlobRangeReader(layout.store, layout.inputs),
        )  # fmt: skip
        reusable = await self._reusable(mr) if mr.spec.is_deterministic else []
        if reusable or owns_pool(mr):
            # The whole plan first: reuse needs its hash before anything exists, and a pool of the job's own bills
            # from its creation, so an input the plan refuses must be refused before it.
            index = await planning()
            if index.hash and await self._reuse(layout, index.hash, reusable):
                return None  # an identical job's output is reused: no Batch job, no compute
            body = await self._prepare(mr, client, layout)
            if owns_pool(mr):
                await batch.create_pool(client, self._pool_body(mr))
            await batch_jobs.create_job(client, body)
            return None
        await self._plan_and_add(mr, client, layout, await self._prepare(mr, client, layout), planning)
        return None

    async def _prepare(self, mr: Mr, client: BatchClient, layout: Layout) -> dict[str, Any]:
        """Check the given pool and the job's body, write what every task downloads; the job's body."""
        if not owns_pool(mr):
            await self._check_pool(mr, client)
        await layout.store.write(layout.plan, DRIVER_FILE, driver_source(), "text/x-python")
        if (text := await self._requirements(mr, layout)) is not None:
            await layout.store.write(layout.plan, REQUIREMENTS_FILE, text.encode())
        body = m.job_body(mr.spec, job_id(mr), pool_id(mr), mr.owner, f"{mr.namespace}/{mr.name}", not owns_pool(mr))
        if (why := m.oversized(body)) is not None:  # before a pool of ours bills
            raise TerminalError(REASON_INVALID_SPEC, why)
        return body

    async def _plan_and_add(
        self, mr: Mr, client: BatchClient, layout: Layout, body: dict[str, Any], planning: Planning
    ) -> None:
        """On a given pool, with no completed job to reuse: plan and, as soon as the first chunk of the plan is
        written, create the job and add its tasks while the rest is planned (a pass, as update() adds them),
        instead of adding only once the whole plan is done (a fifth of 100,000 mini-batches' plan + submit time,
        bench/paralleljob_plan_submit.py).

        The job exists only once the plan's index does (observe() reads it), and a job whose plan is incomplete is
        created again (observe() says so after a restart): the plan resumes and adding goes on from the job's count.
        A plan refused after the job was created ends the job, so no task of a plan that cannot run keeps running."""
        progress = PlanProgress()
        created = False
        refused: list[TerminalError] = []

        async def plan() -> None:
            try:
                await planning(progress=progress)
            except TerminalError as e:
                refused.append(e)
                raise

        async def submit() -> None:
            nonlocal created
            await progress.reached(1)
            created = True
            created_now = await batch_jobs.create_job(client, body)
            added = 0 if created_now else added_tasks(await batch_jobs.task_counts(client, job_id(mr)))
            await self._add(mr, client, layout, progress, added)

        try:
            await together(plan(), submit())
        finally:
            if refused and created:
                await batch_jobs.terminate_job(client, job_id(mr), refused[0].reason)

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        step = await intent_of(observation, Step, lambda: self.observe(mr))
        if step is None:
            return None
        decision, added, index = step.decision, step.added, step.index
        client = await self._batch(mr)
        if client is None:
            raise RetryableError(REASON_WAITING_FOR_COMPUTE, f"BatchCompute {mr.spec.compute.name} is gone")
        jid = job_id(mr)
        if decision.action == "add" and index is not None:
            await self._add(mr, client, await self._layout(mr), PlanProgress(index), added)
        elif decision.action == "suspend":
            await batch_jobs.disable_job(client, jid)
        elif decision.action == "resume":
            await batch_jobs.enable_job(client, jid)
        elif decision.action == "fail":
            await batch_jobs.terminate_job(client, jid, decision.reason)
            await self._release_pool(mr, client)
        elif decision.action == "finish":
            if mr.spec.task.append_row_to:
                layout = await self._layout(mr)
                await aggregate(layout.store, layout.results, layout.output, decision.counts.total)
            await batch_jobs.terminate_job(client, jid, "AllTasksComplete")
            await self._release_pool(mr, client)
        elif decision.action == "release":
            await self._release_pool(mr, client)
        return None

    async def delete(self, mr: Mr) -> Pending | None:
        client = await self._batch(mr)
        if client is None:
            return None
        await batch_jobs.delete_job(client, job_id(mr))
        await self._release_pool(mr, client)
        self._finished.pop(job_id(mr), None)
        return None

    async def _add(self, mr: Mr, client: BatchClient, layout: Layout, plan: PlanProgress, added: int) -> None:
        """Add a pass's tasks (``ADD_PASS_SECONDS``) from the slice the job's task count ends in, as far as the
        plan has got (waiting for it while it is being written). Slices go one after another, so every task before
        that slice exists; adding the slice again is harmless (TaskExists is skipped)."""
        deadline = time.monotonic() + ADD_PASS_SECONDS
        common = await self._task_files(layout)

        async def build(low: int) -> tuple[int, list[dict[str, Any]]] | None:
            if time.monotonic() >= deadline:
                return None
            high = min(low + ADD_SLICE, await plan.reached(low + ADD_SLICE))
            return (high, await self._slice(mr, layout, common, plan.chunk, low, high)) if high > low else None

        # The next slice is read and signed while this one is added: the operator's CPU (signing, most of it) and
        # Batch's (taking the tasks) overlap instead of taking turns.
        building = asyncio.create_task(build(added // ADD_SLICE * ADD_SLICE))
        try:
            while (built := await building) is not None:
                high, tasks = built
                building = asyncio.create_task(build(high))
                await batch_jobs.add_tasks(client, job_id(mr), tasks)
        finally:
            building.cancel()  # a failed add leaves the next slice unbuilt (done already: a no-op)

    async def _slice(
        self, mr: Mr, layout: Layout, common: TaskFiles, chunk: int, low: int, high: int
    ) -> list[dict[str, Any]]:
        """The task bodies of mini-batches ``low`` to ``high`` (excluded)."""
        return await self._tasks(mr, layout, common, await self._mini_batches(layout, chunk, low, high))

    async def _mini_batches(self, layout: Layout, chunk: int, low: int, high: int) -> list[MiniBatch]:
        plan = JsonFolder(layout.store, layout.plan)
        found: list[MiniBatch] = []
        for number in range(low // chunk, (high - 1) // chunk + 1):
            found += [b for b in await read_chunk(plan, number) if low <= b.index < high]
        return found

    async def _reusable(self, mr: Mr) -> list[dict[str, Any]]:
        """The namespace's ParallelJobs whose output this deterministic one may reuse if its plan has their content
        hash: completed deterministic ones (not reusing another's), with its outcome settings."""
        found = []
        for other in await self._objects.list("paralleljobs", mr.namespace):
            status, spec = other.get("status") or {}, other.get("spec") or {}
            if (
                other["metadata"].get("uid") != mr.uid
                and spec.get("isDeterministic")
                and status.get("phase") == "Complete"
                and not status.get("reusedFrom")
                and same_outcome_settings(mr.spec, spec)
            ):
                found.append(other)
        return found

    async def _reuse(self, layout: Layout, content_hash: str, reusable: list[dict[str, Any]]) -> bool:
        """Find the reusable job with the same content hash; record the reuse in a marker blob beside the plan
        (restart-safe: observe reads it) and say whether there was one."""
        for other in reusable:
            status = other.get("status") or {}
            if status.get("contentHash") == content_hash:
                marker = {
                    "from": other["metadata"]["name"],
                    "contentHash": content_hash,
                    **{k: status.get(k) for k in ("output", "miniBatches", "items", "progress", "progressPercentage")},
                }
                await layout.store.write_if_absent(layout.plan, REUSE_MARKER, json.dumps(marker).encode())
                return True
        return False

    async def _reused(self, mr: Mr) -> Observation | None:
        layout = await self._layout(mr)
        marker = await JsonFolder(layout.store, layout.plan).get_json(REUSE_MARKER)
        if marker is None:
            return None
        if not isinstance(marker.get("from"), str) or not isinstance(marker.get("contentHash"), str):
            raise TerminalError(
                PLAN_CHANGED, f"{layout.plan.blob(REUSE_MARKER)} is damaged: delete and recreate the job"
            )
        status = {k: marker.get(k) for k in ("output", "miniBatches", "items", "progress", "progressPercentage")}
        now = now_iso()
        status.update(
            {"phase": "Complete", "reusedFrom": marker["from"], "contentHash": marker["contentHash"],
             "startTime": mr.status.get("startTime") or now, "completionTime": now, job.RELEASED: True}
        )  # fmt: skip
        return job.complete(f"reused the output of {marker['from']} (isDeterministic)", status, mr.owner, "Reused")

    async def _release_pool(self, mr: Mr, client: BatchClient) -> None:
        if owns_pool(mr):
            await batch.delete_pool(client, pool_id(mr))

    # ------------------------------------------------------------------------------------------- building

    def _pool_body(self, mr: Mr) -> dict[str, Any]:
        nodes = mr.spec.instance_count
        pool = ManagedPool(
            id=pool_id(mr),
            vm_size=m.vm_size(mr.spec),
            target_dedicated_nodes=0 if mr.spec.compute.low_priority else nodes,
            target_low_priority_nodes=nodes if mr.spec.compute.low_priority else 0,
            task_slots_per_node=mr.spec.max_concurrency_per_instance,
        )
        image = _image(mr.spec)
        return container_pool(pool_body(pool, mr.owner), image) if image else pool_body(pool, mr.owner)

    async def _check_pool(self, mr: Mr, client: BatchClient) -> None:
        """A given pool must exist, run the kind of tasks this job has (containers or not), and be what the spec
        asks for (its VM size, enough task slots per node)."""
        pool = next((p for p in await batch.list_pools(client) if p.get("id") == pool_id(mr)), None)
        if pool is None:
            raise TerminalError(
                REASON_POOL_NOT_FOUND, f"BatchCompute {mr.spec.compute.name} has no pool {pool_id(mr)} (compute.poolId)"
            )
        if (why := pool_mismatch(pool, _image(mr.spec)) or m.shared_pool_refusal(mr.spec, pool)) is not None:
            raise TerminalError(REASON_INVALID_SPEC, why)

    async def _plan_spec(self, mr: Mr, layout: Layout) -> PlanSpec:
        # What else makes two runs the same run (isDeterministic): it only feeds the plan's hash. The code's
        # identity is in it, so new code at the same URI (or in the same ConfigMap) is a new run.
        fingerprint = {
            "task": mr.spec.task.model_dump(mode="json", by_alias=True),
            "environmentVariables": mr.spec.environment_variables,
            "only": layout.only,
            "code": await self._stage_code(mr, layout),
        }
        # Only when there are any: a spec without them keeps the hash it had before they were read.
        if layout.job_inputs or literals(mr.spec):
            fingerprint["jobInputs"] = await self._list_job_inputs(layout, fresh=True)
            fingerprint["literals"] = literals(mr.spec)
        return PlanSpec(layout.kind, mr.spec.mini_batch_size, tuple(mr.spec.partition_keys), fingerprint)

    async def _list_job_inputs(self, layout: Layout, fresh: bool = False) -> dict[str, list[list[str]]]:
        """Name → ``[blob, etag]`` of each input other than input_data, listed once (``fresh``: at planning) and
        kept beside the plan, so every slice of tasks downloads the same files."""
        if not layout.job_inputs:
            return {}
        folder = JsonFolder(layout.store, layout.plan)
        if not fresh and (doc := await folder.get_json(JOB_INPUTS_DOC)) is not None:
            try:
                return {str(k): [[str(b), str(e)] for b, e in v] for k, v in doc.items()}
            except (ValueError, TypeError, AttributeError):  # edited by hand: not what amlops wrote
                raise TerminalError(
                    PLAN_CHANGED, f"{layout.plan.blob(JOB_INPUTS_DOC)} is damaged: delete and recreate the job"
                ) from None
        listed: dict[str, list[list[str]]] = {}
        for name, (source, only) in sorted(layout.job_inputs.items()):
            if only is not None:
                found = await layout.store.properties(source, only)
                if found is None:
                    raise TerminalError(
                        REASON_INPUT_NOT_FOUND, f"input {name} ({layout.store.folder_url(source)}{only}) does not exist"
                    )
                listed[name] = [[only, found[0]]]
                continue
            listed[name] = []
            async for blob in layout.store.list_folder(source):
                listed[name].append([blob.name, blob.etag])
                if sum(len(v) for v in listed.values()) > JOB_INPUT_FILES_LIMIT:
                    raise TerminalError(
                        REASON_JOB_INPUT_TOO_LARGE,
                        f"the inputs other than inputData hold more than {JOB_INPUT_FILES_LIMIT} files "
                        "(JOB_INPUT_FILES_LIMIT; every task downloads each as a resource file): pack a large model "
                        "folder into one file (a uri_file input)",
                    )
            if not listed[name]:
                raise TerminalError(
                    REASON_INPUT_NOT_FOUND, f"input {name} ({layout.store.folder_url(source)}) holds no blob"
                )
        await folder.put_json(JOB_INPUTS_DOC, listed)
        return listed

    async def _stage_code(self, mr: Mr, layout: Layout) -> list[list[str]]:
        """The code folder's identity: blob names and etags, or for task.codeConfigMap names and content
        hashes, after copying the ConfigMap's files into the job's own code folder (re-copying is harmless)."""
        name = mr.spec.task.code_config_map
        if name is None:
            listed = sorted([[b.name, b.etag] async for b in layout.store.list_folder(layout.code)])
            check_code_files(len(listed), layout.store.folder_url(layout.code))
            return listed
        files = await code_files(self._objects, mr.namespace, name, "task.codeConfigMap")
        check_code_files(len(files), f"ConfigMap {mr.namespace}/{name}")
        await layout.store.upload_files(layout.code, files)
        return sorted([[k, hashlib.sha256(v).hexdigest()] for k, v in files.items()])

    async def _requirements(self, mr: Mr, layout: Layout) -> str | None:
        environment = mr.spec.task.environment
        if environment is None:
            return None
        conda = None
        if environment.conda_file is not None:
            data = await layout.store.read(layout.code, environment.conda_file, 0, MAX_CONDA_FILE_BYTES + 1)
            if data is not None and len(data) > MAX_CONDA_FILE_BYTES:
                raise too_large(environment.conda_file)
            conda = None if data is None else data.decode("utf-8", "replace")
        # YAML parsing is CPU work on tenant data: off the event loop every other object shares.
        return await asyncio.to_thread(requirements, environment.pip_requirements, environment.conda_file, conda)

    async def _listing(self, layout: Layout) -> AsyncIterator[InputItem]:
        """input_data's blobs: a uri_file's one, an mltable's that its MLTable file's paths name (every one
        without an MLTable file), a uri_folder's all."""
        table = await self._mltable(layout) if layout.table else None
        async for blob in layout.store.list_folder(layout.inputs):
            if layout.only is not None and blob.name != layout.only:
                continue
            if table is not None and not in_table(blob.name, table):
                continue
            yield InputItem(blob.name, blob.size, blob.etag)

    async def _mltable(self, layout: Layout) -> list[dict[str, str]] | None:
        data = await layout.store.read(layout.inputs, MLTABLE_FILE, 0, MAX_MLTABLE_BYTES + 1)
        if data is None:
            return None
        return mltable_paths(data.decode("utf-8", "replace"))

    async def _task_files(self, layout: Layout) -> TaskFiles:
        """What every task downloads besides its inputs, read once a pass (not once a slice)."""
        store = layout.store
        # create() wrote requirements.txt only when the environment asks for a package: the blob is the answer.
        installs = await store.exists(layout.plan, REQUIREMENTS_FILE)
        code = [blob.name async for blob in store.list_folder(layout.code)]
        check_code_files(len(code), store.folder_url(layout.code))
        listed = await self._list_job_inputs(layout)
        return TaskFiles(installs, code, {name: [blob for blob, _ in blobs] for name, blobs in listed.items()})

    async def _tasks(self, mr: Mr, layout: Layout, common: TaskFiles, batches: list[MiniBatch]) -> list[dict[str, Any]]:
        """One slice's tasks (see :func:`task_bodies`), signed with tokens that end with the job: each slice
        signs afresh, so the tokens of a long job's later tasks are renewed as they are added."""
        store, spec = layout.store, mr.spec
        sign = store.signer(sas_expiry(datetime.now(UTC), spec.active_deadline_seconds, SAS_LIFETIME, SAS_MARGIN))
        # Building the bodies and signing their tokens (two or more per task) is most of the CPU here. It is done on
        # the event loop a part at a time, yielding between parts, so one large job's slice does not hold up every
        # other object's reconcile for more than a part. Not in a thread: the GIL makes that no faster, and the loop
        # then waits for the builder in 5 ms turns, leaving Batch without the next collection (bench/
        # paralleljob_plan_submit.py: 1.09-1.24x the add-task ceiling with a thread, 1.01-1.18x by parts).
        tasks: list[dict[str, Any]] = []
        documents: dict[str, bytes] = {}
        for low in range(0, len(batches), BUILD_PART):
            part, docs = task_bodies(
                spec, layout, sign, common.code, common.installs, batches[low : low + BUILD_PART],
                common.job_input_files,
            )  # fmt: skip
            tasks += part
            documents.update(docs)
            await asyncio.sleep(0)
        for name, document in documents.items():  # manifests too large to travel inside their task
            await store.write(layout.plan, name, document, "application/json")
        return tasks

    # ------------------------------------------------------------------------------------------- access

    async def _batch(self, mr: Mr) -> BatchClient | None:
        access = await self._access(mr)
        return access.client if access is not None else None

    async def _access(self, mr: Mr) -> AccountAccess | None:
        """The BatchCompute's account. Not Ready: wait (Reconciling). Deleting: whatever its state (throttled,
        resizing, itself being deleted), its spec and credentials reach the account to delete the job and its
        pool; None only when the BatchCompute no longer exists."""
        name = mr.spec.compute.name
        access = await account_access(
            self._clients, self._secrets, self._objects, mr.namespace, name, ready_only=not mr.deleting, user=mr.uid
        )
        if access.client is not None:
            return access
        if mr.deleting:
            return None
        raise RetryableError(REASON_WAITING_FOR_COMPUTE, access.message, WAIT_FOR_COMPUTE_SECONDS)

    async def _store(self, mr: Mr) -> BlobStore:
        ref = mr.spec.storage_credentials.secret_ref if mr.spec.storage_credentials else None
        if ref is not None:
            connection = await secret_value(self._secrets, mr.namespace, ref.name, ref.key, REASON_CREDENTIALS_MISSING)
        else:
            connection = self._clients.settings.blob_connection_string or ""
            if not connection:
                raise TerminalError(
                    REASON_CREDENTIALS_MISSING,
                    "set spec.storageCredentials (or the operator's AMLOPS_BLOB_CONNECTION_STRING)",
                )
        await self._close_stores(self._store_users.hold(mr.uid, "store", connection))
        store = self._stores.get(connection)
        if store is None:
            store = self._stores[connection] = _open_store(connection, ref.name if ref else None)
        return store

    async def _layout(self, mr: Mr) -> Layout:
        store, spec = await self._store(mr), mr.spec
        data = reference(spec.input_data, spec.inputs, "inputs")
        source = spec.inputs[data]
        if source.uri is None:  # validate() refuses it before any layout is made
            raise TerminalError(REASON_INVALID_SPEC, f"inputData {spec.input_data} is a literal input")
        only: str | None = None
        if source.type == "uri_file":
            inputs, only = store.file(source.uri)
        else:
            inputs = store.folder(source.uri)
        others = {
            name: store.file(uri) if kind == "uri_file" else (store.folder(uri), None)
            for name, kind in job_inputs(spec, data).items()
            if (uri := spec.inputs[name].uri) is not None
        }
        tabular = source.type == "mltable" or (only is not None and only.lower().endswith(TABULAR_SUFFIXES))
        out_name = (
            reference(spec.task.append_row_to, spec.outputs, "outputs")
            if spec.task.append_row_to
            else sorted(spec.outputs)[0]
        )
        output = store.folder(spec.outputs[out_name].uri)
        jid = job_id(mr)
        plan = BlobFolder(output.container, manifest_prefix(output.prefix, jid))
        code = store.folder(spec.task.code) if spec.task.code else plan.sub("code/")
        if spec.storage_credentials is None:  # the operator's account, shared by namespaces: only their own containers
            containers = (
                inputs.container,
                output.container,
                code.container,
                *(f.container for f, _ in others.values()),
            )
            refusal = shared_storage_refusal(mr.namespace, self._clients.settings.shared_storage_namespaces, containers)
            if refusal is not None:
                raise TerminalError(REASON_STORAGE_NOT_ALLOWED, refusal)
        return Layout(
            store=store,
            inputs=inputs,
            only=only,
            kind="tabular" if tabular else "files",
            output=output,
            plan=plan,
            results=BlobFolder(output.container, results_prefix(output.prefix, jid)),
            code=code,
            job_inputs=others,
            table=source.type == "mltable",
        )


def _open_store(connection: str, secret: str | None) -> BlobStore:
    """The account a connection string names; never echoes the string (it holds the account key)."""
    try:
        return BlobStore.from_connection_string(connection)
    except ValueError:
        where = f"Secret {secret} (spec.storageCredentials)" if secret else "AMLOPS_BLOB_CONNECTION_STRING"
        raise TerminalError(
            REASON_INVALID_CONNECTION_STRING,
            f"{where} holds no storage connection string (AccountName=...;AccountKey=...;BlobEndpoint=...)",
        ) from None


def task_bodies(
    spec: ParallelJobSpec,
    layout: Layout,
    sign: BlobSigner,
    code: list[str],
    installs: bool,
    batches: list[MiniBatch],
    job_input_files: Mapping[str, list[str]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The Batch tasks of ``batches``, and the manifest documents (plan blob name → bytes) to write for those
    too large to travel inside their task.

    Every blob a task touches has its own SAS token (``BlobSigner``): read on the driver, ``requirements.txt``,
    each code file, each blob of the inputs other than input_data (``job_input_files``: input name → its blobs,
    resource files under ``job-inputs/<name>/``) and each input the mini-batch names; read + write on its
    ``<index>.summary.json`` and write on its ``<index>.txt``; nothing container-wide. SAS URLs travel in
    resource files, the manifest and the task's environment, never on its command line (``ps`` shows command
    lines to every task on the node)."""
    append_row = spec.task.append_row_to is not None
    job_input_files = job_input_files or {}
    data = reference(spec.input_data, spec.inputs, "inputs")
    paths = input_paths(data, data_inputs(spec), job_input_files)

    def command(mini_batch: str) -> str:
        return driver_command_line(
            mini_batch=mini_batch,
            entry_script=spec.task.entry_script,
            timeout=spec.retry_settings.timeout,
            logging_level=spec.logging_level,
            append_row=append_row,
            program_arguments=spec.task.program_arguments,
            requirements=REQUIREMENTS_FILE if installs else None,
            literals=literals(spec),
            paths=paths,
        )

    inline_command, file_command = command(f"env:{MINI_BATCH_VARIABLE}"), command(MANIFEST_FILE)
    files = [
        {"httpUrl": sign.url(layout.plan, DRIVER_FILE), "filePath": DRIVER_FILE},
        *({"httpUrl": sign.url(layout.code, name), "filePath": code_file_path(name)} for name in code),
    ]
    if installs:
        files.append({"httpUrl": sign.url(layout.plan, REQUIREMENTS_FILE), "filePath": REQUIREMENTS_FILE})
    for name, blobs in sorted(job_input_files.items()):
        source = layout.job_inputs[name][0]
        files += [{"httpUrl": sign.url(source, blob), "filePath": job_input_path(name, blob)} for blob in blobs]
    # A backstop only: the driver enforces retrySettings.timeout per run() call itself (exit code 3).
    wall_clock = spec.retry_settings.timeout * 2 + 600
    environment = [{"name": k, "value": v} for k, v in sorted(spec.environment_variables.items())]
    container = container_settings(_image(spec))
    tasks: list[dict[str, Any]] = []
    documents: dict[str, bytes] = {}
    for mini_batch in batches:
        urls = {name: sign.url(layout.inputs, name) for name in input_names(mini_batch)}
        manifest = COMPACT_JSON.encode(with_input_urls(mini_batch.to_json(), urls))
        results = driver_environment(
            sign.url(layout.results, f"{mini_batch.index}.summary.json", READ_WRITE),
            sign.url(layout.results, f"{mini_batch.index}.txt", WRITE) if append_row else None,
        )
        task: dict[str, Any] = {
            "id": m.task_id(mini_batch.index),
            "commandLine": inline_command,
            "resourceFiles": files,
            "constraints": {"maxTaskRetryCount": spec.retry_settings.max_retries,
                            "maxWallClockTime": f"PT{wall_clock}S"},
            "environmentSettings": [*environment, *results, {"name": MINI_BATCH_VARIABLE, "value": manifest}],
            **({"containerSettings": container} if container else {}),
        }  # fmt: skip
        if len(manifest) > INLINE_MANIFEST_BYTES:  # too large to travel inside the task: a document of its own
            name = mini_batch_name(mini_batch.index)
            documents[name] = manifest.encode()
            task.update(
                commandLine=file_command,
                resourceFiles=[*files, {"httpUrl": sign.url(layout.plan, name), "filePath": MANIFEST_FILE}],
                environmentSettings=[*environment, *results],
            )
        tasks.append(task)
    return tasks, documents


def input_names(mini_batch: MiniBatch) -> list[str]:
    """The input blobs a mini-batch reads (each once: a partitioned mini-batch may hold many ranges of one file)."""
    if mini_batch.kind == "files":
        return list(mini_batch.files)
    return list(dict.fromkeys(r.name for r in mini_batch.ranges))


def check_code_files(count: int, where: str) -> None:
    if count > CODE_FILES_LIMIT:
        raise TerminalError(
            REASON_CODE_FOLDER_TOO_LARGE,
            f"{where} holds {count} files; a code folder may hold at most {CODE_FILES_LIMIT} (every task downloads "
            "each as a resource file): package the rest, e.g. as a wheel in task.environment",
        )


def shared_storage_refusal(namespace: str, allowed: str, containers: Iterable[str]) -> str | None:
    """Why a namespace may not use the operator's storage account (AMLOPS_BLOB_CONNECTION_STRING), or None.

    ``allowed`` is AMLOPS_SHARED_STORAGE_NAMESPACES: namespace globs separated by commas, ``*`` for all, empty
    for none. An allowed namespace still reaches only its own containers: ``<namespace>`` or ``<namespace>-...``,
    so one team cannot read or overwrite another's data with the operator's key."""
    if not namespace_listed(allowed, namespace):
        return (
            f"namespace {namespace} may not use the operator's storage account (AMLOPS_SHARED_STORAGE_NAMESPACES): "
            "set spec.storageCredentials"
        )
    foreign = sorted({c for c in containers if c != namespace and not c.startswith(f"{namespace}-")})
    if foreign:
        return (
            f"with the operator's storage account, namespace {namespace} may use only containers named {namespace} "
            f"or {namespace}-*, not {', '.join(foreign)}: rename them or set spec.storageCredentials"
        )
    return None


def _image(spec: ParallelJobSpec) -> str | None:
    return spec.task.environment.image if spec.task.environment else None
