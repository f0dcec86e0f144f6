"""What every job kind shares: the batch/v1 Job-like controls of its spec and the phase of its status.

A job kind's spec inherits :class:`JobControls` and its status :class:`JobStatus`, so every job kind has the
same fields with the same ``kubectl explain`` text; ``reconcile/job.py`` gives them the same meaning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from amlops.api.common import ApiModel, StatusBase
from amlops.api.kind import CustomResource

# Counts and seconds as Azure takes them (32-bit); the apiserver itself stops at 64 bits.
INT32_MAX = 2**31 - 1

JobPhase = Literal["Pending", "Running", "Suspended", "Complete", "Failed"]


class JobControls(ApiModel):
    """``suspend``, ``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished``, as batch/v1 Job has them."""

    suspend: bool = Field(
        default=False,
        description="Stop the job: nothing new starts and what runs is stopped; false resumes where it stopped.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Seconds from startTime after which the job is terminated and Failed (DeadlineExceeded). It "
        "also bounds the lifetime of the SAS tokens the job's nodes use (plus 30 minutes; absent: 6 hours from "
        "when their work is handed to Azure).",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="Seconds after completionTime (Complete or Failed) when the job deletes itself, as a batch/v1 "
        "Job does; what amlops created for it in Azure goes with it, its outputs stay. Absent, or with "
        "deletionProtection: kept.",
    )


class JobStatus(StatusBase):
    """A job's phase and the times ``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished`` count from."""

    phase: JobPhase | None = Field(
        default=None, description="Pending, Running, Suspended, Complete, Failed (the last two never change)."
    )
    start_time: datetime | None = None
    completion_time: datetime | None = None


def is_job(kind: type[CustomResource]) -> bool:
    """A job kind: it runs to an end (Complete or Failed) and may delete itself then (ttlSecondsAfterFinished)."""
    return issubclass(kind.spec_model, JobControls)
