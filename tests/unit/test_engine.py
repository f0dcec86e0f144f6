"""The generic engine with scripted ExternalClients (as crossplane-runtime tests its managed reconciler)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from amlops.reconcile.engine import Timing, internal_error_backoff, next_update_attempts, reconcile
from amlops.reconcile.errors import Deferred, RetryableError, TerminalError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.status import ConditionUpdate, EventRecord

pytestmark = pytest.mark.unit


class Spec(BaseModel):
    management_policy: str = "Manage"
    deletion_policy: str = "Delete"
    adopt: bool = False


OWNER = "ns.obj.uid-1"
LIVE_OTHER = "team-b.theirs.uid-2"  # another object that exists
GONE_OTHER = "ns.obj.uid-0"  # this name's earlier object, deleted with Orphan


def managed(**overrides: Any) -> Managed[Spec]:
    spec = Spec(**overrides.pop("spec", {}))
    base: dict[str, Any] = dict(
        kind="AmlCompute", namespace="ns", name="obj", uid="uid-1", generation=2, spec=spec, has_finalizer=True
    )
    return Managed(**{**base, **overrides})


@dataclass
class Scripted:
    """Answers observe with ``observation`` (or raises ``observe_error``) and records every write."""

    observation: Observation = field(default_factory=lambda: Observation(resource_exists=False))
    observe_error: Exception | None = None
    write_error: Exception | None = None
    pending: Pending | None = None
    waiting_for: tuple[str, ...] = ()
    calls: list[str] = field(default_factory=list)

    async def observe(self, mr: Managed[Spec]) -> Observation:
        self.calls.append("observe")
        if self.observe_error:
            raise self.observe_error
        return self.observation

    async def _write(self, name: str) -> Pending | None:
        self.calls.append(name)
        if self.write_error:
            raise self.write_error
        return self.pending

    async def create(self, mr: Managed[Spec]) -> Pending | None:
        return await self._write("create")

    async def update(self, mr: Managed[Spec], observation: Observation) -> Pending | None:
        return await self._write("update")

    async def delete(self, mr: Managed[Spec]) -> Pending | None:
        return await self._write("delete")

    async def owner_exists(self, owner: str) -> bool:
        return owner == LIVE_OTHER

    async def dependents(self, mr: Managed[Spec]) -> tuple[str, ...]:
        return self.waiting_for


@dataclass(frozen=True)
class Case:
    reason: str
    mr: Managed[Spec]
    client: Scripted
    calls: list[str]
    conditions: dict[str, tuple[str, str]]  # type -> (status, reason)
    release: bool = False
    retry: bool = False
    interim: bool = False  # Azure alone converging, amlops did nothing: a status the next pass replaces


EXISTS_OURS = Observation(resource_exists=True, owner=OWNER, at_provider={"provisioningState": "Succeeded"})
CREATING_IN_AZURE = Observation(True, owner=OWNER, transitional=True, transitional_reason="Creating")
CASES = [
    Case(
        "Paused: no Azure call at all",
        managed(annotations={"amlops.io/paused": "true"}),
        Scripted(),
        [],
        {"Reconciling": ("False", "Paused")},
    ),
    Case(
        "Missing: create, then Reconciling/Creating and look again soon",
        managed(),
        Scripted(),
        ["observe", "create"],
        {"Reconciling": ("True", "Creating"), "Ready": ("False", "Creating"), "Stalled": ("False", "Creating")},
        retry=True,
    ),
    Case(
        "No finalizer yet (a timer came first): no create",
        managed(has_finalizer=False),
        Scripted(),
        ["observe"],
        {"Reconciling": ("True", "WaitingForFinalizer")},
        retry=True,
    ),
    Case(
        "Up to date and steady: Ready, no write",
        managed(),
        Scripted(observation=EXISTS_OURS),
        ["observe"],
        {"Ready": ("True", "Succeeded"), "Reconciling": ("False", "Succeeded")},
    ),
    Case(
        "Up to date but Azure converging (Resizing): Reconciling, no write; its details are written (a running job)",
        managed(),
        Scripted(observation=Observation(True, owner=OWNER, transitional=True, transitional_reason="Resizing")),
        ["observe"],
        {"Reconciling": ("True", "Resizing"), "Ready": ("False", "Resizing")},
        retry=True,
    ),
    Case(
        "Azure creating, the observation's details a snapshot (a compute): an interim outcome",
        managed(),
        Scripted(observation=replace(CREATING_IN_AZURE, interim=True)),
        ["observe"],
        {"Reconciling": ("True", "Creating"), "Ready": ("False", "Creating")},
        retry=True,
        interim=True,
    ),
    Case(
        "Drifted: update, Reconciling/Updating",
        managed(),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=OWNER, diff="maxNodeCount 4 → 8")),
        ["observe", "update"],
        {"Reconciling": ("True", "Updating"), "Ready": ("False", "Updating")},
        retry=True,
    ),
    Case(
        "Exists without our owner tag and no adopt: Stalled NotOwned, no write",
        managed(),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=None)),
        ["observe"],
        {"Stalled": ("True", "NotOwned"), "Ready": ("False", "NotOwned")},
    ),
    Case(
        "Exists with no owner tag and adopt: true: adopted",
        managed(spec={"adopt": True}),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=None)),
        ["observe", "update"],
        {"Reconciling": ("True", "Updating")},
        retry=True,
    ),
    Case(
        "Tagged by an object that no longer exists, adopt: true: adopted",
        managed(spec={"adopt": True}),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=GONE_OTHER)),
        ["observe", "update"],
        {"Reconciling": ("True", "Updating")},
        retry=True,
    ),
    Case(
        "Tagged by another object that exists, adopt: true: Stalled NotOwned, never written",
        managed(spec={"adopt": True}),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=LIVE_OTHER)),
        ["observe"],
        {"Stalled": ("True", "NotOwned"), "Ready": ("False", "NotOwned")},
    ),
    Case(
        "Tagged by an object that no longer exists, no adopt: Stalled NotOwned",
        managed(),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=GONE_OTHER)),
        ["observe"],
        {"Stalled": ("True", "NotOwned")},
    ),
    Case(
        "Failed in Azure: Stalled with Azure's code",
        managed(),
        Scripted(observation=Observation(True, owner=OWNER, failure=("QuotaExceeded", "needs 32 cores"))),
        ["observe"],
        {"Stalled": ("True", "QuotaExceeded"), "Ready": ("False", "QuotaExceeded")},
    ),
    Case(
        "ObserveOnly and present: Ready from Azure, never a write",
        managed(spec={"management_policy": "ObserveOnly"}),
        Scripted(observation=Observation(True, resource_up_to_date=False, owner=None)),
        ["observe"],
        {"Ready": ("True", "Succeeded")},
    ),
    Case(
        "ObserveOnly and missing: Stalled ResourceNotFound, never a create",
        managed(spec={"management_policy": "ObserveOnly"}),
        Scripted(),
        ["observe"],
        {"Stalled": ("True", "ResourceNotFound")},
    ),
    Case(
        "Deleting and present: delete, keep the finalizer",
        managed(deleting=True),
        Scripted(observation=EXISTS_OURS),
        ["observe", "delete"],
        {"Reconciling": ("True", "Deleting")},
        retry=True,
    ),
    Case(
        "Deleting while Azure is already deleting: no second delete",
        managed(deleting=True),
        Scripted(observation=Observation(True, owner=OWNER, transitional=True, interim=True)),
        ["observe"],
        {"Reconciling": ("True", "Deleting")},
        retry=True,
        interim=True,
    ),
    Case(
        "Deleting and gone: release the finalizer",
        managed(deleting=True),
        Scripted(),
        ["observe"],
        {},
        release=True,
    ),
    Case(
        "Deleting with Orphan: release without touching Azure (not even a read: it may be unreachable)",
        managed(deleting=True, spec={"deletion_policy": "Orphan"}),
        Scripted(observation=EXISTS_OURS),
        [],
        {},
        release=True,
    ),
    Case(
        "Deleting what we do not own: release, never delete it",
        managed(deleting=True),
        Scripted(observation=Observation(True, owner="someone-else")),
        ["observe"],
        {},
        release=True,
    ),
    Case(
        "Deleting with adopt: true what another existing object owns: release, never delete it",
        managed(deleting=True, spec={"adopt": True}),
        Scripted(observation=Observation(True, owner=LIVE_OTHER)),
        ["observe"],
        {},
        release=True,
    ),
    Case(
        "Deleting with adopt: true what an object that no longer exists tagged: adopted, so deleted",
        managed(deleting=True, spec={"adopt": True}),
        Scripted(observation=Observation(True, owner=GONE_OTHER)),
        ["observe", "delete"],
        {"Reconciling": ("True", "Deleting")},
        retry=True,
    ),
    Case(
        "Deleting while other objects still use it: wait, before any Azure call",
        managed(deleting=True),
        Scripted(observation=EXISTS_OURS, waiting_for=("ParallelJob a",)),
        [],
        {"Reconciling": ("True", "WaitingForDependents")},
        retry=True,
    ),
    Case(
        "Deleting with Orphan while other objects still use it: wait too (they need its access to clean up)",
        managed(deleting=True, spec={"deletion_policy": "Orphan"}),
        Scripted(observation=EXISTS_OURS, waiting_for=("ParallelJob a",)),
        [],
        {"Reconciling": ("True", "WaitingForDependents")},
        retry=True,
    ),
    Case(
        "Deleting under a parent that does not exist (typo in the workspace): nothing is left, release",
        managed(deleting=True),
        Scripted(observe_error=TerminalError("ParentResourceNotFound", "Parent resource 'wsx' not found.")),
        ["observe"],
        {"Reconciling": ("True", "Deleting")},
        release=True,
    ),
    Case(
        "Deleting in a resource group that does not exist: release",
        managed(deleting=True),
        Scripted(observation=EXISTS_OURS, write_error=TerminalError("ResourceGroupNotFound", "rg not found")),
        ["observe", "delete"],
        {"Reconciling": ("True", "Deleting")},
        release=True,
    ),
    Case(
        "Deleting from a Batch account that no longer exists: release",
        managed(deleting=True),
        Scripted(observe_error=TerminalError("AccountNotFound", "The specified account does not exist.")),
        ["observe"],
        {},
        release=True,
    ),
    Case(
        "Deleting without authorization: Stalled and the finalizer kept (the resource may exist and bill)",
        managed(deleting=True),
        Scripted(observe_error=TerminalError("AuthorizationFailed", "no access")),
        ["observe"],
        {"Stalled": ("True", "AuthorizationFailed")},
    ),
    Case(
        "Not deleting, parent missing: Stalled ParentResourceNotFound (a human fixes the spec)",
        managed(),
        Scripted(observe_error=TerminalError("ParentResourceNotFound", "Parent resource 'wsx' not found.")),
        ["observe"],
        {"Stalled": ("True", "ParentResourceNotFound")},
    ),
    Case(
        "Observe throttled: Reconciling/Throttled, retry after Retry-After",
        managed(),
        Scripted(observe_error=RetryableError("Throttled", "429 from ARM", delay=7)),
        ["observe"],
        {"Reconciling": ("True", "Throttled")},
        retry=True,
    ),
    Case(
        "Settled but not Ready (a suspended job): Ready=False with its reason, neither Reconciling nor Stalled",
        managed(),
        Scripted(observation=Observation(True, owner=OWNER, ready=False, reason="Suspended", message="suspended")),
        ["observe"],
        {"Ready": ("False", "Suspended"), "Reconciling": ("False", "Suspended"), "Stalled": ("False", "Suspended")},
    ),
    Case(
        "A bug in the external client (KeyError): Stalled InternalError, tried again, never WaitingForAzure",
        managed(),
        Scripted(observe_error=KeyError("provisioningState")),
        ["observe"],
        {"Stalled": ("True", "InternalError"), "Reconciling": ("False", "InternalError")},
        retry=True,
    ),
    Case(
        "A bug while creating: the same",
        managed(),
        Scripted(write_error=TypeError("'NoneType' object is not iterable")),
        ["observe", "create"],
        {"Stalled": ("True", "InternalError")},
        retry=True,
    ),
    Case(
        "Create refused terminally: Stalled with Azure's code",
        managed(),
        Scripted(write_error=TerminalError("ParentResourceNotFound", "workspace ws not found")),
        ["observe", "create"],
        {"Stalled": ("True", "ParentResourceNotFound"), "Reconciling": ("False", "ParentResourceNotFound")},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in CASES])
async def test_engine(case: Case) -> None:
    outcome = await reconcile(case.mr, case.client, Timing(short=1, stalled=60))
    assert case.client.calls == case.calls, case.reason
    got = {c.type: (c.status, c.reason) for c in outcome.conditions}
    for type_, expected in case.conditions.items():
        assert got.get(type_) == expected, f"{case.reason}: {type_} {got.get(type_)} != {expected}"
    assert outcome.release_finalizer == case.release, case.reason
    assert outcome.retry == case.retry, case.reason
    assert outcome.interim == case.interim, case.reason


async def test_pending_operation_is_published_and_cleared() -> None:
    client = Scripted(pending=Pending("create", "token-1", "2026-01-01T00:00:00Z"))
    created = await reconcile(managed(), client)
    assert created.status["pendingOperation"] == {
        "name": "create",
        "token": "token-1",
        "startedAt": "2026-01-01T00:00:00Z",
    }
    steady = await reconcile(managed(), Scripted(observation=EXISTS_OURS))
    assert steady.status["pendingOperation"] is None
    assert steady.status["provisioningState"] == "Succeeded"


async def test_retry_delay_comes_from_the_error() -> None:
    outcome = await reconcile(managed(), Scripted(observe_error=RetryableError("Throttled", "429", delay=7)))
    assert outcome.requeue_after == 7


async def test_a_deferred_write_ends_the_pass_with_nothing_to_write() -> None:
    """A create whose turn in ARM's budget is far off (pacing.deferring): no condition, no status, no Event; the
    queue looks again at its turn."""
    client = Scripted(write_error=Deferred(12.5, "ARM's writes budget has a token for this request in 12.5s"))
    outcome = await reconcile(managed(), client)
    assert client.calls == ["observe", "create"]
    assert (outcome.deferred, outcome.conditions, dict(outcome.status), outcome.events) == (True, (), {}, ())
    assert (outcome.retry, outcome.requeue_after, outcome.result) == (True, 12.5, "retry")


async def test_kind_conditions_ride_along_with_ready() -> None:
    extra = ConditionUpdate("MinNodesAvailable", "True", "Succeeded", "2 of 2 nodes")
    outcome = await reconcile(managed(), Scripted(observation=Observation(True, owner=OWNER, conditions=(extra,))))
    assert extra in outcome.conditions


async def test_kind_conditions_ride_along_with_the_create() -> None:
    """A new object's QuotaSufficient goes out with its Creating status: one status write and one Event, not two."""
    extra = ConditionUpdate("QuotaSufficient", "True", "QuotaAvailable", "4 vCPUs free")
    client = Scripted(observation=Observation(False, conditions=(extra,)))
    outcome = await reconcile(managed(), client)
    assert client.calls == ["observe", "create"]
    assert extra in outcome.conditions


async def test_an_observations_events_are_posted_with_the_outcome_even_on_release() -> None:
    warning = EventRecord("Warning", "ComputeGone", "pool pj-1 may remain")
    outcome = await reconcile(managed(deleting=True), Scripted(observation=Observation(False, events=(warning,))))
    assert outcome.release_finalizer
    assert outcome.events == (warning,)


async def test_waiting_for_dependents_names_them() -> None:
    client = Scripted(waiting_for=("ParallelJob a", "ParallelJob b"))
    outcome = await reconcile(managed(deleting=True), client)
    message = next(c.message for c in outcome.conditions if c.type == "Reconciling")
    assert "ParallelJob a, ParallelJob b" in message
    assert not outcome.release_finalizer


async def test_not_owned_message_says_what_to_do() -> None:
    plain = await reconcile(managed(), Scripted(observation=Observation(True, owner=None)))
    assert "set spec.adopt: true" in next(c.message for c in plain.conditions if c.type == "Stalled")
    taken = await reconcile(managed(spec={"adopt": True}), Scripted(observation=Observation(True, owner=LIVE_OTHER)))
    assert "still exists" in next(c.message for c in taken.conditions if c.type == "Stalled")


DRIFT = Observation(True, resource_up_to_date=False, owner=OWNER, diff="identity None → SystemAssigned")
DRIFT_HASH = next_update_attempts(None, DRIFT.diff, 2)["diffHash"]


def attempts(count: int, generation: int = 2, diff_hash: str = DRIFT_HASH) -> dict[str, Any]:
    return {"updateAttempts": {"diffHash": diff_hash, "generation": generation, "count": count}}


@pytest.mark.parametrize(
    ("status", "observation", "calls", "reason", "written", "why"),
    [
        ({}, DRIFT, ["observe", "update"], "Updating", 1, "a first update is counted"),
        (attempts(1), DRIFT, ["observe", "update"], "Updating", 2, "the same diff again: counted on"),
        (attempts(2), DRIFT, ["observe", "update"], "Updating", 3, "the third update is still made"),
        (attempts(3), DRIFT, ["observe"], "UpdateDoesNotConverge", 3, "a fourth is not: Stalled, no write"),
        (attempts(3, generation=1), DRIFT, ["observe", "update"], "Updating", 1, "a new generation starts again"),
        (attempts(3, diff_hash="other"), DRIFT, ["observe", "update"], "Updating", 1, "another diff starts again"),
        (attempts(3), EXISTS_OURS, ["observe"], "Succeeded", None, "up to date: the count is cleared"),
        (attempts(3), replace(DRIFT, step=True), ["observe", "update"], "Updating", None,
         "a job's next step is progress, never counted"),
        (attempts(3), replace(DRIFT, transitional=True), ["observe", "update"], "Updating", None,
         "Azure still converging (Updating): not counted"),
        (attempts(3), replace(DRIFT, diff=""), ["observe", "update"], "Updating", None,
         "nothing to write (waiting on a deleting pool): not counted"),
    ],
)  # fmt: skip
async def test_an_update_that_does_not_converge_is_stalled(
    status: dict[str, Any], observation: Observation, calls: list[str], reason: str, written: int | None, why: str
) -> None:
    client = Scripted(observation=observation)
    outcome = await reconcile(managed(status=status), client, Timing(short=1, stalled=300))
    assert client.calls == calls, why
    assert {c.reason for c in outcome.conditions} == {reason}, why
    recorded = outcome.status.get("updateAttempts")
    assert (recorded or {}).get("count") == written, why
    if reason == "UpdateDoesNotConverge":
        assert outcome.terminal, why
        assert outcome.requeue_after == 300, why
        stalled = next(c for c in outcome.conditions if c.type == "Stalled")
        assert stalled.status == "True"
        assert stalled.message == "3 updates left Azure still differing from the spec: identity None → SystemAssigned"


async def test_an_update_azure_refuses_is_stalled_with_its_code_and_the_observation_published() -> None:
    """A WorkspaceQuota limit above the subscription's: Azure's code is the reason, what was observed is still
    published (the limits it reports), and a refusal is not counted towards UpdateDoesNotConverge."""
    refused = TerminalError("InvalidQuotaExceedsSubscriptionLimit", "Azure did not set the quota")
    observed = replace(DRIFT, at_provider={"families": [{"vmFamily": "standardDSv2Family", "workspaceLimit": 24}]})
    client = Scripted(observation=observed, write_error=refused)
    outcome = await reconcile(managed(status=attempts(2)), client, Timing(short=1, stalled=300))
    assert client.calls == ["observe", "update"]
    assert outcome.terminal
    assert {c.reason for c in outcome.conditions} == {"InvalidQuotaExceedsSubscriptionLimit"}
    assert outcome.status["families"] == observed.at_provider["families"]
    assert "updateAttempts" not in outcome.status, "left as it was: the refusal is no update that failed to converge"


@pytest.mark.parametrize(
    ("previous", "diff", "generation", "count", "why"),
    [
        (None, "a", 1, 1, "nothing before"),
        ({}, "a", 1, 1, "an empty record"),
        (next_update_attempts(None, "a", 1), "a", 1, 2, "the same diff and generation"),
        (next_update_attempts(None, "a", 1), "b", 1, 1, "another diff"),
        (next_update_attempts(None, "a", 1), "a", 2, 1, "another generation"),
        ({"diffHash": "x", "generation": 1, "count": None}, "a", 1, 1, "a damaged record"),
    ],
)
def test_next_update_attempts(
    previous: dict[str, Any] | None, diff: str, generation: int, count: int, why: str
) -> None:
    assert next_update_attempts(previous, diff, generation)["count"] == count, why


@pytest.mark.parametrize(
    ("why", "mr", "client", "result"),
    [
        ("owned by someone else", managed(), Scripted(observation=Observation(True, owner=LIVE_OTHER)), "stalled"),
        (
            "failed in Azure",
            managed(),
            Scripted(observation=Observation(True, owner=OWNER, failure=("QuotaExceeded", "no cores"))),
            "stalled",
        ),
        ("ObserveOnly and missing", managed(spec={"management_policy": "ObserveOnly"}), Scripted(), "stalled"),
        ("of another type", managed(), Scripted(observation=Observation(True, foreign_type="Kubernetes")), "stalled"),
        ("refused by Azure", managed(), Scripted(observe_error=TerminalError("QuotaExceeded", "no")), "stalled"),
        ("a bug in amlops", managed(), Scripted(observe_error=AttributeError("as_dict")), "error"),
        ("throttled", managed(), Scripted(observe_error=RetryableError("Throttled", "429")), "retry"),
        ("creating", managed(), Scripted(), "retry"),
        ("converging", managed(), Scripted(observation=Observation(True, owner=OWNER, transitional=True)), "retry"),
        ("ready but settling", managed(), Scripted(observation=Observation(True, owner=OWNER, settling=True)), "retry"),
        ("ready", managed(), Scripted(observation=EXISTS_OURS), "ok"),
        ("settled, not ready", managed(), Scripted(observation=Observation(True, owner=OWNER, ready=False)), "ok"),
        ("paused", managed(annotations={"amlops.io/paused": "true"}), Scripted(), "ok"),
        ("deleted and gone", managed(deleting=True), Scripted(), "ok"),
    ],
)
async def test_the_reconcile_metric_label_follows_the_conditions(
    why: str, mr: Managed[Spec], client: Scripted, result: str
) -> None:
    """``amlops_reconcile_total``'s ``result`` is read from the conditions (issue 14: NotOwned, Failed and
    ObserveOnly-missing were Stalled but counted ok; a bug was not counted at all)."""
    outcome = await reconcile(mr, client)
    assert outcome.result == result, why
    assert outcome.terminal is (result in ("stalled", "error")), why


async def test_an_internal_error_says_what_broke_and_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome = await reconcile(managed(), Scripted(observe_error=KeyError("provisioningState")), Timing(short=2))
    stall = next(c for c in outcome.conditions if c.type == "Stalled")
    assert "KeyError: 'provisioningState'" in stall.message
    assert (outcome.retry, outcome.requeue_after) == (True, 2)
    [record] = [r for r in caplog.records if r.name == "amlops.reconcile.engine"]
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


def _internal(since: str, message: str = "m", status: str = "True", reason: str = "InternalError") -> dict[str, Any]:
    return {"type": "Stalled", "status": status, "reason": reason, "message": message, "lastTransitionTime": since}


NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("why", "conditions", "delay", "repeated"),
    [
        ("a first failure is tried again soon", [], 5, False),
        (
            "after a Stalled of another reason: the first of its kind",
            [_internal("2026-11-29T11:00:00Z", reason="NotOwned")],
            5,
            False,
        ),
        ("not Stalled any more: a new failure", [_internal("2026-11-29T11:00:00Z", status="False")], 5, False),
        ("failing for 2 s: never sooner than short", [_internal("2026-11-29T11:59:58Z")], 5, True),
        ("failing for 40 s: wait 40 s (the waits double)", [_internal("2026-11-29T11:59:20Z")], 40, True),
        ("failing for an hour: at most the stalled interval", [_internal("2026-11-29T11:00:00Z")], 300, True),
        (
            "another message: a failure of its own, whose traceback is logged",
            [_internal("2026-11-29T11:59:20Z", "x")],
            40,
            False,
        ),
        ("an unreadable time: from now", [_internal("yesterday")], 5, True),
    ],
)
def test_internal_error_backoff(why: str, conditions: list[dict[str, Any]], delay: float, repeated: bool) -> None:
    got = internal_error_backoff(conditions, "m", NOW, Timing(short=5, stalled=300))
    assert got == (delay, repeated), why


async def test_a_deletion_without_credentials_it_may_use_ends_with_a_warning() -> None:
    """No credentials Secret (one that was used is kept by the in-use finalizer, so this one never was): the
    finalizer goes, with a Warning saying what may be left, instead of a namespace deletion that never ends."""
    missing = TerminalError("CredentialsMissing", "Secret ns/sp (spec.credentials) not found")
    outcome = await reconcile(managed(deleting=True), Scripted(observe_error=missing))
    assert outcome.release_finalizer
    (event,) = outcome.events
    assert (event.type, event.reason) == ("Warning", "CredentialsGone")
    assert "Secret ns/sp" in event.message
    alive = await reconcile(managed(), Scripted(observe_error=missing))
    assert alive.terminal, "not being deleted: Stalled as ever"
    assert not alive.release_finalizer


@pytest.mark.parametrize(
    ("why", "mr", "calls", "released", "reason"),
    [
        ("a compute of another type is never taken over", managed(spec={"adopt": True}), ["observe"], False,
         "ComputeTypeMismatch"),
        ("nor deleted: the object just goes", managed(deleting=True, spec={"adopt": True}), ["observe"], True, None),
        ("not even observed as one's own", managed(spec={"management_policy": "ObserveOnly"}), ["observe"], False,
         "ComputeTypeMismatch"),
    ],
)  # fmt: skip
async def test_a_resource_of_another_type_is_never_ours(
    why: str, mr: Managed[Spec], calls: list[str], released: bool, reason: str | None
) -> None:
    """The seed: deleting an AmlCompute whose name an attached compute holds must change nothing."""
    client = Scripted(observation=Observation(True, foreign_type="Batch", owner=None))
    outcome = await reconcile(mr, client)
    assert client.calls == calls, why
    assert outcome.release_finalizer is released, why
    if reason:
        stalled = next(c for c in outcome.conditions if c.type == "Stalled")
        assert (stalled.status, stalled.reason) == ("True", reason), why
        assert "type Batch" in stalled.message
