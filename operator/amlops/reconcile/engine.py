"""The one reconcile function for every kind (after crossplane-runtime's managed reconciler).

Linear, and every branch ends alike: an :class:`Outcome` with conditions, status and when to look again.

1. Paused: stop before any Azure call.
2. Deleting while other objects still use this one (``dependents()``): wait. Orphan (or ObserveOnly): release
   without touching Azure.
3. ``observe()``.
4. Deleting: ``delete()`` while the resource exists and is ours; once gone (or when Azure says its parent is
   gone: nothing can be left under it), release the finalizer. Not ours: release without touching it.
5. ObserveOnly: publish what Azure has and stop.
6. No Azure write without our finalizer (a queued pass can run before kopf has added it): look again shortly.
7. Missing: ``create()``. Present but not ours: Stalled ``NotOwned`` (``adopt`` takes over only a resource with
   no owner tag, or one whose owner no longer exists).
8. Failed in Azure: Stalled with Azure's error code.
9. Up to date: Ready, or Reconciling while Azure converges on its own.
10. Otherwise: ``update()``, at most ``MAX_UPDATE_ATTEMPTS`` times for the same diff of the same generation
    (counted in ``status.updateAttempts``): a diff that survives them never converges (Azure normalises or
    ignores the change), and is Stalled ``UpdateDoesNotConverge`` instead of a write every few seconds. Azure
    refusing the update: Stalled with Azure's code, the observation still published.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from amlops.reconcile import policy
from amlops.reconcile.errors import Deferred, RetryableError, TerminalError
from amlops.reconcile.external import ExternalClient, Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.reconcile.outcome import REASON_INTERNAL_ERROR, Outcome, internal_error_message
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
    find,
    parse_time,
    progressing,
    ready,
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

log = logging.getLogger(__name__)


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
    except Deferred as e:
        return Outcome.deferral(e.delay)
    except RetryableError as e:
        return Outcome.converging(e.reason, e.message, e.delay)
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
        return Outcome.stalled(e.reason, e.message, t.stalled)
    except Exception as e:  # not the error vocabulary: a bug, or an answer amlops cannot read
        return _internal_error(mr, e, t)


def _internal_error(mr: Managed[Any], error: Exception, t: Timing) -> Outcome:
    conditions = mr.status.get("conditions") or []
    delay, repeated = internal_error_backoff(conditions, internal_error_message(error), datetime.now(UTC), t)
    if repeated:  # its traceback is in the log already
        log.error(
            "%s/%s %s: still failing (%s: %s); next try in %.0fs",
            mr.namespace,
            mr.name,
            mr.kind,
            type(error).__name__,
            error,
            delay,
        )
    else:
        log.exception(
            "%s/%s %s: reconcile failed unexpectedly; next try in %.0fs", mr.namespace, mr.name, mr.kind, delay
        )
    return Outcome.error(error, delay)


def internal_error_backoff(
    conditions: Sequence[Mapping[str, Any]], message: str, now: datetime, t: Timing
) -> tuple[float, bool]:
    """(seconds until the next try, whether the object already shows this very failure).

    Each try waits as long as the failure has lasted (since its Stalled condition's ``lastTransitionTime``), at
    least ``t.short`` and at most ``t.stalled``: the waits double, bounded, and no counter is kept anywhere.
    """
    stall = find(conditions, STALLED)
    if stall is None or stall.get("status") != "True" or stall.get("reason") != REASON_INTERNAL_ERROR:
        return t.short, False
    since = parse_time(stall.get("lastTransitionTime")) or now
    lasted = (now - since).total_seconds()
    return min(max(lasted, t.short), t.stalled), stall.get("message") == message


async def _reconcile(mr: Managed[Any], client: ExternalClient[Any], t: Timing) -> Outcome:
    if mr.deleting:
        if waiting := await client.dependents(mr):
            message = (
                f"waiting for {', '.join(waiting)} to be deleted first: they still need this object's Azure access"
            )
            return Outcome.converging(REASON_WAITING_FOR_DEPENDENTS, message, t.short)
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
        interim = obs.transitional and obs.interim
        return _converging(REASON_DELETING, "deleting in Azure", status, pending, t, interim=interim)

    if obs.foreign_type:
        message = (
            f"an Azure resource of this name is of type {obs.foreign_type}, not what this object declares: amlops "
            "never changes or deletes it; use another name"
        )
        return Outcome.stalled(REASON_TYPE_MISMATCH, message, t.stalled, status=status)

    if policy.observe_only(mr):
        if not obs.resource_exists:
            message = "ObserveOnly: the resource does not exist in Azure"
            return Outcome.stalled(REASON_NOT_FOUND, message, t.stalled, status=status)
        return _steady(obs, status, t)

    if not mr.has_finalizer:
        message = "waiting for the amlops.io finalizer"
        return Outcome.converging(REASON_WAITING_FOR_FINALIZER, message, t.short, status=status)

    if not obs.resource_exists:
        pending = await client.create(mr)
        # The kind's own conditions (QuotaSufficient) go with the create: published a pass later, they would
        # cost every new object one more status write and Event (690 of 1,000 in bench/amlcompute_scale.py).
        return _converging(REASON_CREATING, "creating in Azure", status, pending, t, obs.conditions)

    if not await _owned(mr, client, obs.owner):
        message = policy.not_owned_message(mr, obs.owner)
        return Outcome.stalled(REASON_NOT_OWNED, message, t.stalled, status=status)

    if obs.failure is not None:
        code, message = obs.failure
        return Outcome.stalled(code, message, t.stalled, status=status, conditions=obs.conditions)

    if obs.resource_up_to_date:
        return _steady(obs, {**status, UPDATE_ATTEMPTS: None}, t)

    counted, stuck = _count_update(mr, obs, status, t)
    if stuck is not None:
        return stuck
    try:
        pending = await client.update(mr, obs)
    except TerminalError as e:
        # Azure refused the change (a workspace quota above the subscription's): what was observed is still
        # true, so it is published with the refusal. A refusal is Azure's verdict, not an update that failed to
        # converge: it is not counted, and the reason stays Azure's code.
        return Outcome.stalled(e.reason, e.message, t.stalled, status=status, conditions=obs.conditions)
    return _converging(REASON_UPDATING, obs.diff or "updating in Azure", counted, pending, t)


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
    status = {**status, UPDATE_ATTEMPTS: {**attempts, "count": MAX_UPDATE_ATTEMPTS}}
    return status, Outcome.stalled(REASON_UPDATE_DOES_NOT_CONVERGE, message, t.stalled, status=status)


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
        return Outcome.converging(
            obs.transitional_reason, obs.message, t.short, status=status, conditions=obs.conditions, interim=obs.interim
        )
    if not obs.ready:
        idle = (
            ConditionUpdate(READY, "False", obs.reason, obs.message),
            ConditionUpdate(RECONCILING, "False", obs.reason, ""),
            ConditionUpdate(STALLED, "False", obs.reason, ""),
        )
        return Outcome.steady((*idle, *obs.conditions), status=status)
    reason = REASON_SUCCEEDED if obs.resource_exists else REASON_OBSERVED
    settle_after = t.short if obs.settling else None
    return Outcome.steady((*ready(reason, obs.message), *obs.conditions), status=status, settle_after=settle_after)


def _converging(
    reason: str,
    message: str,
    status: dict[str, Any],
    pending: Pending | None,
    t: Timing,
    conditions: tuple[ConditionUpdate, ...] = (),
    *,
    interim: bool = False,
) -> Outcome:
    if pending is not None:
        status = {**status, "pendingOperation": pending.to_status()}
    return Outcome.converging(reason, message, t.short, status=status, conditions=conditions, interim=interim)
