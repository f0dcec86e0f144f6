"""Task operations: create, addtaskcollection, get/list, terminate/reactivate, delete, task files (B6-B8, B10, B12)."""

from __future__ import annotations

import mimetypes
import shutil
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from amlops_emulator.batch.model import Job, Task
from amlops_emulator.batch.responses import (
    REQUEST_ID,
    account,
    account_url,
    check_preconditions,
    created,
    entity,
    json_response,
    page,
    read_json,
    service,
    updated,
)
from amlops_emulator.batch.routes_jobs import job_of
from amlops_emulator.batch.validation import durations, integer, not_emulated, require, require_id
from amlops_emulator.batch.wire import (
    JSON,
    UNLIMITED_DURATION,
    BatchError,
    already_exists,
    iso,
    message_value,
    new_etag,
    not_found,
    rfc1123,
)

MAX_TASKS_PER_COLLECTION = 100
DEFAULT_RETENTION = "P7D"
_UNSUPPORTED = ("multiInstanceSettings", "dependsOn", "containerSettings", "applicationPackageReferences")


def routes() -> list[web.RouteDef]:
    base = "/{account}/jobs/{job}"
    task = base + "/tasks/{task}"
    return [
        web.post(base + "/tasks", create_task),
        web.post(base + "/addtaskcollection", create_task_collection),
        web.get(base + "/tasks", list_tasks, allow_head=False),
        web.get(task, get_task, allow_head=False),
        web.put(task, replace_task),
        web.delete(task, delete_task),
        web.post(task + "/terminate", terminate_task),
        web.post(task + "/reactivate", reactivate_task),
        web.get(task + "/files", list_task_files, allow_head=False),
        web.get(task + "/files/{path:.+}", download_task_file),  # HEAD: get_task_file_properties
        web.delete(task + "/files/{path:.+}", delete_task_file),
    ]


def _task(job: Job, request: web.Request) -> Task:
    task = job.tasks.get(request.match_info["task"])
    if task is None:
        raise not_found("Task")
    return task


def _require_accepting(job: Job) -> None:
    if job.state == "deleting":
        raise BatchError(409, "JobBeingDeleted", "The specified job has been marked for deletion.")
    if job.state in ("terminating", "completed"):
        raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")


def _new_task(job: Job, body: JSON, now: datetime) -> Task:
    """Validate one task body and fill the service's defaults; raises BatchError (400) when invalid."""
    require_id(body)
    require(body, "commandLine")
    for name in _UNSUPPORTED:
        if body.get(name):
            raise not_emulated(name, "...")
    integer(body, "requiredSlots", 1, 1, 256)
    constraints: JSON = {
        "maxWallClockTime": UNLIMITED_DURATION,
        "retentionTime": DEFAULT_RETENTION,
        "maxTaskRetryCount": job.max_task_retry_count,
        **(body.get("constraints") or {}),
    }
    durations(constraints, "maxWallClockTime", "retentionTime")
    max_retries = integer(constraints, "maxTaskRetryCount", 0, -1, 1_000_000)
    job.task_seq += 1
    # The service fills the defaults it lists back (Tasks_ListTasks.json, 2025-06-01): one slot, and a
    # non-admin auto-user of the task's own when the body names nobody to run as.
    own_user = {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}
    spec = {"userIdentity": own_user, "requiredSlots": 1, **body, "constraints": constraints}
    task = Task(job=job, spec=spec, seq=job.task_seq, created=now, max_retries=max_retries)
    task.last_modified = now
    return task


async def create_task(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    job, now = job_of(acct, request), svc.clock.now()
    body = await read_json(request)
    _require_accepting(job)
    task = _new_task(job, body, now)
    if task.id in job.tasks:
        raise already_exists("Task")
    job.tasks[task.id] = task
    svc.agent.enqueue(acct, job, task)
    return created(f"{account_url(request)}/{task.key}", task.etag, now)


async def create_task_collection(request: web.Request) -> web.Response:
    """addtaskcollection: ≤ 100 tasks, < 1 MB; one result per task with a lower-case status (trap 5)."""
    svc, acct = service(request), account(request)
    job, now = job_of(acct, request), svc.clock.now()
    body = await read_json(request)  # 413 RequestBodyTooLarge above 1 MB
    values = body.get("value")
    if not isinstance(values, list) or not values:
        raise BatchError(
            400,
            "MissingRequiredProperty",
            "A required property was not specified in the request body.",
            {"PropertyName": "value"},
        )
    if len(values) > MAX_TASKS_PER_COLLECTION:
        raise BatchError(
            400,
            "InvalidPropertyValue",
            "The value provided for one of the properties in the request body is invalid.",
            {"PropertyName": "value", "Reason": f"The maximum number of tasks is {MAX_TASKS_PER_COLLECTION}."},
        )
    _require_accepting(job)
    # Validation first, so that a malformed collection adds nothing (the service rejects the request as a whole).
    tasks = [_new_task(job, item if isinstance(item, dict) else {}, now) for item in values]
    url, request_id = account_url(request), request[REQUEST_ID]
    results: list[JSON] = []
    for task in tasks:
        if task.id in job.tasks:
            results.append(
                {
                    "status": "clienterror",
                    "taskId": task.id,
                    "error": {
                        "code": "TaskExists",
                        "message": {
                            "lang": "en-US",
                            "value": message_value("The specified task already exists.", request_id, now),
                        },
                    },
                }
            )
            continue
        job.tasks[task.id] = task
        svc.agent.enqueue(acct, job, task)
        results.append(
            {
                "status": "success",
                "taskId": task.id,
                "eTag": task.etag,
                "lastModified": iso(now),
                "location": f"{url}/{task.key}",
            }
        )
    return json_response({"odata.metadata": f"{url}/$metadata#taskaddresult", "value": results})


async def list_tasks(request: web.Request) -> web.Response:
    job, url = job_of(account(request), request), account_url(request)
    return page(request, list(job.tasks.values()), lambda t: t.to_wire(url), f"{url}/$metadata#tasks")


async def get_task(request: web.Request) -> web.Response:
    task = _task(job_of(account(request), request), request)
    check_preconditions(request, task.etag, task.last_modified or task.created)
    url = account_url(request)
    return entity(task.to_wire(url), f"{url}/$metadata#tasks/@Element")


async def replace_task(request: web.Request) -> web.Response:
    """PUT: only the constraints of a task can change."""
    svc = service(request)
    job = job_of(account(request), request)
    task, now = _task(job, request), svc.clock.now()
    check_preconditions(request, task.etag, task.last_modified or task.created)
    body = await read_json(request)
    constraints = {**task.spec["constraints"], **(body.get("constraints") or {})}
    durations(constraints, "maxWallClockTime", "retentionTime")
    task.max_retries = integer(constraints, "maxTaskRetryCount", 0, -1, 1_000_000)
    task.spec["constraints"] = constraints
    task.etag, task.last_modified = new_etag(), now
    return updated(f"{account_url(request)}/{task.key}", task.etag, now)


async def delete_task(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    job = job_of(acct, request)
    task = _task(job, request)
    check_preconditions(request, task.etag, task.last_modified or task.created)
    if task.state != "completed":
        svc.agent.terminate(acct, task, "The task was deleted.")
    job.remove_task(task)
    return web.Response(status=200)


async def terminate_task(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    task = _task(job_of(acct, request), request)
    check_preconditions(request, task.etag, task.last_modified or task.created)
    if task.state != "completed":
        svc.agent.terminate(acct, task, "The task was terminated by user request.")
    return web.Response(status=204)


async def reactivate_task(request: web.Request) -> web.Response:
    """Only a task that completed with a failure can be reactivated (its retry count starts again)."""
    svc, acct = service(request), account(request)
    job = job_of(acct, request)
    task = _task(job, request)
    check_preconditions(request, task.etag, task.last_modified or task.created)
    _require_accepting(job)
    if task.state != "completed" or task.result != "failure":
        # The exact code of this 409 is not verified against the service.
        raise BatchError(409, "TaskNotFailed", "Only a task that completed with a failure can be reactivated.")
    svc.agent.reactivate(acct, job, task)
    return web.Response(status=204)


# ------------------------------------------------------------------------------------------- files


def _task_dir(request: web.Request) -> tuple[Task, Path]:
    task = _task(job_of(account(request), request), request)
    if task.directory is None or not task.directory.is_dir():
        raise BatchError(404, "FileNotFound", "The specified file does not exist.")
    return task, task.directory


def _file(request: web.Request) -> tuple[Task, Path]:
    task, root = _task_dir(request)
    target = (root / request.match_info["path"]).resolve()
    if not target.is_relative_to(root.resolve()) or not target.exists():
        raise BatchError(404, "FileNotFound", "The specified file does not exist.")
    return task, target


def _file_url(request: web.Request, task: Task, relative: str) -> str:
    return f"{account_url(request)}/{task.key}/files/{relative}"


async def list_task_files(request: web.Request) -> web.Response:
    task, root = _task_dir(request)
    recursive = request.rel_url.query.get("recursive", "false").lower() == "true"
    entries = sorted(root.rglob("*") if recursive else root.iterdir())

    def render(path: Path) -> JSON:
        relative = path.relative_to(root).as_posix()
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        return {
            "name": relative,
            "url": _file_url(request, task, relative),
            "isDirectory": path.is_dir(),
            "properties": {
                "creationTime": iso(modified),
                "lastModified": iso(modified),
                "contentLength": 0 if path.is_dir() else stat.st_size,
                "contentType": "application/octet-stream",
                "fileMode": oct(stat.st_mode & 0o777777)[2:],
            },
        }

    return page(request, entries, render, f"{account_url(request)}/$metadata#files")


async def download_task_file(request: web.Request) -> web.StreamResponse:
    task, path = _file(request)
    if path.is_dir():
        raise BatchError(400, "InvalidUri", "The specified path is a directory.")
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    headers = {
        "ocp-creation-time": rfc1123(modified),
        "ocp-batch-file-isdirectory": "false",
        "ocp-batch-file-url": _file_url(request, task, request.match_info["path"]),
        "ocp-batch-file-mode": oct(stat.st_mode & 0o777777)[2:],
        "Last-Modified": rfc1123(modified),
        "Content-Type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
    }
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Length": str(stat.st_size)})
    return web.Response(body=path.read_bytes(), headers=headers)


async def delete_task_file(request: web.Request) -> web.Response:
    _, path = _file(request)
    if path.is_dir():
        if request.rel_url.query.get("recursive", "false").lower() != "true":
            raise BatchError(409, "DirectoryNotEmpty", "The directory is not empty.")
        shutil.rmtree(path)
    else:
        path.unlink()
    return web.Response(status=200)
