"""Job semantics every job kind shares, pure: phase → conditions, sticky terminal states, the active deadline,
the TTL after finished, suspend.

A job kind's client decides its phase from what Azure says (``paralleljob_map.decide`` for ParallelJob) and
builds its :class:`~amlops.reconcile.external.Observation` here, so every job has the same conditions and
reasons: ``Running``/``Suspended`` while it lives, ``Complete`` or ``Failed`` once finished, which never change
again (as batch/v1 Job's). The fields read are ``api/job.py``'s: ``suspend``, ``activeDeadlineSeconds``,
``ttlSecondsAfterFinished``, ``status.phase``, ``status.startTime``, ``status.completionTime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from amlops.api.job import JobPhase
from amlops.reconcile.external import Observation
from amlops.status import COMPLETE, FAILED, RUNNING, SUSPENDED, ConditionUpdate, find, parse_time

PENDING: Final[JobPhase] = "Pending"
TERMINAL: frozenset[str] = frozenset({"Complete", "Failed"})

REASON_RUNNING = "Running"
REASON_SUSPENDED = "Suspended"
REASON_SUCCEEDED = "Succeeded"
REASON_DEADLINE = "DeadlineExceeded"
SUSPENDED_MESSAGE = "Suspended by spec.suspend"
# status field: the finished job holds no compute any more (what amlops started for it in Azure is released).
RELEASED = "resourcesReleased"


def running(reason: str, message: str, at_provider: Mapping[str, Any], owner: str) -> Observation:
    """Running: converging on its own (the engine looks again soon), Running=True, Suspended=False."""
    return Observation(
        True,
        transitional=True,
        transitional_reason=reason,
        message=message,
        owner=owner,
        at_provider=at_provider,
        conditions=(ConditionUpdate(RUNNING, "True", reason, message), ConditionUpdate(SUSPENDED, "False", reason, "")),
    )


def suspended(at_provider: Mapping[str, Any], owner: str, message: str = SUSPENDED_MESSAGE) -> Observation:
    """Suspended: settled but not Ready (nothing to converge on until spec.suspend is false again)."""
    reason = REASON_SUSPENDED
    return Observation(
        True,
        ready=False,
        reason=reason,
        message=message,
        owner=owner,
        at_provider=at_provider,
        conditions=(ConditionUpdate(RUNNING, "False", reason, ""), ConditionUpdate(SUSPENDED, "True", reason, message)),
    )


def complete(message: str, at_provider: Mapping[str, Any], owner: str, reason: str = REASON_SUCCEEDED) -> Observation:
    """Complete: Ready, Complete=True, Running=False."""
    return Observation(
        True,
        message=message,
        owner=owner,
        at_provider=at_provider,
        conditions=(ConditionUpdate(COMPLETE, "True", reason, message), ConditionUpdate(RUNNING, "False", reason, "")),
    )


def failed(reason: str, message: str, at_provider: Mapping[str, Any], owner: str) -> Observation:
    """Failed: Stalled with the job's reason, Failed=True, Running=False."""
    return Observation(
        True,
        failure=(reason, message),
        owner=owner,
        at_provider=at_provider,
        conditions=(ConditionUpdate(FAILED, "True", reason, message), ConditionUpdate(RUNNING, "False", reason, "")),
    )


def settled(phase: str, reason: str, message: str, at_provider: Mapping[str, Any], owner: str) -> Observation:
    """The observation of a job in ``phase`` with nothing for ``update`` to do (Pending counts as Running)."""
    if phase in TERMINAL:
        if phase == "Complete":
            return complete(message, at_provider, owner, reason)
        return failed(reason, message, at_provider, owner)
    if phase == "Suspended":
        return suspended(at_provider, owner, message)
    return running(reason, message, at_provider, owner)


def finished(status: Mapping[str, Any], owner: str, at_provider: Mapping[str, Any]) -> Observation:
    """Complete or Failed, as the status says (reason and message from its condition)."""
    phase = str(status.get("phase"))
    condition = find(status.get("conditions") or [], COMPLETE if phase == "Complete" else FAILED) or {}
    reason, message = str(condition.get("reason") or phase), str(condition.get("message") or "")
    return settled(phase, reason, message, at_provider, owner)


def sticky(status: Mapping[str, Any], owner: str) -> Observation | None:
    """A finished job's observation from its own status, once its compute is released: Complete and Failed never
    change, and cost no call. Until the status records the release, the client looks at Azure (compute left by
    a crash between ending the job and releasing it, or by a job ended from outside, keeps billing)."""
    if status.get("phase") not in TERMINAL or not status.get(RELEASED):
        return None
    return finished(status, owner, {})


def unreleased(status: Mapping[str, Any]) -> bool:
    """Finished, and the release of its compute is not recorded yet."""
    return status.get("phase") in TERMINAL and not status.get(RELEASED)


def releasing(status: Mapping[str, Any], owner: str, left: bool, what: str) -> Observation:
    """A job already finished: while ``what`` it holds is left, its release is the update to carry out (not up
    to date, not Stalled yet); then Complete or Failed as before, with the release recorded."""
    if left:
        return Observation(True, resource_up_to_date=False, owner=owner, at_provider={RELEASED: False},
                           diff=f"deleting {what}")  # fmt: skip
    return finished(status, owner, {RELEASED: True})


def deadline_exceeded(deadline: int | None, elapsed: float | None) -> tuple[str, str] | None:
    """(reason, message) once a job has run longer than ``activeDeadlineSeconds`` (counted from startTime)."""
    if deadline is None or elapsed is None or elapsed <= deadline:
        return None
    return REASON_DEADLINE, f"the job ran longer than activeDeadlineSeconds ({deadline})"


def ttl_remaining(ttl_seconds: int | None, status: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds until a finished job with ``ttlSecondsAfterFinished`` is deleted (≤ 0: now); None when it is not
    finished or has no TTL. Counted from ``completionTime``, as batch/v1 Job counts from its finish."""
    finished_at = parse_time(status.get("completionTime"))
    if ttl_seconds is None or status.get("phase") not in TERMINAL or finished_at is None:
        return None
    return ttl_seconds - (now - finished_at).total_seconds()


def seconds_since(stamp: Any, now: datetime) -> float | None:
    """Seconds from an RFC 3339 ``stamp`` (e.g. startTime) to ``now``, never negative; None without a stamp."""
    started = parse_time(stamp)
    return None if started is None else max(0.0, (now - started).total_seconds())


def attempt(status: Mapping[str, Any]) -> int:
    """``status.attempt``: how many times a job submitted to Azure ML was submitted anew (each resume adds one)."""
    return int(status.get("attempt") or 0)
