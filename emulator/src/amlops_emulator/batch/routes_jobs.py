"""Job operations and task counts (cases B5, B9, B11, B13)."""

from __future__ import annotations

import time

from aiohttp import web

from amlops_emulator.batch.model import Account, Job, job_defaults
from amlops_emulator.batch.responses import (
    accepted,
    account,
    account_url,
    check_preconditions,
    created,
    deleted,
    entity,
    json_response,
    page,
    read_json,
    service,
    updated,
)
from amlops_emulator.batch.validation import durations, integer, not_emulated, require, require_id
from amlops_emulator.batch.wire import JSON, BatchError, already_exists, invalid_property, not_found

ON_ALL_TASKS_COMPLETE = ("noaction", "terminatejob")
ON_TASK_FAILURE = ("noaction", "performexitoptionsjobaction")


def routes() -> list[web.RouteDef]:
    base = "/{account}/jobs"
    return [
        web.post(base, create_job),
        web.get(base, list_jobs, allow_head=False),
        web.get(base + "/{job}", get_job, allow_head=False),
        web.patch(base + "/{job}", update_job),
        web.put(base + "/{job}", replace_job),
        web.delete(base + "/{job}", delete_job),
        web.post(base + "/{job}/terminate", terminate_job),
        web.post(base + "/{job}/disable", disable_job),
        web.post(base + "/{job}/enable", enable_job),
        web.get(base + "/{job}/taskcounts", get_job_task_counts, allow_head=False),
    ]


def job_of(acct: Account, request: web.Request) -> Job:
    job = acct.jobs.get(request.match_info["job"])
    if job is None:
        raise not_found("Job")
    return job


def _job_url(request: web.Request, job: Job) -> str:
    return f"{account_url(request)}/jobs/{job.id}"


def _validate(body: JSON) -> None:
    pool_info = require(body, "poolInfo")
    if not isinstance(pool_info, dict) or not pool_info.get("poolId"):
        if isinstance(pool_info, dict) and pool_info.get("autoPoolSpecification"):
            raise not_emulated("poolInfo.autoPoolSpecification", "...")
        raise BatchError(
            400,
            "MissingRequiredProperty",
            "A required property was not specified in the request body.",
            {"PropertyName": "poolInfo.poolId"},
        )
    _validate_mutable(body)


def _validate_mutable(body: JSON) -> None:
    if "onAllTasksComplete" in body and body["onAllTasksComplete"] not in ON_ALL_TASKS_COMPLETE:
        raise not_emulated("onAllTasksComplete", body["onAllTasksComplete"])
    if "onTaskFailure" in body and body["onTaskFailure"] not in ON_TASK_FAILURE:
        raise not_emulated("onTaskFailure", body["onTaskFailure"])
    integer(body, "priority", 0, -1000, 1000)
    _max_parallel_tasks(body)
    constraints = body.get("constraints") or {}
    durations(constraints, "maxWallClockTime")
    integer(constraints, "maxTaskRetryCount", 0, -1, 1_000_000)


def _max_parallel_tasks(body: JSON) -> None:
    """``maxParallelTasks``: -1 (no limit, the default) or more than 0 (azure-batch 15.1.0's BatchJobCreateOptions
    and BatchJobUpdateOptions: "must be -1 or greater than 0 if specified"; REST api-version 2020-09-01.12.0+)."""
    value = integer(body, "maxParallelTasks", -1, -1, 2**31 - 1)
    if value == 0:
        raise invalid_property("maxParallelTasks", value, "The value must be -1 or greater than 0.")


def _require_writable(job: Job) -> None:
    if job.state == "deleting":
        raise BatchError(409, "JobBeingDeleted", "The specified job has been marked for deletion.")
    if job.state in ("terminating", "completed"):
        raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")


async def create_job(request: web.Request) -> web.Response:
    acct, now = account(request), service(request).clock.now()
    body = await read_json(request)
    job_id = require_id(body)
    _validate(body)
    for unsupported in ("jobManagerTask", "jobPreparationTask", "jobReleaseTask"):
        if unsupported in body:
            raise not_emulated(unsupported, "...")
    if job_id in acct.jobs:
        raise already_exists("Job")
    job = Job(spec=job_defaults(body), created=now, started_monotonic=time.monotonic())
    job.touch(now)
    acct.jobs[job_id] = job
    return created(_job_url(request, job), job.etag, now)


async def list_jobs(request: web.Request) -> web.Response:
    acct, url = account(request), account_url(request)
    return page(request, list(acct.jobs.values()), lambda j: j.to_wire(f"{url}/jobs/{j.id}"), f"{url}/$metadata#jobs")


async def get_job(request: web.Request) -> web.Response:
    job = job_of(account(request), request)
    check_preconditions(request, job.etag, job.last_modified or job.created)
    return entity(job.to_wire(_job_url(request, job)), f"{account_url(request)}/$metadata#jobs/@Element")


# What PATCH and PUT may change on a job (the rest is fixed at creation).
_MUTABLE = (
    "priority",
    "maxParallelTasks",
    "allowTaskPreemption",
    "onAllTasksComplete",
    "constraints",
    "poolInfo",
    "metadata",
)


async def update_job(request: web.Request) -> web.Response:
    """PATCH: the properties present replace the current ones."""
    return await _write_job(request, replace=False)


async def replace_job(request: web.Request) -> web.Response:
    """PUT: the mutable properties are replaced; those absent go back to their defaults."""
    return await _write_job(request, replace=True)


async def _write_job(request: web.Request, replace: bool) -> web.Response:
    svc, acct = service(request), account(request)
    job, now = job_of(acct, request), svc.clock.now()
    check_preconditions(request, job.etag, job.last_modified or job.created)
    body = await read_json(request)
    _validate_mutable(body)
    _require_writable(job)
    if replace:
        defaults = job_defaults({"poolInfo": job.spec["poolInfo"]})
        changes = {k: body.get(k, defaults.get(k)) for k in _MUTABLE}
        changes = {k: v for k, v in changes.items() if v is not None}
        for name in _MUTABLE:
            job.spec.pop(name, None)
    else:
        changes = {k: body[k] for k in _MUTABLE if k in body}
    if "constraints" in changes:
        changes["constraints"] = job_defaults({"constraints": changes["constraints"]})["constraints"]
    job.spec.update(changes)
    job.touch(now)
    # Setting terminatejob after the last task was added is the documented way to end a job on completion.
    svc.agent.check_job(acct, job)
    return updated(_job_url(request, job), job.etag, now)


async def delete_job(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    job = job_of(acct, request)
    check_preconditions(request, job.etag, job.last_modified or job.created)
    if job.state == "deleting":
        raise BatchError(409, "JobBeingDeleted", "The specified job has been marked for deletion.")
    svc.agent.delete_job(acct, job)
    return deleted()


async def terminate_job(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    job, now = job_of(acct, request), svc.clock.now()
    check_preconditions(request, job.etag, job.last_modified or job.created)
    body = await read_json(request)
    _require_writable(job)
    svc.agent.terminate_job(acct, job, str(body.get("terminateReason") or "UserTerminate"))
    return accepted(_job_url(request, job) + "/terminate", job.etag, now)


async def disable_job(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    job, now = job_of(acct, request), svc.clock.now()
    check_preconditions(request, job.etag, job.last_modified or job.created)
    body = await read_json(request)
    option = require(body, "disableTasks")
    if option not in ("requeue", "terminate", "wait"):
        raise not_emulated("disableTasks", option)
    if job.state != "active":
        raise BatchError(409, "InvalidJobState", f"The job is in state {job.state}, not active.")
    svc.agent.disable_job(acct, job, str(option))
    return accepted(_job_url(request, job) + "/disable", job.etag, now)


async def enable_job(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    job, now = job_of(acct, request), svc.clock.now()
    check_preconditions(request, job.etag, job.last_modified or job.created)
    if job.state not in ("disabled", "disabling"):
        raise BatchError(409, "InvalidJobState", f"The job is in state {job.state}, not disabled.")
    svc.agent.enable_job(acct, job)
    return accepted(_job_url(request, job) + "/enable", job.etag, now)


async def get_job_task_counts(request: web.Request) -> web.Response:
    """``running`` counts running and preparing tasks; succeeded/failed come from ``executionInfo.result``."""
    job = job_of(account(request), request)
    counts = dict.fromkeys(("active", "running", "completed", "succeeded", "failed"), 0)
    slots = dict(counts)
    for task in job.tasks.values():
        states = ["running" if task.state == "preparing" else task.state]
        if task.result == "success":
            states.append("succeeded")
        elif task.result == "failure":
            states.append("failed")
        for state in states:
            counts[state] += 1
            slots[state] += task.required_slots
    return json_response(
        {
            "odata.metadata": f"{account_url(request)}/$metadata#taskcounts/@Element",
            "taskCounts": counts,
            "taskSlotCounts": slots,
        }
    )
