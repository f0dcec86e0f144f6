"""BatchCompute's ExternalClient: attach an existing Batch account to a workspace (never touch the account),
manage the pools ``spec.pools`` names, report every pool's nodes. Detach on delete.

``account_access`` is also how a ParallelJob reaches the account of the BatchCompute it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.batch.aio import BatchClient

from amlops.api.batchcompute import BatchComputeSpec
from amlops.azure import batch
from amlops.azure.clients import AzureClients
from amlops.external import batchcompute_map as m
from amlops.external.amlcompute import connect, workspace_of
from amlops.external.compute_arm import owner_of
from amlops.external.ports import ObjectReader, SecretReader
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.status import READY, REASON_CREDENTIALS_MISSING, is_true

Mr = Managed[BatchComputeSpec]
REASON_ACCOUNT_MISMATCH = "AttachedAccountMismatch"


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
    ref = spec.batch_credentials.shared_key_secret_ref if spec.batch_credentials else None
    key: str | None = None
    if ref is not None:
        data = await secrets.read(namespace, ref.name)
        if data is None or ref.key not in data:
            raise TerminalError(REASON_CREDENTIALS_MISSING, f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        key = data[ref.key]
    url = m.endpoint(spec, clients.settings.batch_endpoint_template, location)
    return clients.batch(url, m.account_name(spec), key, "default", user=user)


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
    user: str | None = None,
) -> AccountAccess:
    obj = await objects.get("batchcomputes", namespace, name)
    if obj is None:
        return AccountAccess(False, f"BatchCompute {namespace}/{name} does not exist")
    status = obj.get("status") or {}
    if not is_true(status.get("conditions") or [], READY):
        return AccountAccess(False, f"BatchCompute {namespace}/{name} is not Ready")
    spec = BatchComputeSpec.model_validate(obj.get("spec") or {})
    client = await batch_client(clients, secrets, namespace, spec, status.get("clusterLocation"), user)
    return AccountAccess(True, "", m.account_name(spec), client, spec)


class BatchComputeClient:
    def __init__(self, clients: AzureClients, secrets: SecretReader) -> None:
        self._clients = clients
        self._secrets = secrets

    async def observe(self, mr: Mr) -> Observation:
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        poller = self._clients.workspace_poller(key, ml, ws, user=mr.uid)
        _, body = await poller.get(compute_name(mr), self._clients.settings.poll_floor_seconds)
        if body is None:
            body = await ml.get_compute(ws, compute_name(mr))
        if body is None:
            return Observation(resource_exists=False)
        status = m.attached_status(body)
        if m.attached_account(body).lower() != m.account_id(mr.spec).lower():
            message = f"{compute_name(mr)} is attached to {m.attached_account(body)}, not {m.account_id(mr.spec)}"
            return Observation(
                True, owner=owner_of(body), failure=(REASON_ACCOUNT_MISMATCH, message), at_provider=status
            )
        transitional = str(status.get("provisioningState") or "").lower() in ("creating", "updating", "deleting")
        if transitional or mr.deleting:
            return Observation(True, transitional=transitional, owner=owner_of(body), at_provider=status)
        client = await batch_client(
            self._clients, self._secrets, mr.namespace, mr.spec, status.get("clusterLocation"), mr.uid
        )
        pools = await batch.list_pools(client)
        counts = await batch.pool_node_counts(client)
        plan = m.plan_pools(mr.spec, pools, mr.owner)
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
        plan = m.plan_pools(mr.spec, await batch.list_pools(client), mr.owner)
        for pool in plan.create:
            await batch.create_pool(client, m.pool_body(pool, mr.owner))
        for pool in plan.resize:
            await batch.resize_pool(client, pool.id, pool.target_dedicated_nodes, pool.target_low_priority_nodes)
        for pool_id in plan.delete:
            await batch.delete_pool(client, pool_id)
        return None

    async def delete(self, mr: Mr) -> Pending | None:
        """Detach (never delete the account); pools amlops created for this object go with it."""
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        location = mr.status.get("clusterLocation")
        client = await batch_client(self._clients, self._secrets, mr.namespace, mr.spec, location, mr.uid)
        for pool in await batch.list_pools(client):
            if mr.owns(m.pool_owner(pool)) and str(pool.get("state")) != "deleting":
                await batch.delete_pool(client, str(pool["id"]))
        pending = await ml.begin_delete_compute(ws, compute_name(mr), "Detach")
        self._clients.workspace_poller(key, ml, ws, user=mr.uid).invalidate(compute_name(mr))
        return pending
