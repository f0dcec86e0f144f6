"""AmlCompute: from what Azure answered to the engine's Observation. Pure: the client fetches, this decides.

The client (``amlcompute.py``) reads the compute (listing or GET), the location's sizes and usages, an
operation's state when :func:`needs_operation_state` says so, and the nodes when :func:`reports_nodes` does;
:func:`observation` turns those answers into facts and conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amlops.api.amlcompute import AmlComputeSpec
from amlops.azure.errors import failure_reason
from amlops.azure.ml import OperationState
from amlops.external import amlcompute_map as m
from amlops.external.compute_arm import owner_of
from amlops.external.ports import SecretVersion
from amlops.reconcile.external import Observation, Pending
from amlops.status import REASON_IMMUTABLE, ConditionUpdate

QUOTA_SUFFICIENT = "QuotaSufficient"
MIN_NODES_AVAILABLE = "MinNodesAvailable"
ADMIN_CREDENTIALS_CURRENT = "AdminCredentialsCurrent"
REASON_AS_CREATED = "AsCreated"
REASON_SECRET_CHANGED = "SecretChangedSinceCreate"
REASON_SECRET_GONE = "SecretNotFound"
REASON_NOT_RECORDED = "NotRecorded"
ADMIN_PASSWORD_SECRET = "adminPasswordSecret"  # status field: the Secret's version the cluster was created with
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
) -> Observation:
    """What the engine needs to decide: exists, up to date, converging, failed (and why), status, conditions."""
    conditions = tuple(c for c in (quota, admin) if c is not None)
    if body is None:
        return Observation(resource_exists=False, at_provider=sync, conditions=conditions)
    p = progress_ or progress(None, body, None)
    status = {**m.from_arm(body), **sync}
    status["nodes"] = [m.node_to_status(n) for n in nodes[0]] if nodes else None
    status["nodeCount"] = nodes[1] if nodes else None
    patch, changes = m.diff(spec, body)
    failure = p.failure
    if failure is None and (mismatch := m.vm_size_mismatch(spec, body)):
        failure = (REASON_IMMUTABLE, mismatch)
    return Observation(
        resource_exists=True,
        resource_up_to_date=not patch,
        transitional=p.transitional,
        transitional_reason=m.provisioning_state(body) or "WaitingForAzure",
        settling=m.is_resizing(body),
        message=(
            f"{m.provisioning_state(body)}; allocation {status.get('allocationState')}: "
            f"{status.get('currentNodeCount')} → {status.get('targetNodeCount')} nodes"
        ),
        failure=failure,
        owner=owner_of(body),
        at_provider=status,
        conditions=(*conditions, min_nodes_condition(spec, int(status.get("currentNodeCount") or 0))),
        diff="; ".join(changes),
        pending=p.pending,
    )
