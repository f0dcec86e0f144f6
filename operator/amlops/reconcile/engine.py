"""The one reconcile function for every kind (after crossplane-runtime's managed reconciler).

Linear, and every branch ends alike: an :class:`Outcome` with conditions, status and when to look again.

1. Paused: stop before any Azure call.
2. Deleting while other objects still use this one (``dependents()``): wait. Orphan (or ObserveOnly): release
   without touching Azure.
3. ``observe()``.
4. Deleting: ``delete()`` while the resource exists and is ours; once gone (or when Azure says its parent is
   gone: nothing can be left under it), release the finalizer. Not ours: release without touching it.
5. ObserveOnly: publish what Azure has and stop.
6. No Azure write without our finalizer (a timer can run before kopf has added it): look again shortly.
7. Missing: ``create()``. Present but not ours: Stalled ``NotOwned`` (``adopt`` takes over only a resource with
   no owner tag, or one whose owner no longer exists).
8. Failed in Azure: Stalled with Azure's error code.
9. Up to date: Ready, or Reconciling while Azure converges on its own.
10. Otherwise: ``update()``, at most ``MAX_UPDATE_ATTEMPTS`` times for the same diff of the same generation
    (counted in ``status.updateAttempts``): a diff that survives them never converges (Azure normalises or
    ignores the change), and is Stalled ``UpdateDoesNotConverge`` instead of a write every few seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from amlops.reconcile import policy
from amlops.reconcile.errors import RetryableError, TerminalError
from amlops.reconcile.external import ExternalClient, Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.reconcile.outcome import Outcome
from amlops.status import (
    READY,
    REASON_CREATING,
    REASON_DELETING,
    REASON_OBSERVED,
    REASON_PAUSED,
    REASON_SUCCEEDED,
    REASON_UPDATING,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    EventRecord,
    progressing,
    ready,
    stalled,
)

REASON_NOT_OWNED = "NotOwned"
REASON_TYPE_MISMATCH = "ComputeTypeMismatch"
REASON_NOT_FOUND = "ResourceNotFound"
REASON_WAITING_FOR_FINALIZER = "WaitingForFinalizer"
REASON_WAITING_FOR_DEPENDENTS = "WaitingForDependents"
REASON_CREDENTIALS_GONE = "CredentialsGone"
REASON_UPDATE_DOES_NOT_CONVERGE = "UpdateDoesNotConverge"
# Updates with the same diff (same generation) before the diff counts as one that never converges.
MAX_UPDATE_ATTEMPTS = 3
UPDATE_ATTEMPTS = "updateAttempts"


class Timing:
    """How soon to look again; the handlers' settings fill it (tests use small numbers)."""

    def __init__(self, short: float = 5.0, stalled: float = 300.0) -> None:
        self.short = short
        self.stalled = stalled


async def reconcile(mr: Managed[Any], client: ExternalClient[Any], timing: Timing | None = None) -> Outcome:
    t = timing or Timing()
    if mr.paused:
        return Outcome(
            conditions=(ConditionUpdate(RECONCILING, "False", REASON_PAUSED, "amlops.io/paused is set"),),
            release_finalizer=mr.deleting,
        )
    try:
        return await _reconcile(mr, client, t)
    except RetryableError as e:
        return Outcome(conditions=tuple(progressing(e.reason, e.message)), requeue_after=e.delay, retry=True)
    except TerminalError as e:
        if mr.deleting and policy.nothing_left(e.reason):
            # A missing parent (a typo in spec.workspace, a deleted resource group or Batch account) holds
            # nothing: the deletion is done. Waiting would keep the finalizer forever.
            message = f"nothing to delete in Azure: {e.reason}: {e.message}"
            return Outcome(conditions=tuple(progressing(REASON_DELETING, message)), release_finalizer=True)
        if mr.deleting and policy.never_reached(e.reason):
            # No credentials this object may use: waiting for them would keep the finalizer (and a namespace
            # being deleted) forever. Said in a Warning, in case anything was created with credentials since gone.
            message = f"amlops cannot reach Azure for this object ({e.message}); anything it created there is left"
            return Outcome(
                conditions=tuple(progressing(REASON_DELETING, message)),
                release_finalizer=True,
                events=(EventRecord("Warning", REASON_CREDENTIALS_GONE, message),),
            )
        return Outcome(conditions=tuple(stalled(e.reason, e.message)), requeue_after=t.stalled)


async def _reconcile(mr: Managed[Any], client: ExternalClient[Any], t: Timing) -> Outcome:
    if mr.deleting:
        if waiting := await client.dependents(mr):
            message = (
                f"waiting for {', '.join(waiting)} to be deleted first: they still need this object's Azure access"
            )
            return Outcome(
                conditions=tuple(progressing(REASON_WAITING_FOR_DEPENDENTS, message)), requeue_after=t.short, retry=True
            )
        if not policy.deletes_in_azure(mr):
            return Outcome(release_finalizer=True)
    obs = await client.observe(mr)
    outcome = await _decide(mr, client, obs, t)
    return replace(outcome, events=obs.events) if obs.events else outcome


async def _decide(mr: Managed[Any], client: ExternalClient[Any], obs: Observation, t: Timing) -> Outcome:
    status = _published(obs)

    if mr.deleting:
        if not obs.resource_exists or obs.foreign_type:
            return Outcome(status=status, release_finalizer=True)
        if not await _owned(mr, client, obs.owner):
            # Never delete what we do not own; let the object go and leave Azure alone.
            return Outcome(status=status, release_finalizer=True)
        pending = obs.pending if obs.transitional else await client.delete(mr)
        return _converging(REASON_DELETING, "deleting in Azure", status, pending, t)

    if obs.foreign_type:
        message = (
            f"an Azure resource of this name is of type {obs.foreign_type}, not what this object declares: amlops "
            "never changes or deletes it; use another name"
        )
        return Outcome(conditions=tuple(stalled(REASON_TYPE_MISMATCH, message)), status=status, requeue_after=t.stalled)

    if policy.observe_only(mr):
        if not obs.resource_exists:
            return Outcome(
                conditions=tuple(stalled(REASON_NOT_FOUND, "ObserveOnly: the resource does not exist in Azure")),
                status=status,
                requeue_after=t.stalled,
            )
        return _steady(obs, status, t)

    if not mr.has_finalizer:
        return Outcome(
            conditions=tuple(progressing(REASON_WAITING_FOR_FINALIZER, "waiting for the amlops.io finalizer")),
            status=status,
            requeue_after=t.short,
            retry=True,
        )

    if not obs.resource_exists:
        pending = await client.create(mr)
        return _converging(REASON_CREATING, "creating in Azure", status, pending, t)

    if not await _owned(mr, client, obs.owner):
        message = policy.not_owned_message(mr, obs.owner)
        return Outcome(conditions=tuple(stalled(REASON_NOT_OWNED, message)), status=status, requeue_after=t.stalled)

    if obs.failure is not None:
        code, message = obs.failure
        return Outcome(conditions=(*stalled(code, message), *obs.conditions), status=status, requeue_after=t.stalled)

    if obs.resource_up_to_date:
        return _steady(obs, {**status, UPDATE_ATTEMPTS: None}, t)

    status, stuck = _count_update(mr, obs, status, t)
    if stuck is not None:
        return stuck
    pending = await client.update(mr, obs)
    return _converging(REASON_UPDATING, obs.diff or "updating in Azure", status, pending, t)


async def _owned(mr: Managed[Any], client: ExternalClient[Any], azure_owner: str | None) -> bool:
    exists = (
        await client.owner_exists(azure_owner) if azure_owner and policy.needs_owner_lookup(mr, azure_owner) else True
    )
    return policy.owned(mr, azure_owner, exists)


def _count_update(
    mr: Managed[Any], obs: Observation, status: dict[str, Any], t: Timing
) -> tuple[dict[str, Any], Outcome | None]:
    """The status with this update counted, or a Stalled outcome when the diff has had its tries. Not counted:
    a job's step, a pass while Azure still converges (transitional), or one with nothing to write (no diff)."""
    if obs.step or obs.transitional or not obs.diff:
        return status, None
    attempts = next_update_attempts(mr.status.get(UPDATE_ATTEMPTS), obs.diff, mr.generation)
    if attempts["count"] <= MAX_UPDATE_ATTEMPTS:
        return {**status, UPDATE_ATTEMPTS: attempts}, None
    message = f"{MAX_UPDATE_ATTEMPTS} updates left Azure still differing from the spec: {obs.diff}"
    return status, Outcome(
        conditions=tuple(stalled(REASON_UPDATE_DOES_NOT_CONVERGE, message)),
        status={**status, UPDATE_ATTEMPTS: {**attempts, "count": MAX_UPDATE_ATTEMPTS}},
        requeue_after=t.stalled,
    )


def next_update_attempts(previous: Mapping[str, Any] | None, diff: str, generation: int) -> dict[str, Any]:
    """``status.updateAttempts`` after one more update for ``diff``: counted on while the diff and the
    generation stay the same, from 1 when either changes (a new spec gets its own tries)."""
    digest = hashlib.sha256(diff.encode()).hexdigest()[:16]
    previous = previous or {}
    same = previous.get("diffHash") == digest and previous.get("generation") == generation
    count = int(previous.get("count") or 0) + 1 if same else 1
    return {"diffHash": digest, "generation": generation, "count": count}


def _published(obs: Observation) -> dict[str, Any]:
    status = dict(obs.at_provider)
    status["pendingOperation"] = obs.pending.to_status() if obs.pending else None
    return status


def _steady(obs: Observation, status: dict[str, Any], t: Timing) -> Outcome:
    if obs.transitional:
        return Outcome(
            conditions=(*progressing(obs.transitional_reason, obs.message), *obs.conditions),
            status=status,
            requeue_after=t.short,
            retry=True,
        )
    if not obs.ready:
        idle = (
            ConditionUpdate(READY, "False", obs.reason, obs.message),
            ConditionUpdate(RECONCILING, "False", obs.reason, ""),
            ConditionUpdate(STALLED, "False", obs.reason, ""),
        )
        return Outcome(conditions=(*idle, *obs.conditions), status=status)
    reason = REASON_SUCCEEDED if obs.resource_exists else REASON_OBSERVED
    return Outcome(
        conditions=(*ready(reason, obs.message), *obs.conditions),
        status=status,
        requeue_after=t.short if obs.settling else None,
        retry=obs.settling,
    )


def _converging(reason: str, message: str, status: dict[str, Any], pending: Pending | None, t: Timing) -> Outcome:
    if pending is not None:
        status = {**status, "pendingOperation": pending.to_status()}
    return Outcome(conditions=tuple(progressing(reason, message)), status=status, requeue_after=t.short, retry=True)
