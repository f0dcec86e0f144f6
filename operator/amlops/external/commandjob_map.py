"""What a CommandJob does next, from what Azure ML says of its job and what the spec asks, pure.

Azure ML's statuses (azure-ai-ml's ``JobStatus``): NotStarted, Starting, Provisioning, Preparing, Queued (waiting
for nodes), Running, Finalizing (collecting outputs), CancelRequested, and the terminal Completed, Failed,
Canceled, NotResponding. The object's ``phase`` is the Kubernetes job vocabulary (``api/job.py``); Azure's own word
is kept in ``status.azureStatus``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from amlops.api.job import JobPhase
from amlops.reconcile import job

# Azure ML statuses of a job whose processes run (or collect their outputs).
RUNNING_STATUSES = frozenset({"Running", "Finalizing"})
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})
CANCELING = "CancelRequested"
REASON_CANCELED = "Canceled"
REASON_CANCELING = "Canceling"
REASON_SUBMITTED = "Submitted"

Action = Literal["submit", "resume", "cancel", "none"]


@dataclass(frozen=True)
class Facts:
    """``azure_status``: the status of the job of the current attempt's name, None when Azure ML has none.
    ``phase``: the object's last phase (Suspended: amlops canceled the attempt to suspend it)."""

    azure_status: str | None
    phase: str | None
    suspend: bool
    deadline: int | None
    elapsed: float | None


@dataclass(frozen=True)
class Decision:
    """The object's phase now, the reason and message of its conditions, and what ``update`` (or ``create``) does:
    ``submit`` the current attempt, ``resume`` with the next one, ``cancel`` the running one, or nothing."""

    phase: JobPhase
    reason: str
    message: str
    action: Action = "none"


def decide(facts: Facts) -> Decision:
    """The one decision of a pass (terminal Azure statuses are read by :func:`finished`)."""
    status = facts.azure_status
    if status is None:
        if facts.suspend:
            return Decision("Suspended", job.REASON_SUSPENDED, job.SUSPENDED_MESSAGE)
        return Decision(job.PENDING, REASON_SUBMITTED, "submitting the job to Azure ML", "submit")
    if status in TERMINAL_STATUSES:
        if status == "Canceled" and facts.suspend:
            return Decision("Suspended", job.REASON_SUSPENDED, job.SUSPENDED_MESSAGE)
        if status == "Canceled" and facts.phase == "Suspended":
            return Decision(job.PENDING, job.REASON_RUNNING, "resumed: submitting the job again", "resume")
        raise ValueError(f"{status} is read by finished()")
    # Suspended by amlops: the attempt is canceled before anything else, even when suspend was lifted before the
    # cancel showed (a resume submits the next attempt only once this one has ended).
    stopping = facts.suspend or facts.phase == "Suspended"
    if status == CANCELING:
        phase: JobPhase = "Suspended" if stopping else "Running"
        return Decision(phase, REASON_CANCELING, "Azure ML is canceling the job")
    if stopping:
        return Decision("Suspended", job.REASON_SUSPENDED, "suspending: canceling the Azure ML job", "cancel")
    exceeded = job.deadline_exceeded(facts.deadline, facts.elapsed)
    if exceeded is not None:
        return Decision("Running", exceeded[0], f"{exceeded[1]}: canceling the Azure ML job", "cancel")
    if status in RUNNING_STATUSES:
        return Decision("Running", job.REASON_RUNNING, f"Azure ML job {status}")
    return Decision(job.PENDING, status, f"Azure ML job {status}")


def finished(azure_status: str, error: tuple[str, str] | None, deadline: int | None, elapsed: float | None) -> Decision:
    """A job Azure ML has ended: Complete, or Failed with Azure's error code (run history) as the reason. A job
    canceled by amlops for its deadline fails DeadlineExceeded; one canceled from outside, Canceled."""
    if azure_status == "Completed":
        return Decision("Complete", job.REASON_SUCCEEDED, "Azure ML job Completed")
    exceeded = job.deadline_exceeded(deadline, elapsed)
    if azure_status == "Canceled" and exceeded is not None:
        return Decision("Failed", *exceeded)
    if error is not None:
        return Decision("Failed", error[0], error[1])
    if azure_status == "Canceled":
        return Decision("Failed", REASON_CANCELED, "the Azure ML job was canceled outside amlops")
    return Decision("Failed", azure_status, f"Azure ML job {azure_status}")
