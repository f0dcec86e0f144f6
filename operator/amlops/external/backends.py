"""Which backend a ParallelJob's status names, and which ParallelJobs therefore use a compute: what a compute's
deletion waits for. Pure, and free of the clients' imports, so both compute kinds can ask."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

Backend = Literal["AzureML", "Batch"]

AZURE_ML: Backend = "AzureML"
BATCH: Backend = "Batch"


def recorded(status: Mapping[str, Any]) -> Backend | None:
    """The backend the status names: ``backend``, or for a job from before it was recorded, its Batch job id."""
    backend = status.get("backend")
    if backend in (AZURE_ML, BATCH):
        return AZURE_ML if backend == AZURE_ML else BATCH
    if status.get("jobId"):
        return BATCH
    if status.get("azureJobName"):
        return AZURE_ML
    return None


def parallel_jobs_on(jobs: Iterable[Mapping[str, Any]], compute: str, backend: Backend) -> tuple[str, ...]:
    """The ParallelJobs (objects of one namespace) whose work runs on the compute object ``compute`` of kind
    ``backend``: an AmlCompute waits for those Azure ML runs, a BatchCompute for the rest that name it (a job
    whose backend is not recorded yet may still become a Batch job: its cleanup needs the account)."""
    names = [
        str(job["metadata"]["name"])
        for job in jobs
        if (job.get("spec") or {}).get("compute", {}).get("name") == compute
        and ((recorded(job.get("status") or {}) == AZURE_ML) == (backend == AZURE_ML))
    ]
    return tuple(f"ParallelJob {name}" for name in sorted(names))


def command_jobs_on(jobs: Iterable[Mapping[str, Any]], compute: str) -> tuple[str, ...]:
    """The CommandJobs (objects of one namespace) that submitted an Azure ML job to the AmlCompute ``compute``:
    each cancels its job with the AmlCompute's credentials before the cluster goes."""
    names = [
        str(job["metadata"]["name"])
        for job in jobs
        if (job.get("spec") or {}).get("compute") == compute and (job.get("status") or {}).get("azureJobName")
    ]
    return tuple(f"CommandJob {name}" for name in sorted(names))
