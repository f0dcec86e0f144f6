"""Job semantics every job kind shares (reconcile/job.py and api/job.py), pure: each case says why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from amlops.api import KINDS, CustomResource
from amlops.api.crdgen import crd
from amlops.api.job import JobControls, is_job
from amlops.api.schema import structural_schema
from amlops.reconcile import job
from amlops.reconcile.external import Observation

pytestmark = pytest.mark.unit

OWNER = "ns.job.uid"
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def conditions(obs: Observation) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in obs.conditions}


@dataclass(frozen=True)
class PhaseCase:
    reason: str
    phase: str
    conditions: dict[str, tuple[str, str]]
    ready: bool = True
    transitional: bool = False
    failure: tuple[str, str] | None = None


PHASES = [
    PhaseCase("Running: converging on its own, so the engine looks again soon; not suspended", "Running",
              {"Running": ("True", "Running"), "Suspended": ("False", "Running")}, transitional=True),
    PhaseCase("Pending (created, nothing running yet) reads as Running: there is no Pending condition", "Pending",
              {"Running": ("True", "Running"), "Suspended": ("False", "Running")}, transitional=True),
    PhaseCase("Suspended: settled but not Ready, and nothing runs", "Suspended",
              {"Running": ("False", "Suspended"), "Suspended": ("True", "Suspended")}, ready=False),
    PhaseCase("Complete: Ready, no longer running", "Complete",
              {"Complete": ("True", "Succeeded"), "Running": ("False", "Succeeded")}),
    PhaseCase("Failed: Stalled with the job's own reason, no longer running", "Failed",
              {"Failed": ("True", "DeadlineExceeded"), "Running": ("False", "DeadlineExceeded")},
              failure=("DeadlineExceeded", "too long")),
]  # fmt: skip
REASONS = {"Running": "Running", "Pending": "Running", "Suspended": "Suspended", "Complete": "Succeeded",
           "Failed": "DeadlineExceeded"}  # fmt: skip


@pytest.mark.parametrize("case", PHASES, ids=lambda c: c.phase)
def test_each_phase_has_its_conditions(case: PhaseCase) -> None:
    obs = job.settled(case.phase, REASONS[case.phase], "too long", {"phase": case.phase}, OWNER)
    assert conditions(obs) == case.conditions, case.reason
    assert obs.ready is case.ready, case.reason
    assert obs.transitional is case.transitional, case.reason
    assert obs.failure == case.failure, case.reason
    assert obs.resource_up_to_date, case.reason  # nothing for update() to do: a phase is not an action
    assert obs.owner == OWNER, case.reason


FAILED = {
    "phase": "Failed",
    "conditions": [{"type": "Failed", "status": "True", "reason": "ErrorThresholdExceeded", "message": "3 failed"}],
}
COMPLETE = {"phase": "Complete", "conditions": [{"type": "Complete", "status": "True", "reason": "Reused"}]}


@dataclass(frozen=True)
class StickyCase:
    reason: str
    status: dict[str, Any]
    sticky: bool
    unreleased: bool
    failure: tuple[str, str] | None = None
    complete_reason: str | None = None


STICKY = [
    StickyCase("Failed and released: answered from the status, with its reason and message",
               {**FAILED, job.RELEASED: True}, True, False, failure=("ErrorThresholdExceeded", "3 failed")),
    StickyCase("Complete and released: Complete with the condition's own reason",
               {**COMPLETE, job.RELEASED: True}, True, False, complete_reason="Reused"),
    StickyCase("Complete without a condition (an old status): the phase is the reason",
               {"phase": "Complete", job.RELEASED: True}, True, False, complete_reason="Complete"),
    StickyCase("Finished, release not recorded (a crash between ending and releasing): Azure is looked at",
               {**FAILED, job.RELEASED: False}, False, True),
    StickyCase("Finished, a status from before the field existed: looked at too", COMPLETE, False, True),
    StickyCase("Running: never sticky, whatever the release field says", {"phase": "Running", job.RELEASED: True},
               False, False),
    StickyCase("Suspended: may resume, never sticky", {"phase": "Suspended"}, False, False),
    StickyCase("No status yet", {}, False, False),
]  # fmt: skip


@pytest.mark.parametrize("case", STICKY, ids=lambda c: c.reason[:40])
def test_terminal_states_are_sticky_once_released(case: StickyCase) -> None:
    obs = job.sticky(case.status, OWNER)
    assert (obs is not None) is case.sticky, case.reason
    assert job.unreleased(case.status) is case.unreleased, case.reason
    if obs is not None:
        assert obs.at_provider == {}, case.reason  # the stored status stays as it is
        assert obs.failure == case.failure, case.reason
        if case.complete_reason is not None:
            assert conditions(obs)["Complete"] == ("True", case.complete_reason), case.reason


def test_releasing_is_an_update_until_nothing_is_left() -> None:
    pending = job.releasing(FAILED, OWNER, left=True, what="the job's pool")
    assert not pending.resource_up_to_date, "the engine calls update(), which releases it"
    assert pending.failure is None, "not Stalled before the compute is released"
    assert pending.at_provider == {job.RELEASED: False}
    assert pending.diff == "deleting the job's pool"
    done = job.releasing(FAILED, OWNER, left=False, what="the job's pool")
    assert done.failure == ("ErrorThresholdExceeded", "3 failed")
    assert done.at_provider == {job.RELEASED: True}
    assert job.sticky({**FAILED, **done.at_provider}, OWNER) is not None, "the next pass costs no call"


@pytest.mark.parametrize(
    ("reason", "deadline", "elapsed", "exceeded"),
    [
        ("No activeDeadlineSeconds: never", None, 10**9, False),
        ("Not started (no startTime): the clock has not begun", 60, None, False),
        ("Before the deadline", 60, 59.5, False),
        ("Exactly at the deadline: not yet longer than it", 60, 60.0, False),
        ("Past the deadline: Failed with DeadlineExceeded", 60, 60.5, True),
    ],
)
def test_active_deadline(reason: str, deadline: int | None, elapsed: float | None, exceeded: bool) -> None:
    got = job.deadline_exceeded(deadline, elapsed)
    assert (got is not None) is exceeded, reason
    if got is not None:
        assert got[0] == job.REASON_DEADLINE, reason
        assert str(deadline) in got[1], reason


@pytest.mark.parametrize(
    ("reason", "ttl", "status", "expected"),
    [
        ("Complete 30 s ago, TTL 60: 30 s left", 60, {"phase": "Complete", "completionTime": "2026-11-24T11:59:30Z"},
         30.0),
        ("Failed counts too, and a passed TTL is negative: delete now", 60,
         {"phase": "Failed", "completionTime": "2026-11-24T11:58:00Z"}, -60.0),
        ("TTL 0: deleted as soon as it finishes", 0, {"phase": "Complete", "completionTime": "2026-11-24T12:00:00Z"},
         0.0),
        ("An offset instead of Z", 60, {"phase": "Complete", "completionTime": "2026-11-24T12:59:30+01:00"}, 30.0),
        ("No TTL: kept", None, {"phase": "Complete", "completionTime": "2026-11-24T11:00:00Z"}, None),
        ("Not finished: the TTL has not started", 60, {"phase": "Running", "completionTime": "2026-11-24T11:00:00Z"},
         None),
        ("Suspended is not finished", 60, {"phase": "Suspended", "completionTime": "2026-11-24T11:00:00Z"}, None),
        ("Finished without completionTime: nothing to count from", 60, {"phase": "Complete"}, None),
        ("An unreadable completionTime: nothing to count from", 60,
         {"phase": "Complete", "completionTime": "yesterday"}, None),
    ],
)  # fmt: skip
def test_ttl_after_finished(reason: str, ttl: int | None, status: dict[str, Any], expected: float | None) -> None:
    assert job.ttl_remaining(ttl, status, NOW) == expected, reason


@pytest.mark.parametrize(
    ("reason", "stamp", "expected"),
    [
        ("Kubernetes' form, Z", "2026-11-24T11:59:00Z", 60.0),
        ("Batch's form, fractional seconds and an offset", "2026-11-24T11:59:00.500000+00:00", 59.5),
        ("No zone means UTC", "2026-11-24T11:59:00", 60.0),
        ("In the future (clock skew): never negative", "2026-11-24T12:01:00Z", 0.0),
        ("No stamp", None, None),
        ("Not a time", "soon", None),
    ],
)
def test_seconds_since(reason: str, stamp: str | None, expected: float | None) -> None:
    assert job.seconds_since(stamp, NOW) == expected, reason


@pytest.mark.parametrize("kind", [k for k in KINDS if is_job(k)], ids=lambda k: k.kind())
def test_every_job_kind_explains_the_job_controls_alike(kind: type[CustomResource]) -> None:
    """kubectl explain shows the same text for suspend, activeDeadlineSeconds and ttlSecondsAfterFinished on
    every job kind: they come from api/job.py, not from each kind."""
    spec = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    shared = structural_schema(JobControls)["properties"]
    assert set(shared) == {"suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished"}
    for name, schema in shared.items():
        assert spec[name] == schema, name


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind())
def test_a_kind_is_named_job_exactly_when_it_is_a_job(kind: type[CustomResource]) -> None:
    """The alerts and dashboards tell jobs from the rest by name (kind=~".+Job"), naming no kind."""
    assert is_job(kind) is kind.kind().endswith("Job")
