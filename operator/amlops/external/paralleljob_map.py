"""ParallelJob decisions, pure: Batch task facts and driver summaries → counts, phase, next action, status.

No I/O. ``external/paralleljob.py`` gathers the facts (the job's task counts, its finished tasks with their
final summaries, whether the output is written) and carries out the one action decided here; the engine
turns the :class:`~amlops.reconcile.external.Observation` built here into conditions.

Thresholds follow Azure ML: a job fails when failures go strictly above ``errorThreshold`` (failed items) or
``miniBatchErrorThreshold`` (failed mini-batches: ``run()`` raised, timed out, or returned fewer results than
items); -1 ignores failures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from amlops.api.job import JobPhase
from amlops.api.paralleljob import DEFAULT_VM_SIZE, ParallelJobSpec
from amlops.external.paralleljob_output import compress_ranges
from amlops.reconcile import job
from amlops.reconcile.external import Observation
from amlops.reconcile.job import REASON_RUNNING, REASON_SUCCEEDED, REASON_SUSPENDED, SUSPENDED_MESSAGE, TERMINAL
from amlops.reconcile.managed import OWNER_TAG

Action = Literal["add", "suspend", "resume", "fail", "finish", "release"]

TASK_PREFIX = "mb-"

REASON_ERROR_THRESHOLD = "ErrorThresholdExceeded"
REASON_MINI_BATCH_ERROR_THRESHOLD = "MiniBatchErrorThresholdExceeded"
REASON_JOB_TERMINATED = "JobTerminated"
REASON_POOL_NOT_MANAGED = "PoolNotManaged"
REASON_REQUIRES_AML_COMPUTE = "RequiresAmlCompute"
# Batch refuses a request body of 1 MB or more (RequestBodyTooLarge; azure-batch's BatchTaskGroup: "The total
# serialized size of this collection must be less than 1MB"): a job whose metadata alone would not fit is refused.
MAX_REQUEST_BYTES = 1_000_000

# Batch job states in which the job can still run tasks (and so can be terminated, disabled or enabled).
_LIVE = frozenset({"active", "disabling", "disabled", "enabling"})


def task_id(index: int) -> str:
    return f"{TASK_PREFIX}{index}"


def task_index(task_id_: str) -> int | None:
    head, _, number = task_id_.partition(TASK_PREFIX)
    return int(number) if not head and number.isdigit() else None


@dataclass(frozen=True, slots=True)
class TaskFact:
    """One mini-batch's Batch task: ``state`` active/preparing/running/completed, ``result`` success/failure."""

    index: int
    state: str
    result: str | None = None
    retries: int = 0


def task_facts(tasks: Iterable[Mapping[str, Any]]) -> list[TaskFact]:
    """Batch task dicts (camelCase, as ``as_dict`` gives) → facts; tasks amlops did not add are ignored."""
    facts = []
    for task in tasks:
        index = task_index(str(task.get("id") or ""))
        if index is None:
            continue
        info = task.get("executionInfo") or {}
        facts.append(
            TaskFact(index, str(task.get("state") or ""), info.get("result"), int(info.get("retryCount") or 0))
        )
    return facts


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished mini-batch (final: a completed task never changes): its task's last result and retries used,
    and the item counts of its summary."""

    succeeded: bool
    retries: int = 0
    processed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Facts:
    total: int  # mini-batches planned
    added: int  # tasks the Batch job has, in any state
    running: int  # of those, running or preparing
    finished: Mapping[int, Finished]  # index → its final facts
    job_state: str  # the Batch job's state
    suspend: bool = False
    error_threshold: int = -1
    mini_batch_error_threshold: int = -1
    output_ready: bool = False  # parallel_run_step.txt written (or none asked for)
    elapsed: float | None = None  # seconds since startTime
    deadline: int | None = None  # activeDeadlineSeconds
    terminate_reason: str | None = None  # the job's, when it ended


@dataclass(frozen=True)
class Counts:
    total: int
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    items_processed: int = 0
    items_failed: int = 0
    failed_indexes: tuple[int, ...] = ()

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True)
class Decision:
    phase: JobPhase
    counts: Counts
    action: Action | None = None
    reason: str = ""
    message: str = ""


def finished(task: TaskFact, summary: tuple[int, int] | None, summary_valid: bool = True) -> Finished:
    """A finished task's facts. The mini-batch failed when its task did, when user code made its summary invalid
    (whatever the task's exit), or when ``run()`` returned fewer results than items: Azure ML marks such a
    mini-batch failed ("How to use parallel job in pipeline", mini_batch_error_threshold), and so does the
    emulator's parallel runtime (``amlops_emulator.ml.parallel``), so both backends count it the same."""
    processed, failed_items = summary or (0, 0)
    return Finished(task.result == "success" and summary_valid and failed_items == 0, task.retries, processed,
                    failed_items)  # fmt: skip


def count(facts: Facts) -> Counts:
    done = facts.finished.values()
    failed_indexes = tuple(sorted(i for i, f in facts.finished.items() if not f.succeeded))
    # Task counts and the finished list are read one after the other: never report more than is left.
    running = max(0, min(facts.running, facts.total - len(facts.finished)))
    return Counts(
        total=facts.total,
        pending=max(0, facts.total - running - len(facts.finished)),
        running=running,
        succeeded=len(facts.finished) - len(failed_indexes),
        failed=len(failed_indexes),
        retried=sum(f.retries for f in done),
        items_processed=sum(f.processed for f in done),
        items_failed=sum(f.failed for f in done),
        failed_indexes=failed_indexes,
    )


def threshold_failure(counts: Counts, error_threshold: int, mini_batch_error_threshold: int) -> tuple[str, str] | None:
    """(reason, message) once failures are strictly above a threshold; -1 never fails."""
    detail = f"{counts.items_failed} items and {counts.failed} mini-batches failed"
    if error_threshold >= 0 and counts.items_failed > error_threshold:
        return REASON_ERROR_THRESHOLD, f"{detail}; errorThreshold is {error_threshold}"
    if mini_batch_error_threshold >= 0 and counts.failed > mini_batch_error_threshold:
        return REASON_MINI_BATCH_ERROR_THRESHOLD, f"{detail}; miniBatchErrorThreshold is {mini_batch_error_threshold}"
    return None


def decide(facts: Facts) -> Decision:
    """The phase, and the one write that moves the job on (None: wait for Batch)."""
    counts = count(facts)
    live = facts.job_state in _LIVE
    failure = threshold_failure(counts, facts.error_threshold, facts.mini_batch_error_threshold)
    if failure is None:
        failure = job.deadline_exceeded(facts.deadline, facts.elapsed)
    all_finished = counts.finished == facts.total
    if failure is None and not live and not all_finished:
        why = facts.terminate_reason or "unknown"
        failure = REASON_JOB_TERMINATED, f"the Batch job ended before its mini-batches did (reason: {why})"
    if failure is not None:
        reason, message = failure
        if live:
            return Decision("Running", counts, "fail", reason, message)
        return Decision("Failed", counts, None, reason, message)
    if all_finished:
        if facts.output_ready and not live:
            return Decision("Complete", counts, None, REASON_SUCCEEDED, _finished_message(counts))
        return Decision("Running", counts, "finish", REASON_RUNNING, "writing the output and releasing compute")
    if facts.suspend:
        if facts.job_state in ("active", "enabling"):
            return Decision("Running", counts, "suspend", REASON_RUNNING, "stopping mini-batches")
        if facts.job_state == "disabling":
            return Decision("Running", counts, None, REASON_RUNNING, "stopping mini-batches")
        return Decision("Suspended", counts, None, REASON_SUSPENDED, SUSPENDED_MESSAGE)
    if facts.job_state in ("disabled", "disabling"):
        return Decision("Running", counts, "resume", REASON_RUNNING, "resuming mini-batches")
    if facts.added < facts.total:
        return Decision("Running", counts, "add", REASON_RUNNING, f"adding {facts.total - facts.added} mini-batches")
    return Decision("Running", counts, None, REASON_RUNNING, f"{counts.running} running mini-batches")


def _finished_message(counts: Counts) -> str:
    text = f"{counts.succeeded} of {counts.total} mini-batches succeeded"
    return text + (f", {counts.failed} failed" if counts.failed else "")


def progress(counts: Counts, elapsed: float | None) -> dict[str, Any]:
    """``progress`` "N/M", ``progressPercentage`` and ``estimatedRemainingSeconds`` (from the rate so far)."""
    done, total = counts.finished, counts.total
    remaining: int | None = None
    if done >= total:
        remaining = 0
    elif done > 0 and elapsed is not None:
        remaining = round(elapsed / done * (total - done))
    return {
        "progress": f"{done}/{total}",
        "progressPercentage": 100 if total == 0 else done * 100 // total,
        "estimatedRemainingSeconds": remaining,
    }


def status_fields(decision: Decision, elapsed: float | None) -> dict[str, Any]:
    c = decision.counts
    return {
        "phase": decision.phase,
        "miniBatches": {
            "total": c.total,
            "pending": c.pending,
            "running": c.running,
            "succeeded": c.succeeded,
            "failed": c.failed,
            "retried": c.retried,
        },
        "items": {"processed": c.items_processed, "failed": c.items_failed},
        "failedMiniBatches": compress_ranges(c.failed_indexes) or None,
        **progress(c, elapsed),
    }


def observation(decision: Decision, at_provider: Mapping[str, Any], owner: str) -> Observation:
    """The engine's view of a decision: an action → not up to date (the engine calls ``update``, and doing it
    again is progress: a step); otherwise the job's phase as every job kind reports it (``reconcile/job.py``)."""
    if decision.action is not None:
        return Observation(
            True, resource_up_to_date=False, owner=owner, at_provider=at_provider, diff=decision.message, step=True
        )
    return job.settled(decision.phase, decision.reason, decision.message, at_provider, owner)


def releasing(decision: Decision, pool_left: bool) -> Decision:
    """A job done in Batch whose own pool is still there has one thing left to do: delete the pool. It is not
    finished until then (as while it writes its output): Running, and the next pass decides again."""
    if decision.phase in TERMINAL and decision.action is None and pool_left:
        return replace(decision, phase="Running", action="release", reason=REASON_RUNNING,
                       message="deleting the job's pool")  # fmt: skip
    return decision


def unmanaged_pool(pool_id: str | None, managed: Iterable[str], compute: str) -> str | None:
    """Why ``compute.poolId`` may not be used (None: it may): only a pool of the BatchCompute's ``spec.pools``,
    never another job's ``pj-`` pool nor a pool amlops does not manage."""
    if pool_id is None or pool_id in set(managed):
        return None
    return (
        f"pool {pool_id} (compute.poolId) is not one of BatchCompute {compute}'s spec.pools ({sorted(managed)}): "
        "a job runs only on a pool that BatchCompute manages, or on a pool of its own (omit poolId)"
    )


def azure_ml_only(spec: ParallelJobSpec) -> str | None:
    """Why a spec cannot run on a BatchCompute (None: it can): the fields only Azure ML honours. Refused rather
    than ignored: a job asked for a GPU type, a shared memory size or an identity must not run without them."""
    resources = spec.resources
    given = [
        name
        for name, value in (
            ("resources.instanceType", resources.instance_type if resources else None),
            ("resources.shmSize", resources.shm_size if resources else None),
            ("resources.dockerArgs", resources.docker_args if resources else None),
            ("identity", spec.identity),
        )
        if value is not None
    ]
    if not given:
        return None
    return (
        f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} an AmlCompute (the Azure ML backend): "
        f"BatchCompute {spec.compute.name} runs Batch tasks, which cannot honour "
        f"{'it' if len(given) == 1 else 'them'}; remove {'it' if len(given) == 1 else 'them'} or name an AmlCompute "
        "in compute.name (a Batch pool's VM size is compute.instanceType)"
    )


def vm_size(spec: ParallelJobSpec) -> str:
    """The vmSize of the pool amlops creates for the job."""
    return spec.compute.instance_type or DEFAULT_VM_SIZE


def shared_pool_refusal(spec: ParallelJobSpec, pool: Mapping[str, Any]) -> str | None:
    """Why the job cannot run as its spec says on the given pool ``compute.poolId`` (None: it can). The pool's
    VM size and task slots are the pool's: a compute.instanceType that differs from its vmSize (Batch compares
    VM sizes ignoring case), or more mini-batches per node than it has slots, would be silently ignored."""
    pool_size = str(pool.get("vmSize") or "")
    wanted = spec.compute.instance_type
    if wanted is not None and wanted.lower() != pool_size.lower():
        return (
            f"compute.instanceType {wanted} is not the vmSize of pool {pool.get('id')} ({pool_size}): remove it "
            "(the pool's VM size is used) or omit compute.poolId (amlops creates a pool of that size)"
        )
    slots = int(pool.get("taskSlotsPerNode") or 1)
    if spec.max_concurrency_per_instance > slots:
        return (
            f"maxConcurrencyPerInstance {spec.max_concurrency_per_instance} is more than the {slots} task slots per "
            f"node of pool {pool.get('id')}: at most {slots}, or omit compute.poolId"
        )
    return None


def max_parallel_tasks(spec: ParallelJobSpec) -> int:
    """At most instanceCount times maxConcurrencyPerInstance mini-batches at once, as on Azure ML (instance_count
    nodes, max_concurrency_per_instance processes each): the Batch job's maxParallelTasks on a shared pool."""
    return spec.instance_count * spec.max_concurrency_per_instance


def job_metadata(spec: ParallelJobSpec, owner: str) -> list[dict[str, str]]:
    """The Batch job's metadata (name/value pairs Batch keeps and returns, giving them no meaning): the owner
    tag first, then the seed's description, experiment_name, tags (``tag:<key>``) and properties
    (``property:<key>``), so they reach Azure rather than staying on the object. display_name is the job's own
    displayName."""
    items = [{"name": OWNER_TAG, "value": owner}]
    for name, value in (("description", spec.description), ("experimentName", spec.experiment_name)):
        if value is not None:
            items.append({"name": name, "value": value})
    items += [{"name": f"tag:{k}", "value": v} for k, v in sorted(spec.tags.items())]
    items += [{"name": f"property:{k}", "value": v} for k, v in sorted(spec.properties.items())]
    return items


def job_body(
    spec: ParallelJobSpec, job_id: str, pool_id: str, owner: str, fallback_name: str, shared_pool: bool
) -> dict[str, Any]:
    """The Batch job amlops creates (``JobAddParameter``). On a pool amlops creates for the job, the pool's
    nodes and slots already are instanceCount times maxConcurrencyPerInstance; on a shared pool, maxParallelTasks
    caps the job at that many running mini-batches."""
    body: dict[str, Any] = {
        "id": job_id,
        "displayName": (spec.display_name or fallback_name)[:1024],
        "poolInfo": {"poolId": pool_id},
        "metadata": job_metadata(spec, owner),
    }
    if shared_pool:
        body["maxParallelTasks"] = max_parallel_tasks(spec)
    return body


def oversized(body: Mapping[str, Any]) -> str | None:
    """Why Batch would refuse the job's body for its size (None: it fits)."""
    size = len(json.dumps(body, separators=(",", ":")).encode())
    if size < MAX_REQUEST_BYTES:
        return None
    return (
        f"the Batch job would be {size} bytes, mostly tags, properties and description (its metadata): Batch takes "
        f"less than {MAX_REQUEST_BYTES} bytes; shorten them"
    )
