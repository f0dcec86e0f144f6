"""The Azure Batch data-plane adapter for jobs and tasks (a ParallelJob's Batch job and its mini-batch tasks).

Plain dicts in and out; every error leaves as the engine's RetryableError / TerminalError through
:func:`amlops.azure.errors.translate`, except the answers that are facts here (``JobExists``, ``JobNotFound``,
``TaskExists``, a job already completed), which become return values. Writes start the operation and return
(``polling_interval=0``, never awaiting the poller): the next observation shows where it got.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, cast

from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import AsyncHttpResponse

from amlops.azure.batch import create_if_absent
from amlops.azure.errors import DEFAULT_RETRY, azure_errors, error_code, is_azure_failure, translate
from amlops.reconcile.errors import RetryableError, TerminalError

JSON = dict[str, Any]
TASK_FIELDS = ["id", "state", "executionInfo"]
# Conflicts that mean "already where you want it": the job has ended, or is going away.
_ENDED = frozenset({"JobCompleted", "JobBeingTerminated", "JobBeingDeleted"})
# addtaskcollection requests in flight while adding tasks.
ADD_CONCURRENCY = 8
# What one addtaskcollection takes (Batch REST, Task - Add Collection): at most 100 tasks, a body under 1 MB, else
# RequestBodyTooLarge.
MAX_TASKS_PER_COLLECTION = 100
BODY_TOO_LARGE = "RequestBodyTooLarge"


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


async def add_tasks(client: BatchClient, job_id: str, tasks: Sequence[JSON], concurrency: int = ADD_CONCURRENCY) -> int:
    """Add ``tasks`` (bodies as the REST API spells them) in collections of at most 100, ``concurrency`` requests
    in flight: a collection whose body Batch finds too large (1 MB) goes again in halves, and tasks that exist
    already are skipped (``TaskExists``), so adding again after a crash is harmless. Returns how many were
    submitted. What the SDK's ``create_tasks`` does, without its model object per task: building 100,000 of them
    from their JSON took a third of the operator's CPU (bench/paralleljob_plan_submit.py), to be turned back
    into the same JSON."""
    pending: deque[Sequence[JSON]] = deque(
        tasks[low : low + MAX_TASKS_PER_COLLECTION] for low in range(0, len(tasks), MAX_TASKS_PER_COLLECTION)
    )
    failures: list[Exception] = []

    async def sender() -> None:
        while pending and not failures:
            try:
                await _add_collection(client, job_id, pending.popleft(), pending)
            except Exception as e:  # the first failure ends every sender; it is raised below
                failures.append(e)

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    if failures:
        raise translate(failures[0]) if is_azure_failure(failures[0]) else failures[0]
    return len(tasks)


async def _add_collection(
    client: BatchClient, job_id: str, collection: Sequence[JSON], pending: deque[Sequence[JSON]]
) -> None:
    # The operation sends its body through json.dumps: the REST API's own JSON goes as it is (the SDK's model is
    # a mapping of exactly this shape). The answer is read as JSON too (streamed, ``cls`` keeping the HTTP
    # response): a result model per task cost a tenth of the operator's CPU in adding 100,000 tasks.
    body: Any = {"value": list(collection)}
    try:
        answer = await client.create_task_collection(job_id, body, stream=True, cls=_http_response)
    except HttpResponseError as e:
        await read_batch_error(e)
        if error_code(e) == BODY_TOO_LARGE and len(collection) > 1:
            half = len(collection) // 2
            pending.extendleft((collection[half:], collection[:half]))  # extendleft reverses: the first half first
            return
        raise
    response = cast(AsyncHttpResponse, answer)  # what _http_response kept
    for result in json.loads(await response.read()).get("value") or ():
        refused = _refused(result)
        if refused is not None:
            raise refused


def _http_response(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    return pipeline_response.http_response


async def read_batch_error(error: HttpResponseError) -> None:
    """Batch's error (code, message) on an error of a streamed call: azure-batch 15.1 does not read a streamed
    answer's body before it deserialises the error, so the error comes without it. Read here, the body gives the
    error funnel Batch's code as for any other call; a body that cannot be read leaves the HTTP status to speak."""
    if error.model is not None or error.response is None:
        return
    response = cast(AsyncHttpResponse, error.response)  # an async client's
    with suppress(AzureError, ValueError):
        error.model = models.BatchError(json.loads(await response.read()))


def _refused(result: JSON) -> Exception | None:
    """A task Batch did not add (None: added, or it exists already): a server error passes with time, a client
    error needs the task changed. ``result`` is a TaskAddResult as Batch writes it (its status in lower case)."""
    status = result.get("status")
    error = result.get("error") or {}
    code = str(error.get("code") or "")
    if status == "success" or code == "TaskExists":
        return None
    message = f"task {result.get('taskId')}: {(error.get('message') or {}).get('value') or error}"
    if status == "servererror":
        return RetryableError(code or "ServerError", message, DEFAULT_RETRY)
    return TerminalError(code or "InvalidTask", message)


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
