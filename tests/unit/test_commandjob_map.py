"""What a CommandJob does next (``commandjob_map``): a table of Azure ML's job statuses (azure-ai-ml's ``JobStatus``)
and the spec's controls, each case a reason."""

from __future__ import annotations

import pytest

from amlops.external import commandjob_map as m

pytestmark = pytest.mark.unit


def facts(
    azure_status: str | None,
    phase: str | None = "Running",
    suspend: bool = False,
    deadline: int | None = None,
    elapsed: float | None = 10.0,
) -> m.Facts:
    return m.Facts(azure_status, phase, suspend, deadline, elapsed)


@pytest.mark.parametrize(
    ("given", "phase", "reason", "action", "why"),
    [
        (facts(None, phase=None), "Pending", "Submitted", "submit", "no job of this attempt yet: submit it"),
        (facts(None, phase=None, suspend=True), "Suspended", "Suspended", "none", "created suspended: nothing runs"),
        (facts("NotStarted"), "Pending", "NotStarted", "none", "accepted, not started"),
        (facts("Queued"), "Pending", "Queued", "none", "waiting for the AmlCompute's nodes"),
        (facts("Preparing"), "Pending", "Preparing", "none", "nodes being prepared"),
        (facts("Running"), "Running", "Running", "none", "the script runs"),
        (facts("Finalizing"), "Running", "Running", "none", "outputs being collected: still the job's run"),
        (facts("Running", suspend=True), "Suspended", "Suspended", "cancel", "suspend: cancel the running attempt"),
        (facts("Queued", suspend=True), "Suspended", "Suspended", "cancel", "suspend while queued: cancel too"),
        (facts("CancelRequested", suspend=True), "Suspended", "Canceling", "none", "already canceling: no second"),
        (facts("CancelRequested"), "Running", "Canceling", "none", "canceled from outside: wait for Canceled"),
        (
            facts("CancelRequested", phase="Suspended"),
            "Suspended",
            "Canceling",
            "none",
            "suspend lifted while amlops' cancel runs: still Suspended, so Canceled resumes rather than fails",
        ),
        (
            facts("Running", phase="Suspended"),
            "Suspended",
            "Suspended",
            "cancel",
            "suspend lifted before the cancel shows (a listing from before it): cancel again, resume after",
        ),
        (facts("Canceled", suspend=True), "Suspended", "Suspended", "none", "canceled for suspend: stays so"),
        (facts("Canceled", phase="Suspended"), "Pending", "Running", "resume", "suspend lifted: the next attempt"),
        (
            facts("Running", deadline=5, elapsed=6.0),
            "Running",
            "DeadlineExceeded",
            "cancel",
            "past activeDeadlineSeconds: cancel, then Failed",
        ),
        (facts("Running", deadline=5, elapsed=5.0), "Running", "Running", "none", "at the deadline, not past it"),
        (
            facts("Running", suspend=True, deadline=5, elapsed=60.0),
            "Suspended",
            "Suspended",
            "cancel",
            "suspend wins: a suspended job's deadline does not run (batch/v1 Job)",
        ),
    ],
)
def test_decide(given: m.Facts, phase: str, reason: str, action: str, why: str) -> None:
    decision = m.decide(given)
    assert (decision.phase, decision.reason, decision.action) == (phase, reason, action), why


@pytest.mark.parametrize("status", ["Completed", "Failed", "NotResponding"])
def test_ended_statuses_are_for_finished(status: str) -> None:
    """An ended attempt that no suspend explains is read by finished(), never decided as a running one."""
    with pytest.raises(ValueError, match="finished"):
        m.decide(facts(status))


@pytest.mark.parametrize(
    ("status", "error", "deadline", "elapsed", "phase", "reason", "why"),
    [
        ("Completed", None, None, None, "Complete", "Succeeded", "the script exited 0 on every process"),
        ("Failed", ("UserError", "Execution failed."), None, None, "Failed", "UserError", "Azure's code is the reason"),
        ("Failed", None, None, None, "Failed", "Failed", "no error in run history: Azure's status says it"),
        (
            "Canceled",
            ("JobTimeout", "ran longer than limits.timeout"),
            None,
            None,
            "Failed",
            "JobTimeout",
            "limits.timeout: Azure ML cancels, and says why",
        ),
        ("Canceled", None, 5, 9.0, "Failed", "DeadlineExceeded", "amlops canceled it for activeDeadlineSeconds"),
        ("Canceled", None, None, None, "Failed", "Canceled", "canceled outside amlops: the job did not complete"),
        ("NotResponding", None, None, None, "Failed", "NotResponding", "Azure ML lost the job"),
    ],
)
def test_finished(
    status: str,
    error: tuple[str, str] | None,
    deadline: int | None,
    elapsed: float | None,
    phase: str,
    reason: str,
    why: str,
) -> None:
    decision = m.finished(status, error, deadline, elapsed)
    assert (decision.phase, decision.reason) == (phase, reason), why
