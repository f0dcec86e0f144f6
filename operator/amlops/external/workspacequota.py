"""WorkspaceQuota's ExternalClient: observe lists the location's quotas, usages and VM sizes; update POSTs
``updateQuotas`` with the families that differ; create and delete never run (a workspace quota always exists in
Azure, and ``deletionPolicy: Orphan`` leaves it as it is). The mappings are pure (``workspacequota_map``)."""

from __future__ import annotations

from amlops import metrics
from amlops.api.workspacequota import WorkspaceQuotaSpec
from amlops.azure.clients import AzureClients
from amlops.external import workspacequota_map as m
from amlops.external.amlcompute import workspace_of
from amlops.external.amlcompute_map import vm_sizes_of
from amlops.external.credentials import connect
from amlops.external.ports import SecretReader
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.status import now_iso

Mr = Managed[WorkspaceQuotaSpec]


class WorkspaceQuotaClient:
    def __init__(self, clients: AzureClients, secrets: SecretReader) -> None:
        self._clients = clients
        self._secrets = secrets

    async def observe(self, mr: Mr) -> Observation:
        _, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        reads = self._clients.locations
        location = mr.spec.location or await reads.workspace_location(ml, ws)
        quotas = await ml.quotas(location)  # not shared: it must show this object's own update at once
        usages = await reads.usages(ml, location)
        sizes = vm_sizes_of(await reads.vm_sizes(ml, location))
        families = m.families(mr.spec, quotas, usages, ws.arm_id, ws.subscription_id)
        metrics.record_quota(ws.subscription_id, location, ws.name, families)
        items, changes = m.diff(mr.spec, quotas, ws.arm_id)
        conditions = mr.status.get("conditions") or []
        refused = m.standing_refusal(mr.spec, conditions, mr.generation, quotas, ws.subscription_id) if items else None
        repairs, contended = m.drift_repairs(mr.status, mr.generation, bool(items), changes)
        status = {
            "location": location,
            "families": families,
            **m.headroom(families),
            **m.low_priority_total(usages),
            "vmSizes": [m.vm_size(s) for s in sizes],
            "lastSyncTime": now_iso(),
            "driftRepairs": repairs,
        }
        # A workspace quota has no tags to carry an owner: the object that declares it is its owner.
        return Observation(
            resource_exists=True,
            resource_up_to_date=not items,
            owner=mr.owner,
            at_provider=status,
            failure=refused or contended,
            diff="; ".join(changes),
            intent=items,
        )

    async def create(self, mr: Mr) -> Pending | None:
        return None  # observe always finds the quota: it exists for every workspace and family

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        """Apply the differing limits in one call; Azure's per-item status is the verdict (``Success`` or why not:
        Stalled with Azure's own code, e.g. ``InvalidQuotaExceedsSubscriptionLimit``)."""
        items = observation.intent or []
        if not items:
            return None
        _, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        location = str(observation.at_provider.get("location") or mr.spec.location)
        results = await ml.update_quotas(location, items)
        if refused := m.refusal(results, [f.vm_family for f in mr.spec.limits]):
            raise TerminalError(*refused)
        return None

    async def delete(self, mr: Mr) -> Pending | None:
        return None  # never called: deletionPolicy Orphan is the only one (the quota stays as it is)

    async def owner_exists(self, owner: str) -> bool:
        return True

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        return ()
