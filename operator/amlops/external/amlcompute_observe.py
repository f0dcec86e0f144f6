"""AmlCompute: from what Azure answered to the engine's Observation. Pure: the client fetches, this decides.

The client (``amlcompute.py``) reads the compute (listing or GET), the location's sizes and usages, an
operation's state when :func:`needs_operation_state` says so, and the nodes when :func:`reports_nodes` does;
:func:`observation` turns those answers into facts and conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from amlops.api.amlcompute import AmlComputeSpec
from amlops.azure.errors import failure_reason
from amlops.azure.ml import OperationState
from amlops.external import amlcompute_map as m
from amlops.external import amlcompute_recreate as r
from amlops.external.compute_arm import owner_of
from amlops.external.ports import SecretVersion
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import parse_owner
from amlops.status import REASON_IMMUTABLE, ConditionUpdate, EventRecord

QUOTA_SUFFICIENT = "QuotaSufficient"
MIN_NODES_AVAILABLE = "MinNodesAvailable"
ADMIN_CREDENTIALS_CURRENT = "AdminCredentialsCurrent"
REASON_AS_CREATED = "AsCreated"
REASON_SECRET_CHANGED = "SecretChangedSinceCreate"
REASON_SECRET_GONE = "SecretNotFound"
REASON_NOT_RECORDED = "NotRecorded"
ADMIN_PASSWORD_SECRET = "adminPasswordSecret"  # status field: the Secret's version the cluster was created with
# What ``update()`` is to do when observe found a re-create's turn to delete (Observation.intent).
RECREATE = "recreate"
REASON_WAITING_FOR_IDLE = "WaitingForIdleCluster"
EVENT_RECREATING = "Recreating"
EVENT_DELETED = "Deleted"
EVENT_RECREATED = "Recreated"
JSON = dict[str, Any]


def quota_condition(sufficient: tuple[bool, str] | None) -> ConditionUpdate | None:
    """``QuotaSufficient`` from the pre-flight's verdict (None: no usage row to judge by)."""
    if sufficient is None:
        return None
    ok, message = sufficient
    return ConditionUpdate(
        QUOTA_SUFFICIENT, "True" if ok else "False", "QuotaAvailable" if ok else "QuotaExceeded", message
    )


def secret_record(name: str, version: SecretVersion | None) -> JSON | None:
    """``status.adminPasswordSecret``: which Secret, in which version; nothing derived from its data."""
    if version is None:
        return None
    return {"name": name, "uid": version.uid, "resourceVersion": version.resource_version}


def admin_credentials_condition(
    recorded: Mapping[str, Any] | None, name: str, current: SecretVersion | None
) -> ConditionUpdate:
    """``AdminCredentialsCurrent``: whether the password Secret is still the version the cluster was created with.

    Azure sets the admin password only when it creates a cluster (its update takes scaleSettings and identity),
    so a new password in the Secret cannot be applied: this says so instead of staying silent. Any change of the
    Secret counts (labels too): amlops keeps nothing derived from the password to compare with."""
    if not recorded:
        return ConditionUpdate(
            ADMIN_CREDENTIALS_CURRENT,
            "Unknown",
            REASON_NOT_RECORDED,
            f"amlops did not record which version of Secret {name} the cluster was created with (an adopted "
            "cluster, or one created by an older amlops): it cannot tell whether the nodes' password is the "
            "Secret's",
        )
    then = f"uid {recorded.get('uid')}, resourceVersion {recorded.get('resourceVersion')}"
    instead = (
        "Azure sets the admin password only when it creates a cluster, so the nodes keep the one of then: to use "
        "a new password, create a new AmlCompute and delete this one"
    )
    if current is None:
        return ConditionUpdate(
            ADMIN_CREDENTIALS_CURRENT,
            "False",
            REASON_SECRET_GONE,
            f"Secret {name}, the cluster was created with ({then}), no longer exists; {instead}",
        )
    now = f"uid {current.uid}, resourceVersion {current.resource_version}"
    if (recorded.get("name"), recorded.get("uid"), recorded.get("resourceVersion")) != (
        name,
        current.uid,
        current.resource_version,
    ):
        return ConditionUpdate(
            ADMIN_CREDENTIALS_CURRENT,
            "False",
            REASON_SECRET_CHANGED,
            f"Secret {name} changed after the cluster was created ({then}; now {now}); {instead}",
        )
    return ConditionUpdate(
        ADMIN_CREDENTIALS_CURRENT,
        "True",
        REASON_AS_CREATED,
        f"Secret {name} is the version the cluster was created with ({now})",
    )


def min_nodes_condition(spec: AmlComputeSpec, current: int) -> ConditionUpdate:
    """``MinNodesAvailable``: the seed's ``wait_for_completion(min_node_count)``."""
    wanted = spec.scale_settings.min_node_count
    ok = current >= wanted
    return ConditionUpdate(
        MIN_NODES_AVAILABLE,
        "True" if ok else "False",
        "MinNodesAvailable" if ok else "WaitingForNodes",
        f"{current} of minNodeCount {wanted} nodes allocated",
    )


def needs_operation_state(pending: Pending | None, body: JSON) -> bool:
    """Azure's GET says a saved update or delete has finished: one look at the operation itself catches what only
    it reports (a failed update). A create shows its outcome in the compute (Succeeded, or Failed with
    provisioningErrors), and while Azure still converges the GET alone is enough."""
    return pending is not None and pending.operation != "create" and not m.is_transitional(body)


@dataclass(frozen=True)
class Progress:
    """Where a saved operation stands: still converging, the one to keep resuming, a failure only it reported."""

    transitional: bool
    pending: Pending | None
    failure: tuple[str, str] | None


def progress(pending: Pending | None, body: JSON, state: OperationState | None) -> Progress:
    """The failure is amlops' stable reason for Azure's code and message (``QuotaExceeded`` for a BadRequest
    naming a vCPU quota, ``VmSizeNotAvailable`` for InvalidPropertyValue "not a supported VM size"), Azure's code
    and message kept in the condition's message (``azure.errors.failure_reason``)."""
    transitional = m.is_transitional(body)
    failed = m.failure(body)
    failure = failure_reason(*failed) if failed else None
    if pending is None or transitional:
        return Progress(transitional, pending if transitional else None, failure)
    if state is not None and not state.done:
        return Progress(True, pending, failure)
    if state is not None and state.failed and failure is None:
        failure = failure_reason(state.error_code, state.error_message)
    return Progress(False, None, failure)


def reports_nodes(spec: AmlComputeSpec, converging: bool) -> bool:
    """``spec.reportNodes``: listNodes once the cluster is not converging (its nodes are moving then)."""
    return spec.report_nodes and not converging


def observation(
    spec: AmlComputeSpec,
    body: JSON | None,
    *,
    sync: JSON,
    quota: ConditionUpdate | None,
    progress_: Progress | None = None,
    nodes: tuple[list[JSON], int] | None = None,
    admin: ConditionUpdate | None = None,
    status: Mapping[str, Any] | None = None,
    deleting: bool = False,
) -> Observation:
    """What the engine needs to decide: exists, up to date, converging, failed (and why), status, conditions.
    ``status`` is the object's (its create-only record, a re-create under way); ``deleting``: the object is."""
    conditions = tuple(c for c in (quota, admin) if c is not None)
    recreating = (status or {}).get("recreating")
    if body is None:
        if recreating and not deleting:
            # The old cluster is gone: the engine creates the new one in this same pass.
            message = f"the old cluster is deleted; creating it anew: {recreating}"
            event = EventRecord("Normal", EVENT_DELETED, message)
            return Observation(
                False, at_provider={**sync, "recreating": recreating}, conditions=conditions, events=(event,)
            )
        return Observation(resource_exists=False, at_provider=sync, conditions=conditions)
    p = progress_ or progress(None, body, None)
    status_ = {**m.from_arm(body), **sync}
    status_["nodes"] = [m.node_to_status(n) for n in nodes[0]] if nodes else None
    status_["nodeCount"] = nodes[1] if nodes else None
    record = r.compare(spec, body, r.from_status((status or {}).get("createOnlyFields")))
    step = r.next_step(spec, body, record.changes, deleting=deleting, converging=p.transitional)
    status_["createOnlyFields"] = r.to_status(record.fields)
    patch, changes = m.diff(spec, body)
    failure = p.failure
    if step is r.Step.NONE and failure is None and (mismatch := m.vm_size_mismatch(spec, body)):
        failure = (REASON_IMMUTABLE, mismatch)
    plain = Observation(
        resource_exists=True,
        resource_up_to_date=not patch,
        transitional=p.transitional,
        transitional_reason=m.provisioning_state(body) or "WaitingForAzure",
        # Creating, Updating, Deleting: the pass that finds the cluster settled writes what it is then.
        interim=True,
        settling=m.is_resizing(body),
        message=(
            f"{m.provisioning_state(body)}; allocation {status_.get('allocationState')}: "
            f"{status_.get('currentNodeCount')} → {status_.get('targetNodeCount')} nodes"
        ),
        failure=failure,
        owner=owner_of(body),
        at_provider=status_,
        # Not while Azure creates or deletes the cluster: the nodes are not its to count yet, and the condition
        # arriving a pass before Ready cost every new object an Event of its own (bench/amlcompute_scale.py).
        conditions=conditions
        if p.transitional
        else (*conditions, min_nodes_condition(spec, int(status_.get("currentNodeCount") or 0))),
        diff="; ".join(changes),
        pending=p.pending,
    )
    return recreate_step(plain, step, record.changes, recreating, body)


def recreate_step(
    plain: Observation, step: r.Step, changes: tuple[str, ...], recreating: str | None, body: JSON
) -> Observation:
    """The observation of a re-create's step (``updatePolicy: Recreate``), from the plain one. While one is under
    way, ``status.recreating`` names its changes (each step is decided from Azure again: it only serves the
    Events and humans). Events: Recreating when the DELETE goes, Deleted once the old cluster is gone, Recreated
    once the new one has settled; waiting, deleting and creating are said by the Reconciling condition's reason
    (WaitingForIdleCluster, Deleting, Creating), whose changes post Events of their own."""
    what = "; ".join(changes)
    status = dict(plain.at_provider)
    if step is r.Step.NONE:
        if recreating and not changes and not plain.transitional:
            # The new cluster has settled: the re-create is done. Failed, it is Stalled with Azure's reason,
            # whose condition posts a Warning of its own.
            status["recreating"] = None
            done = EventRecord("Normal", EVENT_RECREATED, f"the cluster is created anew: {recreating}")
            return replace(plain, at_provider=status, events=() if plain.failure else (done,))
        status["recreating"] = recreating if recreating and not changes else None
        return replace(plain, at_provider=status)
    status["recreating"] = what
    # Whatever Azure failed before (a cluster Failed for the old values) is what the re-create replaces.
    plain = replace(plain, at_provider=status, failure=None)
    if step is r.Step.WAIT_FOR_AZURE:
        return plain
    if step is r.Step.WAIT_FOR_IDLE:
        busy = r.busy_nodes(body)
        message = (
            f"updatePolicy Recreate: waiting for {busy} running or preparing node(s) to finish their jobs before "
            f"deleting and creating the cluster anew: {what}"
        )
        # No Event of its own: the Reconciling condition's new reason posts one (status.set_conditions).
        return replace(
            plain,
            resource_up_to_date=True,
            transitional=True,
            transitional_reason=REASON_WAITING_FOR_IDLE,
            message=message,
        )
    message = f"updatePolicy Recreate: deleting the cluster to create it anew: {what}"
    return replace(
        plain,
        resource_up_to_date=False,
        step=True,
        intent=RECREATE,
        diff=message,
        events=(EventRecord("Normal", EVENT_RECREATING, message),),
    )


# Azure ML statuses of a job that holds or waits for the cluster's nodes (azure-ai-ml's JobStatus, not ended).
ENDED_JOB_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})
ACTIVE_RUNS_LIMIT = 100


def active_runs(jobs: Sequence[Mapping[str, Any]], compute: str) -> list[dict[str, Any]]:
    """The seed's ``get_active_runs``: the jobs of a workspace listing (``ml_jobs.job_summary``) that run or wait
    on the cluster ``compute``, by name, at most ``ACTIVE_RUNS_LIMIT``; the amlops object that owns one (its owner
    tag) as ``<namespace>/<name>``."""
    runs: list[dict[str, Any]] = []
    for job in jobs:
        if str(job.get("compute") or "").lower() != compute.lower() or job.get("status") in ENDED_JOB_STATUSES:
            continue
        owner = parse_owner(str(job["owner"])) if job.get("owner") else None
        runs.append(
            {
                "name": str(job["name"]),
                "type": str(job.get("type") or ""),
                "status": str(job.get("status") or ""),
                "displayName": job.get("displayName"),
                "owner": f"{owner.namespace}/{owner.name}" if owner else None,
            }
        )
    return sorted(runs, key=lambda run: str(run["name"]))[:ACTIVE_RUNS_LIMIT]
