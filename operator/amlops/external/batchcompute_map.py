"""BatchCompute: pure mappings between the spec, ARM's attach body, Batch pools and the CR status. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from amlops.api.batchcompute import BatchComputeSpec, ManagedPool
from amlops.azure.errors import failure_reason
from amlops.external.compute_arm import failure as compute_failure
from amlops.external.compute_arm import provisioning_errors
from amlops.reconcile.managed import OWNER_TAG

JSON = dict[str, Any]
_ACCOUNT_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Batch/batchAccounts/([^/]+)$", re.I
)
NODE_COUNT_STATES = (
    "creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting",
    "startTaskFailed", "leavingPool", "unknown", "unusable", "waitingForStartTask",
)  # fmt: skip


def account_id(spec: BatchComputeSpec) -> str:
    if spec.resource_id:
        return spec.resource_id
    assert spec.batch_account is not None  # the CRD's CEL rule guarantees exactly one of the two
    return (
        f"/subscriptions/{spec.workspace.subscription_id}/resourceGroups/{spec.batch_account.resource_group}"
        f"/providers/Microsoft.Batch/batchAccounts/{spec.batch_account.account_name}"
    )


def account_name(spec: BatchComputeSpec) -> str:
    match = _ACCOUNT_ID.match(account_id(spec))
    return match.group(3) if match else ""


def endpoint(spec: BatchComputeSpec, template: str, location: str | None) -> str:
    if spec.endpoint:
        return spec.endpoint.rstrip("/")
    return template.format(account=account_name(spec), location=location or "").rstrip("/")


def endpoint_allowed(url: str, template: str, account: str) -> bool:
    """Whether ``url`` is what the endpoint template gives for ``account``, for any one-label location: the only
    hosts the account's key or token may be sent to (``spec.endpoint`` cannot point them elsewhere)."""
    pattern = re.escape(template.rstrip("/"))
    pattern = pattern.replace(re.escape("{account}"), re.escape(account))
    pattern = pattern.replace(re.escape("{location}"), "[a-z0-9]+")
    return re.fullmatch(pattern, url.rstrip("/"), re.IGNORECASE) is not None


def attach_body(spec: BatchComputeSpec, *, owner: str, location: str) -> JSON:
    """azureml-core ``BatchCompute.attach_configuration`` → the ARM PUT body (computeType Batch, no SDK model)."""
    compute: JSON = {"computeType": "Batch", "resourceId": account_id(spec)}
    if spec.description:
        compute["description"] = spec.description
    return {"location": location, "tags": {**spec.tags, OWNER_TAG: owner}, "properties": compute}


def attached_status(body: JSON) -> JSON:
    compute = body.get("properties") or {}
    return {
        "resourceId": body.get("id"),
        "provisioningState": compute.get("provisioningState"),
        "isAttachedCompute": compute.get("isAttachedCompute"),
        "clusterLocation": compute.get("computeLocation") or body.get("location"),
        "provisioningErrors": provisioning_errors(compute),
    }


def attach_failure(body: JSON) -> tuple[str, str] | None:
    """(reason, message) when Azure failed the attach (provisioningState Failed): Azure's code, or amlops' stable
    reason for it with Azure's code and message kept in the message (``azure.errors.failure_reason``), as for an
    AmlCompute's failed create."""
    failed = compute_failure(body.get("properties") or {})
    return failure_reason(*failed) if failed else None


def attached_account(body: JSON) -> str:
    return str((body.get("properties") or {}).get("resourceId") or "")


def pool_body(pool: ManagedPool, owner: str) -> JSON:
    body: JSON = {
        "id": pool.id,
        "vmSize": pool.vm_size,
        "targetDedicatedNodes": pool.target_dedicated_nodes,
        "targetLowPriorityNodes": pool.target_low_priority_nodes,
        "taskSlotsPerNode": pool.task_slots_per_node,
        "virtualMachineConfiguration": {
            "imageReference": {
                "publisher": pool.image_reference.publisher,
                "offer": pool.image_reference.offer,
                "sku": pool.image_reference.sku,
                "version": pool.image_reference.version,
            },
            "nodeAgentSKUId": pool.node_agent_sku_id,
        },
        "metadata": [{"name": OWNER_TAG, "value": owner}],
    }
    if pool.start_task:
        body["startTask"] = {
            "commandLine": pool.start_task.command_line,
            "waitForSuccess": pool.start_task.wait_for_success,
            "environmentSettings": [{"name": k, "value": v} for k, v in pool.start_task.environment.items()],
        }
    return body


def pool_owner(pool: JSON) -> str | None:
    for item in pool.get("metadata") or []:
        if item.get("name") == OWNER_TAG:
            return str(item.get("value"))
    return None


def with_owner(pool: JSON, owner: str) -> list[JSON]:
    """The pool's metadata with amlops' owner item set to ``owner`` (adoption); other items kept."""
    items = [{"name": str(i.get("name")), "value": str(i.get("value"))} for i in pool.get("metadata") or []]
    return [*(i for i in items if i["name"] != OWNER_TAG), {"name": OWNER_TAG, "value": owner}]


Claim = Literal["ours", "adopt", "notOwned"]


def pool_claim(pool: ManagedPool, current_owner: str | None, owner: str, owner_exists: bool) -> tuple[Claim, str]:
    """Whether amlops may manage an existing pool of ``spec.pools`` for the BatchCompute ``owner``, and why not.

    Its own owner metadata: ours. None, or the owner of an object that no longer exists: taken over only with
    the pool's ``adopt``. Another existing object's (another BatchCompute's pool, a ParallelJob's ``pj-`` pool):
    never."""
    if current_owner == owner:
        return "ours", ""
    if current_owner is not None and owner_exists:
        return "notOwned", f"pool {pool.id} belongs to {current_owner}, which still exists: it is never taken over"
    if pool.adopt:
        return "adopt", ""
    holder = "no owner metadata" if current_owner is None else f"the owner {current_owner}, which no longer exists"
    return "notOwned", f"pool {pool.id} exists with {holder}: set spec.pools[].adopt: true to manage it"


@dataclass(frozen=True)
class PoolPlan:
    create: tuple[ManagedPool, ...] = ()
    resize: tuple[ManagedPool, ...] = ()
    delete: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()  # resizing already: look again later
    adopt: tuple[str, ...] = ()  # write our owner metadata first
    not_owned: tuple[str, ...] = ()  # why a pool of spec.pools cannot be managed

    @property
    def empty(self) -> bool:
        return not (self.create or self.resize or self.delete or self.adopt)

    def describe(self) -> str:
        parts = [f"adopt pool {pid}" for pid in self.adopt]
        parts += [f"create pool {p.id}" for p in self.create]
        parts += [
            f"resize pool {p.id} to {p.target_dedicated_nodes}+{p.target_low_priority_nodes}" for p in self.resize
        ]
        parts += [f"delete pool {pid}" for pid in self.delete]
        return "; ".join(parts)


def foreign_owners(spec: BatchComputeSpec, pools: list[JSON], owner: str) -> set[str]:
    """Owners, other than ``owner``, of existing pools of ``spec.pools``: whether they still exist decides."""
    by_id = {str(p.get("id")): p for p in pools}
    found = {pool_owner(by_id[p.id]) for p in spec.pools if p.id in by_id}
    return {o for o in found if o is not None and o != owner}


def plan_pools(
    spec: BatchComputeSpec, pools: list[JSON], owner: str, live_owners: frozenset[str] = frozenset()
) -> PoolPlan:
    """What to do so the account's pools match ``spec.pools``. Only pools carrying our owner (or adopted) are
    resized; only pools carrying our owner are deleted; ``live_owners`` are the foreign owners that exist."""
    by_id = {str(p.get("id")): p for p in pools}
    wanted = {p.id for p in spec.pools}
    create: list[ManagedPool] = []
    resize: list[ManagedPool] = []
    waiting: list[str] = []
    adopt: list[str] = []
    not_owned: list[str] = []
    for pool in spec.pools:
        observed = by_id.get(pool.id)
        if observed is None:
            create.append(pool)
            continue
        if str(observed.get("state", "active")).lower() == "deleting":
            waiting.append(pool.id)
            continue
        current = pool_owner(observed)
        claim, why = pool_claim(pool, current, owner, current in live_owners)
        if claim == "notOwned":
            not_owned.append(why)
            continue
        if claim == "adopt":
            adopt.append(pool.id)
        targets = (int(observed.get("targetDedicatedNodes") or 0), int(observed.get("targetLowPriorityNodes") or 0))
        if targets != (pool.target_dedicated_nodes, pool.target_low_priority_nodes):
            if str(observed.get("allocationState", "steady")).lower() == "steady":
                resize.append(pool)
            else:
                waiting.append(pool.id)
    delete = tuple(
        pid
        for pid, p in by_id.items()
        if pid not in wanted and pool_owner(p) == owner and str(p.get("state")) != "deleting"
    )
    return PoolPlan(tuple(create), tuple(resize), delete, tuple(waiting), tuple(adopt), tuple(not_owned))


def pools_status(spec: BatchComputeSpec, pools: list[JSON], counts: dict[str, JSON]) -> JSON:
    managed = {p.id for p in spec.pools}
    out: list[JSON] = []
    for pool in sorted(pools, key=lambda p: str(p.get("id"))):
        pid = str(pool.get("id"))
        node_counts: dict[str, int] = {}
        entry = counts.get(pid) or {}
        for priority in ("dedicated", "lowPriority"):
            for state, n in (entry.get(priority) or {}).items():
                if state in NODE_COUNT_STATES and isinstance(n, int):
                    node_counts[state] = node_counts.get(state, 0) + n
        out.append(
            {
                "id": pid,
                "vmSize": pool.get("vmSize"),
                "allocationState": pool.get("allocationState"),
                "currentDedicatedNodes": int(pool.get("currentDedicatedNodes") or 0),
                "currentLowPriorityNodes": int(pool.get("currentLowPriorityNodes") or 0),
                "targetDedicatedNodes": int(pool.get("targetDedicatedNodes") or 0),
                "targetLowPriorityNodes": int(pool.get("targetLowPriorityNodes") or 0),
                "taskSlotsPerNode": int(pool.get("taskSlotsPerNode") or 1),
                "managed": pid in managed,
                "nodeCounts": node_counts,
            }
        )
    return {
        "pools": out,
        "poolCount": len(out),
        "dedicatedNodes": sum(p["currentDedicatedNodes"] for p in out),
        "lowPriorityNodes": sum(p["currentLowPriorityNodes"] for p in out),
    }


def any_resizing(pools: list[JSON]) -> bool:
    return any(str(p.get("allocationState", "steady")).lower() != "steady" for p in pools)
