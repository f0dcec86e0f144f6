"""What the ARM half knows: the seeded subscriptions, resource groups and workspaces, the computes created in
them, their long-running operations, and workspace quotas.

Everything time-dependent is derived from the virtual clock on read: an operation is InProgress until its end
time, a delete takes effect once its operation has ended, a cluster replays its node events up to "now".
"""

from __future__ import annotations

import heapq
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from amlops_emulator.arm import catalogue
from amlops_emulator.arm.compute import (
    AML_COMPUTE,
    BATCH,
    ComputeRecord,
    aml_spec_of,
    batch_account_of,
    enum,
    identity_of,
    obj,
    opt_bool,
    opt_obj,
    opt_str,
    render,
    scale_of,
    tags_of,
)
from amlops_emulator.arm.errors import (
    bad_request,
    conflict,
    parent_not_found,
    resource_group_not_found,
    resource_not_found,
    subscription_not_found,
)
from amlops_emulator.arm.references import check_identities, check_subnet
from amlops_emulator.arm.simulator import Cluster
from amlops_emulator.arm.versions import DEFAULT, ApiVersion
from amlops_emulator.clock import VirtualClock
from amlops_emulator.seed import Seed

PROVIDER = "Microsoft.MachineLearningServices"
_COMPUTE_TYPES = {"amlcompute": AML_COMPUTE, "batch": BATCH}
_COMPUTE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/computes/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Timings:
    """Virtual seconds each long-running operation takes (the real service: about 30 s for a create)."""

    create: float = 30.0
    update: float = 30.0
    patch: float = 10.0
    attach: float = 5.0
    delete: float = 20.0


@dataclass(frozen=True)
class ArmSettings:
    page_size: int = 50  # computes per list page and nodes per listNodes page
    timings: Timings = field(default_factory=Timings)
    # Dedicated vCPU quota per VM family (subscription and location); the catalogue's defaults otherwise.
    family_quotas: dict[str, int] = field(default_factory=dict)
    total_dedicated_cores: int = catalogue.TOTAL_DEDICATED_CORES
    total_low_priority_cores: int = catalogue.TOTAL_LOW_PRIORITY_CORES
    # The key of the VM-size list at api-version 2020-08-01 (and the older ones served): the swagger's
    # "amlCompute" (fidelity trap 1), or "value" as that version's own example ListVMSizesResult.json shows it;
    # the evidence conflicts, so clients must read either.
    vm_sizes_key_2020_08_01: str = "amlCompute"


@dataclass(frozen=True)
class Workspace:
    subscription: str
    resource_group: str
    name: str
    location: str

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/workspaces/{self.name}"
        )


@dataclass
class Operation:
    """An ``Azure-AsyncOperation`` resource: InProgress until ``ends``, then Succeeded or Failed."""

    id: str
    label: str  # the provisioningState the compute shows meanwhile: Creating, Updating or Deleting
    location: str
    started: datetime
    ends: datetime
    error: dict[str, Any] | None = None

    def done(self, now: datetime) -> bool:
        return now >= self.ends

    def status_body(self, now: datetime) -> dict[str, Any]:
        if not self.done(now):
            return {"status": "InProgress"}
        if self.error is not None:
            return {"status": "Failed", "error": self.error}
        return {"status": "Succeeded", "percentComplete": 100.0}


@dataclass
class Quotas:
    """Workspace-level dedicated-core limits set through ``updateQuotas``; absent means the subscription's."""

    by_workspace: dict[tuple[str, str], int] = field(default_factory=dict)  # (workspace id lower, family)


def _hidden(extras: dict[str, Any], version: ApiVersion) -> dict[str, Any]:
    """The later AmlCompute properties that ``version`` does not define."""
    return {name: value for name, value in extras.items() if name not in version.aml_properties}


def _key(*parts: str) -> tuple[str, ...]:
    return tuple(p.lower() for p in parts)


class ArmState:
    def __init__(self, seed: Seed, clock: VirtualClock, settings: ArmSettings | None = None) -> None:
        self.seed = seed
        self.clock = clock
        self.settings = settings or ArmSettings()
        self._subscriptions = {s.id.lower(): s.id for s in seed.subscriptions}
        self._groups = {_key(s.id, rg.name): rg for s in seed.subscriptions for rg in s.resource_groups}
        self._workspaces = {
            _key(sub, rg.name, ws.name): Workspace(sub, rg.name, ws.name, ws.location or rg.location)
            for sub, rg, ws in seed.workspaces()
        }
        self._batch_accounts = {
            _key(sub, rg.name, acct.name): (sub, rg.name, acct.name) for sub, rg, acct in seed.batch_accounts()
        }
        self.computes: dict[tuple[str, ...], ComputeRecord] = {}
        self.operations: dict[str, Operation] = {}
        self.quotas = Quotas()

    def reset(self) -> None:
        self.computes.clear()
        self.operations.clear()
        self.quotas = Quotas()

    # -- lookups (ARM's 404s, outermost scope first) -------------------------------------------------------------
    def subscription(self, subscription: str) -> str:
        canonical = self._subscriptions.get(subscription.lower())
        if canonical is None:
            raise subscription_not_found(subscription)
        return canonical

    def resource_group(self, subscription: str, resource_group: str) -> None:
        self.subscription(subscription)
        if _key(subscription, resource_group) not in self._groups:
            raise resource_group_not_found(resource_group)

    def group_exists(self, subscription: str, resource_group: str) -> bool:
        return _key(subscription, resource_group) in self._groups

    def workspace(self, subscription: str, resource_group: str, name: str) -> Workspace:
        self.resource_group(subscription, resource_group)
        ws = self._workspaces.get(_key(subscription, resource_group, name))
        if ws is None:
            raise parent_not_found(name)
        return ws

    def locations(self) -> list[str]:
        """Every location the seed knows, as NoRegisteredProviderFound lists them."""
        return sorted({ws.location for ws in self._workspaces.values()} | {rg.location for rg in self._groups.values()})

    def all_workspaces(self) -> list[Workspace]:
        return list(self._workspaces.values())

    def workspaces_in(self, subscription: str, location: str) -> list[Workspace]:
        return [
            ws
            for ws in self._workspaces.values()
            if ws.subscription.lower() == subscription.lower() and ws.location.lower() == location.lower()
        ]

    def _settled(self, key: tuple[str, ...]) -> ComputeRecord | None:
        """The compute under ``key`` as of now: gone once its delete operation has succeeded."""
        record = self.computes.get(key)
        if record is None:
            return None
        now = self.clock.now()
        if record.deleted_at is not None and record.deleted_at <= now:
            del self.computes[key]
            return None
        if record.cluster is not None:
            record.cluster.advance(now)
        return record

    def find(self, ws: Workspace, name: str) -> ComputeRecord | None:
        return self._settled(_key(ws.subscription, ws.resource_group, ws.name, name))

    def get(self, ws: Workspace, name: str) -> ComputeRecord:
        record = self.find(ws, name)
        if record is None:
            raise resource_not_found(f"{PROVIDER}/workspaces/computes", f"{ws.name}/{name}", ws.resource_group)
        return record

    def find_by_id(self, compute_id: str) -> ComputeRecord | None:
        """The compute an ARM id names, as of now; ``None`` when it does not exist (or is gone)."""
        match = _COMPUTE_ID.match(compute_id)
        if match is None:
            raise bad_request(f"'{compute_id}' is not a compute id.")
        ws = self.workspace(match["sub"], match["rg"], match["ws"])
        return self.find(ws, match["name"])

    def computes_in(self, ws: Workspace) -> list[ComputeRecord]:
        prefix = _key(ws.subscription, ws.resource_group, ws.name)
        keys = sorted(k for k in self.computes if k[:3] == prefix)
        return [r for k in keys if (r := self._settled(k)) is not None]

    def computes_page(self, ws: Workspace, after: str | None, size: int) -> tuple[list[ComputeRecord], bool]:
        """The workspace's first ``size`` computes in name order whose names come after ``after``, and whether
        more follow. Only the candidates for the page are settled (a compute whose deletion has completed leaves
        the list as it does in ``computes_in``)."""
        prefix = _key(ws.subscription, ws.resource_group, ws.name)
        keys = [k for k in self.computes if k[:3] == prefix and (after is None or k[3] > after.lower())]
        want = size + 1  # one more than the page: is there a next page?
        while True:
            candidates = heapq.nsmallest(want, keys)
            page = [r for k in candidates if (r := self._settled(k)) is not None]
            if len(page) > size or len(candidates) < want:
                return page[:size], len(page) > size
            want *= 2

    def all_in(self, subscription: str, location: str) -> list[ComputeRecord]:
        keys = [k for k, r in self.computes.items() if k[0] == subscription.lower()]
        records = [r for k in keys if (r := self._settled(k)) is not None]
        return [r for r in records if r.location.lower() == location.lower()]

    # -- provisioning state ----------------------------------------------------------------------------------
    def operation_of(self, record: ComputeRecord) -> Operation | None:
        return self.operations.get(record.operation_id) if record.operation_id else None

    def provisioning_state(self, record: ComputeRecord) -> str:
        op = self.operation_of(record)
        if op is None:
            return "Succeeded"
        if not op.done(self.clock.now()):
            return op.label
        return "Failed" if op.error is not None else "Succeeded"

    def provisioning_errors(self, record: ComputeRecord) -> list[dict[str, Any]] | None:
        op = self.operation_of(record)
        if op is None or op.error is None or not op.done(self.clock.now()):
            return None
        return [{"error": op.error}]

    def render(self, record: ComputeRecord, *, initial: bool = False, version: ApiVersion = DEFAULT) -> dict[str, Any]:
        """The compute's body now in ``version``'s shape (``initial``: as a PUT's 201 answers it)."""
        return render(
            record,
            self.provisioning_state(record),
            self.provisioning_errors(record),
            initial=initial,
            version=version,
            modified_on=self.modified_on(record),
        )

    def modified_on(self, record: ComputeRecord) -> datetime:
        """``modifiedOn`` advances when an operation ends, not only when it starts: the recording's GET after the
        create shows it about ten seconds past ``createdOn`` (``…:28.2261097`` → ``…:37.8772733``)."""
        op = self.operation_of(record)
        if op is not None and op.done(self.clock.now()):
            return max(record.modified_on, op.ends)
        return record.modified_on

    def _start(self, record: ComputeRecord, label: str, seconds: float, error: dict[str, Any] | None) -> Operation:
        now = self.clock.now()
        op = Operation(str(uuid.uuid4()), label, record.location, now, now + timedelta(seconds=seconds), error)
        self.operations[op.id] = op
        record.operation_id = op.id
        record.modified_on = now
        return op

    def _busy(self, record: ComputeRecord) -> Operation | None:
        op = self.operation_of(record)
        return op if op is not None and not op.done(self.clock.now()) else None

    # -- PUT ---------------------------------------------------------------------------------------------------
    def put(
        self,
        ws: Workspace,
        name: str,
        body: dict[str, Any],
        failure: dict[str, Any] | None,
        version: ApiVersion = DEFAULT,
    ) -> tuple[ComputeRecord, Operation]:
        """Create, or update by PUT: both answer 201 with a fresh operation (fidelity trap 2)."""
        properties = obj(body.get("properties"), "properties")
        compute_type = enum(properties.get("computeType"), _COMPUTE_TYPES, "properties.computeType", "")
        if not compute_type:
            raise bad_request("'properties.computeType' is required: AmlCompute or Batch.")
        location = opt_str(body.get("location"), "location") or ws.location
        tags = tags_of(body.get("tags"))
        description = opt_str(properties.get("description"), "properties.description")
        existing = self.find(ws, name)
        if existing is not None and existing.compute_type != compute_type:
            raise bad_request(
                f"The compute '{name}' is of type {existing.compute_type}; its type cannot change to {compute_type}."
            )
        identity = identity_of(body.get("identity"), existing.identity if existing else None)
        spec = aml_spec_of(properties.get("properties"), version) if compute_type == AML_COMPUTE else None
        disable_local_auth = (
            opt_bool(properties.get("disableLocalAuth"), "properties.disableLocalAuth")
            if "disableLocalAuth" in version.compute_properties
            else None
        )
        compute_id = f"{ws.arm_id}/computes/{name}"
        check_identities(compute_id, identity, self.group_exists)
        check_subnet(compute_id, spec.subnet if spec else None, self.group_exists)
        live = existing is not None and existing.cluster is not None and existing.aml is not None
        if spec is not None and live and existing is not None and existing.aml is not None:
            # The service silently ignores a vmSize change on an existing cluster (azure-rest-api-specs #18889);
            # priority and subnet cannot change under live nodes either.
            kept = existing.aml
            spec = replace(
                kept,
                scale=spec.scale,
                remote_login=spec.remote_login,
                user_account=spec.user_account,
                # Emulator policy (no public evidence either way): what this version cannot see stays as a newer
                # client set it, so an old client's PUT does not clear properties it has no words for.
                extras={**_hidden(kept.extras, version), **spec.extras},
            )
        if existing is not None and (busy := self._busy(existing)) is not None:
            same = (existing.aml, existing.tags, existing.description) == (spec, tags, description)
            if busy.label == "Creating" and same and spec is not None:
                return existing, busy  # a retried PUT joins the running operation
            raise conflict(f"The compute '{name}' is {busy.label.lower()}; another operation is in progress on it.")
        if spec is None:
            return self._attach(ws, name, properties, location, tags, description, identity, existing, failure)
        now = self.clock.now()
        if live and existing is not None and existing.cluster is not None:
            existing.aml, existing.tags, existing.description, existing.identity = spec, tags, description, identity
            if disable_local_auth is not None:
                existing.disable_local_auth = disable_local_auth
            existing.cluster.set_scale(now, spec.scale)
            return existing, self._start(existing, "Creating", self.settings.timings.update, failure)
        record = existing or ComputeRecord(
            arm_id=f"{ws.arm_id}/computes/{name}",
            name=name,
            workspace_name=ws.name,
            compute_type=AML_COMPUTE,
            location=location,
            created_on=now,
            modified_on=now,
        )
        record.aml, record.tags, record.description, record.identity = spec, tags, description, identity
        record.location, record.disable_local_auth = location, disable_local_auth
        self.computes[_key(ws.subscription, ws.resource_group, ws.name, name)] = record
        error = failure or _size_check(spec.vm_size) or self._quota_check(ws, record)
        op = self._start(record, "Creating", self.settings.timings.create, error)
        record.cluster = None
        if error is None:
            record.cluster = Cluster(
                name=record.arm_id,
                vcpus=spec.vm_size.vcpus,
                low_priority=spec.low_priority,
                scale=spec.scale,
                started=op.ends,
                capacity=self._capacity_for(ws, record),
            )
        return record, op

    def _attach(
        self,
        ws: Workspace,
        name: str,
        properties: dict[str, Any],
        location: str,
        tags: dict[str, str] | None,
        description: str | None,
        identity: dict[str, Any] | None,
        existing: ComputeRecord | None,
        failure: dict[str, Any] | None,
    ) -> tuple[ComputeRecord, Operation]:
        sub, rg, account = batch_account_of(properties.get("resourceId"))
        found = self._batch_accounts.get(_key(sub, rg, account))
        if found is None:
            raise bad_request(
                f"The Batch account '{account}' in resource group '{rg}' was not found.", code="InvalidResourceId"
            )
        resource_id = (
            f"/subscriptions/{found[0]}/resourceGroups/{found[1]}/providers/Microsoft.Batch/batchAccounts/{found[2]}"
        )
        if existing is not None and self.provisioning_state(existing) != "Failed":
            # Attaching is not idempotent (AVM notes "Attaching a compute is not idempotent and will fail").
            raise conflict(f"The compute '{name}' is already attached to this workspace.")
        now = self.clock.now()
        record = ComputeRecord(
            arm_id=f"{ws.arm_id}/computes/{name}",
            name=name,
            workspace_name=ws.name,
            compute_type=BATCH,
            location=location,
            created_on=now,
            modified_on=now,
            tags=tags,
            identity=identity,
            description=description,
            resource_id=resource_id,
        )
        self.computes[_key(ws.subscription, ws.resource_group, ws.name, name)] = record
        return record, self._start(record, "Creating", self.settings.timings.attach, failure)

    # -- PATCH -------------------------------------------------------------------------------------------------
    def patch(
        self,
        ws: Workspace,
        name: str,
        body: dict[str, Any],
        failure: dict[str, Any] | None,
        version: ApiVersion = DEFAULT,
    ) -> tuple[ComputeRecord, Operation | None]:
        """Scale settings and identity. ``None`` operation: nothing changed, so no Azure-AsyncOperation."""
        record = self.get(ws, name)
        properties = opt_obj(body.get("properties"), "properties") or {}
        # ClusterUpdateParameters puts scaleSettings at properties.scaleSettings up to 2021-04-01 and at
        # properties.properties.scaleSettings from 2021-07-01 (ScaleSettingsInformation). The other place is an
        # unknown property for that version, ignored as ARM RPs do.
        if version.nested_patch:
            properties = opt_obj(properties.get("properties"), "properties.properties") or {}
        scale_body = properties.get("scaleSettings")
        new_identity = identity_of(body.get("identity"), record.identity)
        check_identities(record.arm_id, new_identity, self.group_exists)
        new_tags = tags_of(body["tags"]) if "tags" in body else record.tags
        busy = self._busy(record)
        if busy is not None:
            raise conflict(f"The compute '{name}' is {busy.label.lower()}; another operation is in progress on it.")
        new_scale = None
        if scale_body is not None:
            if record.aml is None or record.cluster is None:
                raise conflict(f"The compute '{name}' has no running cluster whose scale settings could change.")
            new_scale = scale_of(scale_body, record.aml.scale)
        changed = (
            (new_scale is not None and record.aml is not None and new_scale != record.aml.scale)
            or new_identity != record.identity
            or new_tags != record.tags
        )
        if not changed:
            return record, None
        record.identity, record.tags = new_identity, new_tags
        if new_scale is not None and record.aml is not None and record.cluster is not None:
            record.aml = replace(record.aml, scale=new_scale)
            record.cluster.set_scale(self.clock.now(), new_scale)
        return record, self._start(record, "Updating", self.settings.timings.patch, failure)

    # -- DELETE ------------------------------------------------------------------------------------------------
    def delete(
        self, ws: Workspace, name: str, action: str, failure: dict[str, Any] | None
    ) -> tuple[ComputeRecord, Operation]:
        record = self.get(ws, name)
        busy = self._busy(record)
        if busy is not None and busy.label == "Deleting":
            return record, busy  # a repeated DELETE joins the running one
        if record.compute_type == BATCH and action == "Delete":
            raise bad_request(
                f"The compute '{name}' is an attached Batch account: it can only be detached "
                "(underlyingResourceAction=Detach)."
            )
        if record.compute_type == AML_COMPUTE and action == "Detach":
            raise bad_request(f"The compute '{name}' was created by Azure Machine Learning: use Delete.")
        op = self._start(record, "Deleting", self.settings.timings.delete, failure)
        if failure is None:
            record.deleted_at = op.ends
        return record, op

    # -- quotas and usage --------------------------------------------------------------------------------------
    def family_limit(self, family: catalogue.VmFamily) -> int:
        return self.settings.family_quotas.get(family.name, family.default_quota)

    def workspace_limit(self, ws_id: str, family: catalogue.VmFamily) -> int:
        return self.quotas.by_workspace.get((ws_id.lower(), family.name), self.family_limit(family))

    def _available_cores(self, ws: Workspace, record: ComputeRecord) -> int:
        """vCPUs ``record`` may still use: the low-priority total's headroom, or the tightest dedicated quota's."""
        return min(limit - used for _, limit, used in self._quotas_for(ws, record))

    def _quotas_for(self, ws: Workspace, record: ComputeRecord) -> list[tuple[str, int, int]]:
        """(scope, limit, vCPUs the other clusters hold) of each quota ``record`` counts against: the subscription's
        low-priority total, or its dedicated total, the VM family's limit and the workspace's limit.

        One pass over the location's clusters, counting only those holding nodes: this runs for every create
        (and every cluster's advance), so a workspace of a thousand computes must not cost a thousand x three.
        """
        assert record.aml is not None
        low_priority = record.aml.low_priority
        family = catalogue.find_family(record.aml.vm_size.family)
        ws_prefix = ws.arm_id.lower() + "/"
        in_tier = in_family = in_workspace = 0
        for r in self._records_for_quota(ws.subscription, record.location):
            if r is record or r.cluster is None or r.aml is None or r.aml.low_priority != low_priority:
                continue
            used = r.cluster.cores_in_use()
            if not used:
                continue
            in_tier += used
            if family is not None and r.aml.vm_size.family == family.name:
                in_family += used
                if r.arm_id.lower().startswith(ws_prefix):
                    in_workspace += used
        if low_priority or family is None:
            return [("lowPriority", self.settings.total_low_priority_cores, in_tier)]
        return [
            ("total", self.settings.total_dedicated_cores, in_tier),
            ("family", self.family_limit(family), in_family),
            ("workspace", self.workspace_limit(ws.arm_id, family), in_workspace),
        ]

    def _records_for_quota(self, subscription: str, location: str) -> list[ComputeRecord]:
        # No settling here: this runs inside a cluster's own advance(), and must not recurse into clusters.
        subscription, location = subscription.lower(), location.lower()
        return [r for k, r in self.computes.items() if k[0] == subscription and r.location.lower() == location]

    def _capacity_for(self, ws: Workspace, record: ComputeRecord) -> Callable[[Cluster], int]:
        def capacity(cluster: Cluster) -> int:
            return self._available_cores(ws, record) - cluster.cores_in_use()

        return capacity

    def _quota_check(self, ws: Workspace, record: ComputeRecord) -> dict[str, Any] | None:
        """Quota is checked when the create runs and surfaces as a Failed operation, never a synchronous 4xx, with
        code BadRequest and the ML RP's message naming the quota that binds: the subscription's total
        (Azure/mlops-v2#81: Terraform "waiting for creation of Compute Cluster ... Code="BadRequest"") or the
        family's (dotnet/machinelearning-modelbuilder#2140). A workspace's own limit (updateQuotas) is worded
        like the family's: no public text of that refusal is known.

        Dedicated clusters only, at least one node even with minNodeCount 0: a low-priority cluster is created
        whatever its quota, and only its nodes fail to come (a public account of real creates, 2026: "A
        *low-priority* cluster is not [quota-checked at create], and creates happily whatever the quota")."""
        assert record.aml is not None
        if record.aml.low_priority:
            return None
        size = record.aml.vm_size
        nodes = max(1, record.aml.scale.min_nodes)
        needed = nodes * size.vcpus
        family = catalogue.find_family(size.family)
        assert family is not None
        # The quota that leaves the least room names the refusal.
        scope, limit, used = min(self._quotas_for(ws, record), key=lambda q: q[1] - q[2])
        if needed <= limit - used:
            return None
        whose = "workspace" if scope == "workspace" else "subscription"
        quota = "total vCPU quota" if scope == "total" else f"{family.quota_label} vCPU quota"
        increase = "total vCPU quota" if scope == "total" else "family quota"
        return {
            "code": "BadRequest",
            "message": (
                f"The specified {whose} has a {quota} of {limit} and cannot accomodate for at least {nodes} "
                f"requested managed compute nodes which maps to {needed} vCPUs. Talk to your Subscription Admin "
                "or refer to https://docs.microsoft.com/azure/machine-learning/how-to-manage-quotas"
                f"#request-quota-increases to increase the {increase}"
            ),
        }


def _size_check(size: catalogue.VmSize) -> dict[str, Any] | None:
    """A size the location does not offer: the create fails with InvalidPropertyValue, the supported sizes in the
    details, upper-cased and comma-separated (Azure/MachineLearningNotebooks#1169, microsoft/az-deep-batch-score
    #4)."""
    if size.supported:
        return None
    return {
        "code": "InvalidPropertyValue",
        "message": (
            f"The specified value {size.name} for property Cluster.Properties.VMSize is not a supported VM size. "
            "See additional details for supported VM sizes."
        ),
        "details": [{"code": "SupportedVMSizes", "message": ",".join(sorted(s.name.upper() for s in catalogue.SIZES))}],
    }
