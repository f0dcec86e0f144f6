"""The Azure Batch data-plane adapter for jobs and tasks (a ParallelJob's Batch job and its mini-batch tasks).

Plain dicts in and out; every error leaves as the engine's RetryableError / TerminalError through
:func:`amlops.azure.errors.translate`, except the answers that are facts here (``JobExists``, ``JobNotFound``,
``TaskExists``, a job already completed), which become return values. Writes start the operation and return
(``polling_interval=0``, never awaiting the poller): the next observation shows where it got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from amlops.azure.batch import create_if_absent
from amlops.azure.errors import azure_errors, error_code, is_azure_failure, translate
from amlops.reconcile.errors import TerminalError

JSON = dict[str, Any]
TASK_FIELDS = ["id", "state", "executionInfo"]
# Conflicts that mean "already where you want it": the job has ended, or is going away.
_ENDED = frozenset({"JobCompleted", "JobBeingTerminated", "JobBeingDeleted"})


async def create_job(client: BatchClient, job: JSON) -> bool:
    """Create the job; False when a job of that id exists already."""
    return await create_if_absent(lambda: client.create_job(models.BatchJobCreateOptions(job)), "JobExists")


async def get_job(client: BatchClient, job_id: str) -> JSON | None:
    with azure_errors():
        try:
            job = await client.get_job(job_id)
        except ResourceNotFoundError:
            return None
    return dict(job.as_dict())


async def list_tasks(client: BatchClient, job_id: str, state: str | None = None) -> list[JSON]:
    """The job's tasks (only those in ``state`` when given) with state and execution info, in pages of 1000."""
    query = f"state eq '{state}'" if state else None
    with azure_errors():
        try:
            pages = client.list_tasks(job_id, filter=query, select=TASK_FIELDS, max_results=1000)
            return [dict(t.as_dict()) async for t in pages]
        except ResourceNotFoundError:
            return []


async def task_counts(client: BatchClient, job_id: str) -> JSON:
    """``{active, running, completed, succeeded, failed}`` for the job (one call)."""
    with azure_errors():
        result = await client.get_job_task_counts(job_id)
    return dict(result.task_counts.as_dict())


async def add_tasks(client: BatchClient, job_id: str, tasks: Sequence[JSON], concurrency: int = 8) -> int:
    """Add ``tasks``: the SDK sends collections of at most 100 (fewer when a body would pass 1 MB),
    ``concurrency`` at a time, and retries server errors; tasks that exist already are skipped (``TaskExists``),
    so adding again after a crash is harmless. Returns how many were submitted."""
    options = [models.BatchTaskCreateOptions(task) for task in tasks]
    with azure_errors():
        try:
            await client.create_tasks(job_id, options, max_concurrency=concurrency)
        except models.CreateTasksError as e:
            raise _create_tasks_error(e) from e
    return len(tasks)


async def terminate_job(client: BatchClient, job_id: str, reason: str) -> None:
    """Running tasks end; active ones are never scheduled. A job already ended or gone is fine."""
    # azure-batch 15.1.0 cannot send a terminate without a body: the options go as a plain mapping.
    options: Any = {"terminateReason": reason}
    await _ignoring_ended(lambda: client.begin_terminate_job(job_id, options, polling_interval=0))


async def disable_job(client: BatchClient, job_id: str) -> None:
    """Stop scheduling; running tasks go back to the queue (``requeue``) and run again on enable."""
    options = models.BatchJobDisableOptions(disable_tasks="requeue")
    await _ignoring_ended(lambda: client.begin_disable_job(job_id, options, polling_interval=0))


async def enable_job(client: BatchClient, job_id: str) -> None:
    await _ignoring_ended(lambda: client.begin_enable_job(job_id, polling_interval=0))


async def delete_job(client: BatchClient, job_id: str) -> None:
    """Delete the job (its running tasks end with it); missing or already deleting is fine."""
    await _ignoring_ended(lambda: client.begin_delete_job(job_id, polling_interval=0))


async def _ignoring_ended(call: Callable[[], Awaitable[object]]) -> None:
    with azure_errors():
        try:
            await call()
        except ResourceNotFoundError:
            return
        except HttpResponseError as e:
            if error_code(e) in _ENDED or error_code(e) == "JobNotFound":
                return
            raise


def _create_tasks_error(error: Any) -> Exception:
    """The first underlying failure of a ``CreateTasksError``: a request error, or a task the service refused."""
    for failure in list(getattr(error, "errors", ()) or ()):
        if isinstance(failure, Exception):
            return translate(failure) if is_azure_failure(failure) else failure
    for result in list(getattr(error, "failure_tasks", ()) or ()):
        inner = getattr(result, "error", None)
        code = str(getattr(inner, "code", None) or "InvalidTask")
        message = getattr(getattr(inner, "message", None), "value", None) or str(inner)
        return TerminalError(code, f"task {getattr(result, 'task_id', '?')}: {message}")
    return translate(error)
