"""BatchCompute: an existing Azure Batch account attached to a workspace (azureml-core ``BatchCompute``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from amlops.api.common import (
    AZURE_NAME,
    COMPUTE_NAME,
    COMPUTE_NAME_RULE,
    ApiModel,
    Credentials,
    ManagementPolicy,
    ProvisioningError,
    SecretRef,
    StatusBase,
    TagValue,
    WorkspaceRef,
    data_key,
    deletion_protection_field,
    frozen,
    tags_field,
)
from amlops.api.kind import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    CustomResource,
    Definition,
    Names,
    PrinterColumn,
    Rule,
)

BATCH_ACCOUNT_ID = (
    r"(?i)^/subscriptions/[^/?#]+/resourceGroups/[^/?#]+/providers/Microsoft\.Batch/batchAccounts/[a-z0-9]{3,24}$"
)
# Azure and the emulator serve the account at a URL the operator's endpoint template gives (host checked
# against it at run time: the account's token or key is sent there).
ENDPOINT = r"^https?://[^/?#@]+(/[^?#@]*)?$"
IMMUTABLE = {
    "workspace": "create a BatchCompute anew for the other workspace and delete this one",
    "computeName": "create a BatchCompute with the other name and delete this one",
    "batchAccount": "attach the other account with a new BatchCompute and delete this one",
    "resourceId": "attach the other account with a new BatchCompute and delete this one",
    "endpoint": "create a BatchCompute anew with the other endpoint and delete this one",
    # Azure sets an attached compute's description and tags when it attaches it; its update takes AmlCompute's
    # scaleSettings alone.
    "description": "Azure sets an attached compute's description only when it attaches it: detach (delete this "
    "BatchCompute) and attach again with a new one",
    "tags": "Azure sets an attached compute's tags only when it attaches it: detach (delete this BatchCompute) "
    "and attach again with a new one",
}
# Batch fixes these when it creates a pool (Pool - Patch takes start task, metadata and packages; amlops
# applies only target node counts): a change means a new pool.
POOL_IMMUTABLE = {
    "vmSize": "Batch sets a pool's VM size when it creates the pool: add a pool with another id (amlops creates it) "
    "and remove this one (amlops deletes it)",
    "taskSlotsPerNode": "Batch sets a pool's task slots when it creates the pool: add a pool with another id "
    "(amlops creates it) and remove this one (amlops deletes it)",
    "imageReference": "Batch sets a pool's OS image when it creates the pool: add a pool with another id (amlops "
    "creates it) and remove this one (amlops deletes it)",
    "nodeAgentSkuId": "Batch sets a pool's node agent when it creates the pool: add a pool with another id (amlops "
    "creates it) and remove this one (amlops deletes it)",
    "startTask": "amlops sets a pool's start task when it creates the pool: add a pool with another id (amlops "
    "creates it) and remove this one (amlops deletes it)",
}


class BatchAccountRef(ApiModel):
    resource_group: str = Field(
        pattern=AZURE_NAME, max_length=90, description="Seed: resource_group. Resource group of the account."
    )
    account_name: str = Field(pattern=r"^[a-z0-9]{3,24}$", description="Seed: account_name. Name of the Batch account.")


class SharedKeySecretRef(SecretRef):
    key: str = data_key("key", "Key in the Secret that holds the account's shared key.")


class BatchCredentials(ApiModel):
    shared_key_secret_ref: SharedKeySecretRef | None = Field(
        default=None, description="Batch shared-key authentication; absent: Microsoft Entra ID (AAD) tokens."
    )


class ImageReference(ApiModel):
    publisher: str = Field(default="canonical", description="Marketplace image publisher.")
    offer: str = Field(default="0001-com-ubuntu-server-jammy", description="Marketplace image offer.")
    sku: str = Field(default="22_04-lts", description="Marketplace image SKU.")
    version: str = Field(default="latest", description="Image version.")


class StartTask(ApiModel):
    command_line: str = Field(min_length=1, description="Runs on every node as it joins the pool.")
    wait_for_success: bool = Field(default=True, description="Node is usable only after the start task succeeded.")
    environment: dict[str, str] = Field(default_factory=dict, description="Environment variables of the start task.")


class ManagedPool(ApiModel):
    """Applied: the target node counts (a resize) and adopt; a pool added or removed is created or deleted. The
    rest is set when the pool is created (immutable)."""

    model_config = ConfigDict(json_schema_extra=frozen(POOL_IMMUTABLE))

    id: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="Batch pool id.")
    vm_size: str = Field(min_length=1, max_length=64, description="VM size of the pool's nodes (immutable).")
    target_dedicated_nodes: int = Field(
        default=0, ge=0, le=10000, description="Dedicated nodes wanted. Changes are applied (a resize)."
    )
    target_low_priority_nodes: int = Field(
        default=0, ge=0, le=10000, description="Low-priority (Spot) nodes wanted. Changes are applied (a resize)."
    )
    task_slots_per_node: int = Field(default=1, ge=1, le=256, description="Concurrent tasks per node (immutable).")
    image_reference: ImageReference = Field(default_factory=ImageReference, description="Node OS image (immutable).")
    node_agent_sku_id: str = Field(
        default="batch.node.ubuntu 22.04", max_length=64, description="Batch node agent SKU (immutable)."
    )
    start_task: StartTask | None = Field(default=None, description="Task every node runs when it joins (immutable).")
    adopt: bool = Field(
        default=False,
        description=(
            "Take over a pool of this id that exists without amlops' owner metadata (or whose owner no longer "
            "exists): amlops then writes its owner metadata, resizes it, and deletes it when it leaves spec.pools "
            "or on detach. Without it such a pool makes the BatchCompute Stalled NotOwned. A pool owned by another "
            "existing object is never taken over."
        ),
    )


class BatchComputeSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=frozen(IMMUTABLE))

    workspace: WorkspaceRef = Field(description="The Azure ML workspace the account is attached to (immutable).")
    credentials: Credentials | None = Field(default=None, description="Azure credential for ARM calls.")
    compute_name: str | None = Field(
        default=None,
        pattern=COMPUTE_NAME,
        description="Seed: name. Compute target name in the workspace; defaults to metadata.name (immutable).",
    )
    batch_account: BatchAccountRef | None = Field(
        default=None, description="Seed: attach_configuration(resource_group, account_name) (immutable)."
    )
    resource_id: str | None = Field(
        default=None,
        pattern=BATCH_ACCOUNT_ID,
        max_length=1024,
        description="Seed: attach_configuration(resource_id). ARM id of the Batch account (immutable).",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=ENDPOINT,
        max_length=512,
        description="Batch account URL (immutable); derived from the account name and location when absent. It "
        "must be the account's own, as the operator's endpoint template gives it "
        "(https://<account>.<region>.batch.azure.com on Azure), else the object is Stalled (EndpointNotAllowed).",
    )
    batch_credentials: BatchCredentials | None = Field(default=None, description="Data-plane credential.")
    description: str | None = Field(
        default=None, max_length=256, description="Description of the compute (immutable: set when attached)."
    )
    tags: dict[str, TagValue] = tags_field("Azure tags of the compute target (immutable: set when attached).")
    management_policy: ManagementPolicy = Field(
        default="Manage", description="Manage writes to Azure; ObserveOnly only reads and reports."
    )
    deletion_policy: Literal["Detach", "Orphan"] = Field(
        default="Detach",
        description="Detach the account on delete (never deletes it), or Orphan: leave attached.",
    )
    adopt: bool = Field(
        default=False,
        description=(
            "Take over an existing attached compute of this name (computeType Batch, attached to this account) "
            "that has no amlops.io-owner tag, or whose tag names an object that no longer exists: amlops then "
            "manages its pools and detaches it on delete. A compute owned by another existing object is never "
            "taken over (Stalled NotOwned), nor a compute of another type, such as an AmlCompute cluster (Stalled "
            "ComputeTypeMismatch; deleting this object then leaves it as it is)."
        ),
    )
    deletion_protection: bool = deletion_protection_field()
    pools: list[ManagedPool] = Field(
        default_factory=list,
        description=(
            "Pools amlops manages in the account (creates, resizes, deletes): only pools it created for this "
            "object, or adopted (adopt); other pools are only reported."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )


class PoolStatus(ApiModel):
    id: str = Field(description="Batch pool id.")
    vm_size: str | None = None
    allocation_state: str | None = None
    current_dedicated_nodes: int = 0
    current_low_priority_nodes: int = 0
    target_dedicated_nodes: int = 0
    target_low_priority_nodes: int = 0
    task_slots_per_node: int = 1
    managed: bool = False
    node_counts: dict[str, int] = Field(default_factory=dict, description="Nodes per Batch node state.")


class BatchComputeStatus(StatusBase):
    resource_id: str | None = None
    provisioning_state: str | None = None
    provisioning_errors: list[ProvisioningError] = Field(
        default_factory=list,
        description="Seed: provisioning_errors. Why Azure failed the attach (Azure: properties.provisioningErrors).",
    )
    is_attached_compute: bool | None = None
    cluster_location: str | None = None
    pools: list[PoolStatus] = Field(default_factory=list)
    pool_count: int | None = None
    dedicated_nodes: int | None = None
    low_priority_nodes: int | None = None


class BatchCompute(CustomResource):
    spec_model: ClassVar = BatchComputeSpec
    status_model: ClassVar = BatchComputeStatus
    definition: ClassVar = Definition(
        names=Names("BatchCompute", "batchcomputes", "batchcompute", ("batchc",)),
        description="An Azure Batch account attached to an Azure ML workspace (azureml-core BatchCompute).",
        printer_columns=(
            PrinterColumn("Account", ".spec.batchAccount.accountName"),
            PrinterColumn("Pools", ".status.poolCount", type="integer"),
            PrinterColumn("Dedicated", ".status.dedicatedNodes", type="integer"),
            PrinterColumn("LowPriority", ".status.lowPriorityNodes", type="integer"),
            READY_COLUMN,
            REASON_COLUMN,
            AGE_COLUMN,
        ),
        rules=(
            COMPUTE_NAME_RULE,
            Rule(
                "has(self.spec.batchAccount) != has(self.spec.resourceId)",
                "set exactly one of spec.batchAccount and spec.resourceId",
            ),
        ),
    )
