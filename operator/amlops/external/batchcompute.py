"""BatchCompute's ExternalClient: attach an existing Batch account to a workspace (never touch the account),
manage the pools ``spec.pools`` names, report every pool's nodes. Detach on delete.

``account_access`` is also how a ParallelJob reaches the account of the BatchCompute it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.batch.aio import BatchClient

from amlops.api.batchcompute import BatchComputeSpec
from amlops.azure import batch
from amlops.azure.clients import AzureClients
from amlops.azure.errors import INSECURE_ENDPOINT
from amlops.external import batchcompute_map as m
from amlops.external.amlcompute import read_compute, workspace_of
from amlops.external.backends import BATCH, parallel_jobs_on
from amlops.external.compute_arm import foreign_type, owner_of
from amlops.external.credentials import connect, resolve, secret_value
from amlops.external.ownership import owner_exists
from amlops.external.ports import ObjectReader, SecretReader
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.reconcile.policy import nothing_left
from amlops.status import READY, REASON_CREDENTIALS_MISSING, is_true

Mr = Managed[BatchComputeSpec]
REASON_ACCOUNT_MISMATCH = "AttachedAccountMismatch"
REASON_ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
REASON_NOT_OWNED = "NotOwned"
# A spec that cannot reach the account's data plane could never have created a pool there.
DATA_PLANE_NEVER_REACHED = frozenset({REASON_ENDPOINT_NOT_ALLOWED, REASON_CREDENTIALS_MISSING, INSECURE_ENDPOINT})


def compute_name(mr: Mr) -> str:
    return mr.spec.compute_name or mr.name


async def batch_client(
    clients: AzureClients,
    secrets: SecretReader,
    namespace: str,
    spec: BatchComputeSpec,
    location: str | None,
    user: str | None = None,
) -> BatchClient:
    """The account's data-plane client: its shared key when ``batchCredentials`` names one, else Microsoft Entra
    tokens of the resource's own credential (the same one its ARM calls use), sent only to the account's own
    endpoint."""
    template = clients.settings.batch_endpoint_template
    url = m.endpoint(spec, template, location)
    if not m.endpoint_allowed(url, template, m.account_name(spec)):
        raise TerminalError(
            REASON_ENDPOINT_NOT_ALLOWED,
            f"spec.endpoint {url} is not the endpoint of Batch account {m.account_name(spec)} "
            f"(the operator allows {template.replace('{account}', m.account_name(spec))})",
        )
    ref = spec.batch_credentials.shared_key_secret_ref if spec.batch_credentials else None
    if ref is not None:
        key = await secret_value(secrets, namespace, ref.name, ref.key, REASON_CREDENTIALS_MISSING, protect=True)
        return clients.batch(url, m.account_name(spec), key, user=user)
    credential = await resolve(clients, secrets, namespace, spec)
    return clients.batch(url, m.account_name(spec), None, credential.key, credential.secret, user=user)


@dataclass(frozen=True)
class AccountAccess:
    """What a ParallelJob needs of its BatchCompute: a client for the account, and whether it is Ready."""

    ready: bool
    message: str
    account: str = ""
    client: BatchClient | None = None
    spec: BatchComputeSpec | None = None


async def account_access(
    clients: AzureClients,
    secrets: SecretReader,
    objects: ObjectReader,
    namespace: str,
    name: str,
    *,
    ready_only: bool = True,
    user: str | None = None,
) -> AccountAccess:
    """The account of BatchCompute ``namespace/name``; with ``ready_only`` False a client also while it is not
    Ready (throttled, resizing, being deleted): its spec and credentials are enough to clean up a job."""
    obj = await objects.get("batchcomputes", namespace, name)
    if obj is None:
        return AccountAccess(False, f"BatchCompute {namespace}/{name} does not exist")
    status = obj.get("status") or {}
    ready = is_true(status.get("conditions") or [], READY)
    if ready_only and not ready:
        return AccountAccess(False, f"BatchCompute {namespace}/{name} is not Ready")
    spec = BatchComputeSpec.model_validate(obj.get("spec") or {})
    client = await batch_client(clients, secrets, namespace, spec, status.get("clusterLocation"), user)
    return AccountAccess(ready, "", m.account_name(spec), client, spec)


class BatchComputeClient:
    def __init__(self, clients: AzureClients, secrets: SecretReader, objects: ObjectReader) -> None:
        self._clients = clients
        self._secrets = secrets
        self._objects = objects

    async def owner_exists(self, owner: str) -> bool:
        return await owner_exists(self._objects, owner)

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        """The ParallelJobs of this namespace that run on this BatchCompute: each must delete its Batch job and
        pool through this account before the account's access goes (a namespace deletion deletes all at once)."""
        return parallel_jobs_on(await self._objects.list("paralleljobs", mr.namespace), mr.name, BATCH)

    async def _plan(self, mr: Mr, pools: list[dict[str, Any]]) -> m.PoolPlan:
        foreign = m.foreign_owners(mr.spec, pools, mr.owner)
        live = frozenset([o for o in foreign if await owner_exists(self._objects, o)])
        return m.plan_pools(mr.spec, pools, mr.owner, live)

    async def _attached(self, mr: Mr) -> dict[str, Any] | None:
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        return await read_compute(
            self._clients, key, ml, mr, compute_name(mr), self._clients.settings.poll_floor_seconds
        )

    async def _observe_deleting(self, mr: Mr) -> Observation:
        """What is left to delete: the attach, and the pools amlops created for this object, which live in the
        account, not under the workspace: a workspace that is gone (or a compute detached from outside) leaves
        them to delete all the same."""
        try:
            body = await self._attached(mr)
        except TerminalError as e:
            if not nothing_left(e.reason):
                raise
            body = None
        if body is not None and (other := foreign_type(body, "Batch")) is not None:
            return Observation(True, foreign_type=other, owner=owner_of(body))
        status = m.attached_status(body) if body is not None else {}
        location = status.get("clusterLocation") or mr.status.get("clusterLocation")
        pools = await self._own_pools(mr, location)
        if body is None:
            return Observation(bool(pools), owner=mr.owner)
        transitional = str(status.get("provisioningState") or "").lower() == "deleting" and not pools
        return Observation(True, transitional=transitional, owner=owner_of(body), at_provider=status)

    async def _own_pools(self, mr: Mr, location: str | None) -> list[dict[str, Any]]:
        """The pools amlops created for this object and not already going. None can exist when this spec could
        never reach the data plane (its endpoint is not the account's, or its shared-key Secret never existed: a
        used one is kept by the in-use finalizer): then the detach goes ahead instead of waiting for ever."""
        try:
            client = await batch_client(self._clients, self._secrets, mr.namespace, mr.spec, location, mr.uid)
            pools = await batch.list_pools(client)
        except TerminalError as e:
            if e.reason in DATA_PLANE_NEVER_REACHED:
                return []
            raise
        return [p for p in pools if mr.owns(m.pool_owner(p)) and str(p.get("state")) != "deleting"]

    async def observe(self, mr: Mr) -> Observation:
        if mr.deleting:
            return await self._observe_deleting(mr)
        body = await self._attached(mr)
        if body is None:
            return Observation(resource_exists=False)
        if (other := foreign_type(body, "Batch")) is not None:
            return Observation(True, foreign_type=other, owner=owner_of(body))
        status = m.attached_status(body)
        if m.attached_account(body).lower() != m.account_id(mr.spec).lower():
            message = f"{compute_name(mr)} is attached to {m.attached_account(body)}, not {m.account_id(mr.spec)}"
            return Observation(
                True, owner=owner_of(body), failure=(REASON_ACCOUNT_MISMATCH, message), at_provider=status
            )
        if (failed := m.attach_failure(body)) is not None:
            # A Failed attach never becomes usable on its own: Stalled with Azure's error (provisioningErrors).
            return Observation(True, owner=owner_of(body), failure=failed, at_provider=status)
        transitional = str(status.get("provisioningState") or "").lower() in ("creating", "updating", "deleting")
        if transitional:
            return Observation(True, transitional=transitional, owner=owner_of(body), at_provider=status)
        client = await batch_client(
            self._clients, self._secrets, mr.namespace, mr.spec, status.get("clusterLocation"), mr.uid
        )
        pools = await batch.list_pools(client)
        counts = await batch.pool_node_counts(client)
        plan = await self._plan(mr, pools)
        status.update(m.pools_status(mr.spec, pools, counts))
        resizing = m.any_resizing(pools)
        return Observation(
            resource_exists=True,
            resource_up_to_date=plan.empty and not plan.waiting,
            transitional=bool(plan.waiting),
            transitional_reason="Resizing",
            settling=resizing,
            message=f"{status['poolCount']} pools, {status['dedicatedNodes']} dedicated and "
            f"{status['lowPriorityNodes']} low-priority nodes",
            failure=(REASON_NOT_OWNED, "; ".join(plan.not_owned)) if plan.not_owned else None,
            owner=owner_of(body),
            at_provider=status,
            diff=plan.describe(),
        )

    async def create(self, mr: Mr) -> Pending | None:
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        location = await ml.workspace_location(ws)
        pending = await ml.begin_put_compute(
            ws, compute_name(mr), m.attach_body(mr.spec, owner=mr.owner, location=location)
        )
        self._clients.workspace_poller(key, ml, ws, user=mr.uid).invalidate(compute_name(mr))
        return pending

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        location = observation.at_provider.get("clusterLocation")
        client = await batch_client(self._clients, self._secrets, mr.namespace, mr.spec, location, mr.uid)
        pools = await batch.list_pools(client)
        plan = await self._plan(mr, pools)
        by_id = {str(p.get("id")): p for p in pools}
        for pool_id in plan.adopt:  # ours from now on: resized, and deleted when it leaves spec.pools or on detach
            found = by_id[pool_id]
            await batch.set_pool_metadata(client, pool_id, m.with_owner(found, mr.owner), found.get("eTag"))
        for pool in plan.create:
            await batch.create_pool(client, m.pool_body(pool, mr.owner))
        for pool in plan.resize:
            await batch.resize_pool(client, pool.id, pool.target_dedicated_nodes, pool.target_low_priority_nodes)
        for pool_id in plan.delete:
            await batch.delete_pool(client, pool_id)
        return None

    async def delete(self, mr: Mr) -> Pending | None:
        """Detach (never delete the account); pools amlops created for this object go with it, first (a missing
        workspace then ends the deletion: nothing is attached under it)."""
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        location = mr.status.get("clusterLocation")
        pools = await self._own_pools(mr, location)
        if pools:
            client = await batch_client(self._clients, self._secrets, mr.namespace, mr.spec, location, mr.uid)
            for pool in pools:
                await batch.delete_pool(client, str(pool["id"]))
        pending = await ml.begin_delete_compute(ws, compute_name(mr), "Detach")
        self._clients.workspace_poller(key, ml, ws, user=mr.uid).invalidate(compute_name(mr))
        return pending
