"""WorkspaceQuota: a workspace's vCPU quota per VM family, declared (azureml-core ``AmlCompute.update_quotas``,
``list_quotas``, ``list_usages``, ``supported_vmsizes``).

A workspace quota is a setting of Azure, not a resource amlops creates: deleting the object leaves the quota as
it is (``deletionPolicy: Orphan``, the only value). Restoring "the previous limit" would need amlops to know it
was the only writer since; it cannot, so it changes nothing it did not declare.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from amlops.api.common import LOCATION, ApiModel, Credentials, ManagementPolicy, StatusBase, WorkspaceRef, frozen
from amlops.api.kind import AGE_COLUMN, READY_COLUMN, REASON_COLUMN, CustomResource, Definition, Names, PrinterColumn

# Azure's VM family names as the quotas and vmSizes APIs spell them: "standardDSv2Family" (vmSizes'
# ``family``), "StandardDSv2Family" (quotas' ``name.value``), "standardNCASv3_T4Family".
VM_FAMILY = r"^[Ss]tandard[A-Za-z0-9_]{1,48}Family$"
INT32_MAX = 2**31 - 1
MAX_LIMITS = 64
IMMUTABLE = {
    "workspace": "create a WorkspaceQuota for the other workspace (this one's quota stays as it is)",
    "location": "create a WorkspaceQuota for the other location (this one's quota stays as it is)",
}


class FamilyLimit(ApiModel):
    vm_family: str = Field(
        pattern=VM_FAMILY,
        max_length=64,
        description="Seed: update_quotas vm_family. Azure's VM family name, as the quotas API spells it "
        "(e.g. standardDSv2Family; the first letter's case does not matter). Azure: the last segment of "
        "QuotaBaseProperties.id (.../workspaces/{ws}/quotas/{family}).",
    )
    limit: int = Field(
        ge=0,
        le=INT32_MAX,
        json_schema_extra={"format": "int32"},
        description="Seed: update_quotas limit. Dedicated vCPUs of the family the workspace may use. Azure: "
        "QuotaBaseProperties.limit; it may not exceed the subscription's limit of the family "
        "(InvalidQuotaExceedsSubscriptionLimit) nor fall below what the workspace's clusters hold "
        "(InvalidQuotaBelowClusterMinimum).",
    )


_UNIQUE_FAMILIES: JsonDict = {
    "rule": "self.all(a, self.exists_one(b, b.vmFamily.lowerAscii() == a.vmFamily.lowerAscii()))",
    "message": "each vmFamily may appear once in limits (names are compared ignoring case)",
}


class WorkspaceQuotaSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=frozen(IMMUTABLE))

    workspace: WorkspaceRef = Field(description="Seed: workspace. The Azure ML workspace whose quota this sets.")
    credentials: Credentials | None = Field(default=None, description="Azure credential for this resource.")
    location: str | None = Field(
        default=None,
        pattern=LOCATION,
        description="Seed: location. Azure region of the quota (quotas are per location); defaults to the "
        "workspace's (immutable). Azure: {location} of POST .../locations/{location}/updateQuotas.",
    )
    limits: list[FamilyLimit] = Field(
        min_length=1,
        max_length=MAX_LIMITS,
        json_schema_extra={"x-kubernetes-validations": [_UNIQUE_FAMILIES]},
        description="Seed: update_quotas, once per family. The workspace-level dedicated vCPU limit of each VM "
        "family named; families not named keep whatever limit they have. Azure: QuotaUpdateParameters.value.",
    )
    management_policy: ManagementPolicy = Field(
        default="Manage", description="Manage sets the limits in Azure; ObserveOnly only reads and reports."
    )
    deletion_policy: Literal["Orphan"] = Field(
        default="Orphan",
        description="Orphan (the only value): deleting the WorkspaceQuota leaves the workspace's quota as it is in "
        "Azure. amlops does not restore an earlier limit: it cannot know that no one else set one since.",
    )


class FamilyQuota(ApiModel):
    vm_family: str = Field(description="The family, as spec.limits names it.")
    workspace_limit: int | None = Field(
        default=None, description="Seed: list_quotas. The workspace's dedicated vCPU limit in Azure now."
    )
    subscription_limit: int | None = Field(
        default=None, description="Seed: list_quotas. The subscription's dedicated vCPU limit of the family."
    )
    dedicated_usage: int | None = Field(
        default=None, description="Seed: list_usages. Dedicated vCPUs of the family in use in the subscription."
    )
    workspace_dedicated_usage: int | None = Field(
        default=None, description="Seed: list_usages. Dedicated vCPUs of the family in use in this workspace."
    )
    low_priority_usage: int | None = Field(
        default=None, description="Seed: list_usages. Low-priority vCPUs of the family in use in the subscription."
    )
    headroom: int | None = Field(
        default=None,
        description="Dedicated vCPUs of the family a cluster of this workspace may still add: the smaller of "
        "workspace limit minus workspace usage and subscription limit minus subscription usage.",
    )


class VmSize(ApiModel):
    """One entry of ``supported_vmsizes`` (Azure's ``VirtualMachineSize``, in its own field names)."""

    name: str = Field(description="VM size name, e.g. Standard_DS3_v2.")
    family: str | None = Field(default=None, description="Its VM family, e.g. standardDSv2Family.")
    vcpus: int | None = Field(default=None, alias="vCPUs", description="vCPUs of one VM.")
    memory_gb: float | None = Field(default=None, alias="memoryGB", description="Memory of one VM in GB.")
    gpus: int | None = Field(default=None, description="GPUs of one VM.")
    max_resource_volume_mb: int | None = Field(
        default=None, alias="maxResourceVolumeMB", description="Resource (temporary) disk in MB."
    )
    low_priority_capable: bool | None = Field(default=None, description="Whether low-priority VMs of it exist.")


class DriftRepairs(ApiModel):
    generation: int = Field(description="The metadata.generation whose limits were applied again.")
    count: int = Field(description="How many times, after they had been applied.")


class WorkspaceQuotaStatus(StatusBase):
    location: str | None = Field(default=None, description="The location the quota was read and set in.")
    families: list[FamilyQuota] = Field(
        default_factory=list, description="Per family of spec.limits, in its order: limits, usage and headroom."
    )
    tightest_family: str | None = Field(default=None, description="The family of spec.limits with the least headroom.")
    min_headroom: int | None = Field(default=None, description="The headroom of tightestFamily, in vCPUs.")
    headroom_summary: str | None = Field(
        default=None, description='Every family\'s headroom and workspace limit: "standardDSv2Family 16/24, ...".'
    )
    low_priority_limit: int | None = Field(
        default=None, description="Seed: list_usages. The subscription's total low-priority vCPU limit."
    )
    low_priority_usage: int | None = Field(
        default=None, description="Seed: list_usages. Low-priority vCPUs in use in the subscription."
    )
    vm_sizes: list[VmSize] = Field(
        default_factory=list, description="Seed: supported_vmsizes. The VM sizes AmlCompute supports in the location."
    )
    last_sync_time: datetime | None = Field(default=None, description="When amlops last read the quotas from Azure.")
    drift_repairs: DriftRepairs | None = Field(
        default=None,
        description="How often this generation's limits were found changed in Azure after they had been applied, "
        "and applied again. Past 3 the object is Stalled QuotaContended and stops writing: another writer (a "
        "second WorkspaceQuota for the same workspace and family, or a tool outside amlops) keeps changing them. "
        "A spec change starts the count again.",
    )


class WorkspaceQuota(CustomResource):
    spec_model: ClassVar = WorkspaceQuotaSpec
    status_model: ClassVar = WorkspaceQuotaStatus
    definition: ClassVar = Definition(
        names=Names("WorkspaceQuota", "workspacequotas", "workspacequota", ("wsq",)),
        description="The vCPU quota of an Azure ML workspace per VM family (azureml-core AmlCompute.update_quotas), "
        "with the location's limits, usage and VM sizes. Deleting it leaves the quota as it is in Azure.",
        printer_columns=(
            PrinterColumn("Workspace", ".spec.workspace.name"),
            PrinterColumn("Location", ".status.location"),
            PrinterColumn("Tightest", ".status.tightestFamily", description="The family with the least headroom"),
            PrinterColumn(
                "Headroom", ".status.minHeadroom", type="integer", description="vCPUs a cluster may still add there"
            ),
            PrinterColumn(
                "Families", ".status.headroomSummary", description="Headroom/workspace limit per family", priority=1
            ),
            READY_COLUMN,
            REASON_COLUMN,
            AGE_COLUMN,
        ),
    )
