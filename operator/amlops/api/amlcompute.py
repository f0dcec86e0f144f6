"""AmlCompute: an Azure ML compute cluster (azureml-core ``AmlCompute.provisioning_configuration``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, WithJsonSchema

from amlops.api.common import (
    AZURE_NAME,
    COMPUTE_NAME,
    COMPUTE_NAME_RULE,
    LOCATION,
    ApiModel,
    Credentials,
    ManagementPolicy,
    ProvisioningError,
    Relaxed,
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
    ScaleSubresource,
)

# ARM ids are case-insensitive; the apiserver (Go RE2) and pydantic (Rust regex) both read (?i).
_SEGMENT = r"[^/?#]+"
IDENTITY_ID = (
    rf"(?i)^/subscriptions/{_SEGMENT}/resourceGroups/{_SEGMENT}/providers/Microsoft\.ManagedIdentity"
    rf"/userAssignedIdentities/{_SEGMENT}$"
)
SUBNET_ID = (
    rf"(?i)^/subscriptions/{_SEGMENT}/resourceGroups/{_SEGMENT}/providers/Microsoft\.Network/virtualNetworks"
    rf"/{_SEGMENT}/subnets/{_SEGMENT}$"
)
# A custom node image: a Compute Gallery image (the latest version), one of its versions, or a managed image.
VM_IMAGE_ID = (
    rf"(?i)^/subscriptions/{_SEGMENT}/resourceGroups/{_SEGMENT}/providers/Microsoft\.Compute"
    rf"/(galleries/{_SEGMENT}/images/{_SEGMENT}(/versions/{_SEGMENT})?|images/{_SEGMENT})$"
)
NETWORK_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,79}$"
PROPERTY_BAG_MAX = 64
IdentityId = Annotated[str, Field(pattern=IDENTITY_ID, max_length=1024)]
IdentityType = Literal["SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned", "None"]


class ScaleSettings(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.minNodeCount <= self.maxNodeCount", "message": "minNodeCount must be <= maxNodeCount"}
            ]
        }
    )

    min_node_count: int = Field(
        default=0, ge=0, le=10000, description="Seed: min_nodes. Nodes kept even when idle. Default 0."
    )
    max_node_count: int = Field(
        default=4, ge=0, le=10000, description="Seed: max_nodes. Upper bound of the cluster. Default 4."
    )
    node_idle_time_before_scale_down: int = Field(
        default=1800,
        ge=0,
        le=31536000,
        description="Seed: idle_seconds_before_scaledown. Seconds a node stays idle before removal. Default 1800.",
    )


class SecretKeyRef(SecretRef):
    key: str = data_key("password", "Key in the Secret.")


class AdminUser(ApiModel):
    """Azure sets these only when it creates the cluster: every field is immutable."""

    username: str = Field(
        min_length=1,
        max_length=64,
        description="Seed: admin_username. Admin account on the nodes (create-only: see updatePolicy).",
    )
    password_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Seed: admin_user_password, read from a Secret when the cluster is created; never logged "
        "(create-only: see updatePolicy). Azure sets the password only then: a new password in the same Secret "
        "is not applied, and the AdminCredentialsCurrent condition turns False (SecretChangedSinceCreate) once "
        "the Secret changes.",
    )
    ssh_public_key: str | None = Field(
        default=None, max_length=8192, description="Seed: admin_user_ssh_key (create-only: see updatePolicy)."
    )


class Subnet(ApiModel):
    """The subnet by its ARM id, or by its virtual network's and its own name: one form, whole (a part of the names
    alone would send no subnet at all, and a cluster outside the network would become Ready)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.subnetId) ? !has(self.vnetName) && !has(self.subnetName) && "
                    "!has(self.vnetResourceGroup) : has(self.vnetName) && has(self.subnetName)",
                    "message": "set subnet.subnetId, or subnet.vnetName and subnet.subnetName (with "
                    "vnetResourceGroup when the network is in another resource group than the workspace), not both",
                }
            ]
        }
    )

    vnet_resource_group: str | None = Field(
        default=None, pattern=AZURE_NAME, max_length=90, description="Seed: vnet_resourcegroup_name."
    )
    vnet_name: str | None = Field(default=None, pattern=NETWORK_NAME, max_length=80, description="Seed: vnet_name.")
    subnet_name: str | None = Field(default=None, pattern=NETWORK_NAME, max_length=80, description="Seed: subnet_name.")
    subnet_id: str | None = Field(
        default=None,
        pattern=SUBNET_ID,
        max_length=1024,
        description="Full ARM id of the subnet (/subscriptions/…/virtualNetworks/<vnet>/subnets/<subnet>), instead "
        "of the three names.",
    )


class Identity(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type.contains('UserAssigned') || !has(self.userAssignedIdentities) "
                    "|| size(self.userAssignedIdentities) == 0",
                    "message": "userAssignedIdentities are only allowed with type UserAssigned",
                },
                {
                    "rule": "!self.type.contains('UserAssigned') || (has(self.userAssignedIdentities) "
                    "&& size(self.userAssignedIdentities) > 0)",
                    "message": "type UserAssigned needs at least one entry in userAssignedIdentities",
                },
            ]
        }
    )

    type: IdentityType = Field(default="None", description="Seed: identity_type.")
    user_assigned_identities: list[IdentityId] = Field(
        default_factory=list,
        max_length=64,
        description="Seed: identity_id. ARM ids of user-assigned identities (only with UserAssigned).",
    )


class VirtualMachineImage(ApiModel):
    id: str = Field(
        pattern=VM_IMAGE_ID,
        max_length=1024,
        description="ARM id of the image: a Compute Gallery image (/subscriptions/…/providers/Microsoft.Compute/"
        "galleries/<gallery>/images/<image>), one of its versions (…/images/<image>/versions/<version>), or a "
        "managed image (/subscriptions/…/providers/Microsoft.Compute/images/<image>).",
    )


# Azure's AmlComputeProperties.propertyBag is a free-form object: kept as written, bounded in its top-level keys.
PropertyBag = Annotated[
    dict[str, Any],
    Field(max_length=PROPERTY_BAG_MAX),
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True, "maxProperties": PROPERTY_BAG_MAX}),
]


# Azure sets these when it creates the cluster and cannot change them afterwards; adding or removing one later
# is a change too. Its update (PATCH, ClusterUpdateParameters) takes scaleSettings, and identity; a PUT on an
# existing compute is accepted and its property changes ignored (Azure/bicep#17617, azure-rest-api-specs#18889;
# Terraform azurerm and Pulumi: "it can only be created and deleted"). So every other field is refused here,
# never accepted and silently not applied. Under ``updatePolicy: Recreate`` all but NAMES_THE_CLUSTER may change:
# amlops re-creates the cluster with the new values (external/amlcompute_recreate.py records them from these keys).
IMMUTABLE = {
    "workspace": "create the AmlCompute anew in the other workspace and delete this one",
    "computeName": "create a new AmlCompute with the other name and delete this one",
    "vmSize": "create a new AmlCompute with the new size and delete this one",
    "vmPriority": "create a new AmlCompute with the other priority and delete this one",
    "subnet": "create a new AmlCompute in the other subnet and delete this one",
    "location": "create a new AmlCompute in the other region and delete this one",
    "adminUser": "Azure sets the admin credentials (username, passwordSecretRef, sshPublicKey) only when it creates "
    "the cluster: create a new AmlCompute with the new ones and delete this one",
    "tags": "Azure sets a cluster's tags only when it creates it: create a new AmlCompute with the new tags and "
    "delete this one",
    "description": "Azure sets a cluster's description only when it creates it: create a new AmlCompute with the "
    "new description and delete this one",
    "remoteLoginPortPublicAccess": "Azure sets the SSH port's public access only when it creates the cluster: "
    "create a new AmlCompute with the new setting and delete this one",
    "enableNodePublicIp": "Azure gives the nodes public IPs or not only when it creates the cluster: create a new "
    "AmlCompute with the new setting and delete this one",
    # api-version 2025-12-01's create-only properties (Azure keeps what the create sent: a PUT on an existing
    # cluster does not change them, and PATCH changes only scaleSettings).
    "osType": "the OS is chosen when the cluster is created: create a new AmlCompute with the other OS and delete "
    "this one",
    "virtualMachineImage": "the node image is chosen when the cluster is created: create a new AmlCompute with "
    "the other image and delete this one",
    "isolatedNetwork": "network isolation is set when the cluster is created: create a new AmlCompute and delete "
    "this one",
    "disableLocalAuth": "local authentication is set when the cluster is created: create a new AmlCompute and "
    "delete this one",
    "propertyBag": "Azure reads the property bag only when it creates the cluster: create a new AmlCompute with "
    "the new bag and delete this one",
}
# Which cluster this object is: a re-create keeps both (another name or workspace is another cluster: a new
# AmlCompute object, and deleting this one, says it, with nothing for amlops to track between the two).
NAMES_THE_CLUSTER = frozenset({"workspace", "computeName"})
UpdatePolicy = Literal["Refuse", "Recreate"]
RECREATE = Relaxed(
    when="has(self.updatePolicy) && self.updatePolicy == 'Recreate'",
    hint="set updatePolicy: Recreate to have amlops delete the cluster and create it anew once no node is busy",
    except_=NAMES_THE_CLUSTER,
)
PROTECTED_NOT_RECREATED = Rule(
    "!(has(self.spec.deletionProtection) && self.spec.deletionProtection && has(self.spec.updatePolicy) "
    "&& self.spec.updatePolicy == 'Recreate')",
    "updatePolicy Recreate deletes the cluster in Azure, which deletionProtection forbids: set one of them to "
    "its default (deletionProtection false, or updatePolicy Refuse)",
)


class AmlComputeSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=frozen(IMMUTABLE, RECREATE))

    workspace: WorkspaceRef = Field(
        description="Seed: workspace. The Azure ML workspace that owns the cluster (immutable)."
    )
    credentials: Credentials | None = Field(default=None, description="Azure credential for this resource.")
    compute_name: str | None = Field(
        default=None,
        pattern=COMPUTE_NAME,
        description="Seed: name. Name of the compute in the workspace (2-16 chars); defaults to metadata.name "
        "(immutable).",
    )
    vm_size: str = Field(
        default="STANDARD_DS3_V2",
        min_length=1,
        max_length=64,
        description="Seed: vm_size. Azure VM size of the nodes (create-only: Azure silently ignores a change; "
        "see updatePolicy).",
    )
    vm_priority: Literal["Dedicated", "LowPriority"] = Field(
        default="Dedicated",
        description="Seed: vm_priority. Dedicated or LowPriority (preemptible) nodes (create-only: see updatePolicy).",
    )
    # A schema default makes the apiserver store the default counts at create: `kubectl scale` (the scale
    # subresource) of an object written without scaleSettings then sets maxNodeCount beside them, where the
    # rule minNodeCount <= maxNodeCount can read both (without it: "no such key: minNodeCount").
    scale_settings: ScaleSettings = Field(
        default_factory=ScaleSettings,
        json_schema_extra={"default": ScaleSettings().model_dump(by_alias=True)},
        description="Seed: min/max nodes. Changes are applied (PATCH).",
    )
    admin_user: AdminUser | None = Field(
        default=None,
        description="Seed: admin_username/password/ssh key (create-only: set when the cluster is created; see "
        "updatePolicy).",
    )
    subnet: Subnet | None = Field(
        default=None,
        description="Seed: vnet_resourcegroup_name, vnet_name, subnet_name (create-only: see updatePolicy).",
    )
    tags: dict[str, TagValue] = tags_field("Seed: tags. Azure tags of the compute (create-only: see updatePolicy).")
    description: str | None = Field(
        default=None, max_length=256, description="Seed: description (create-only: see updatePolicy)."
    )
    remote_login_port_public_access: Literal["Enabled", "Disabled", "NotSpecified"] = Field(
        default="NotSpecified",
        description="Seed: remote_login_port_public_access. Public SSH port state (create-only: see updatePolicy).",
    )
    identity: Identity | None = Field(
        default=None,
        description="Seed: identity_type / identity_id. Changes are applied (PATCH), as azureml-core's "
        "add_identity / remove_identity do.",
    )
    location: str | None = Field(
        default=None,
        pattern=LOCATION,
        max_length=64,
        description="Seed: location. Azure region of the nodes, e.g. westeurope; defaults to the workspace's "
        "(create-only: see updatePolicy).",
    )
    enable_node_public_ip: bool = Field(
        default=True,
        description="Seed: enable_node_public_ip. Whether the nodes get public IP addresses (Azure: "
        "properties.properties.enableNodePublicIp; Azure's default is true) (create-only: see updatePolicy).",
    )
    os_type: Literal["Linux", "Windows"] | None = Field(
        default=None,
        description="OS of the nodes, Linux or Windows (Azure: properties.properties.osType); unset: not sent, "
        "Azure's default applies (Linux) (create-only: see updatePolicy).",
    )
    virtual_machine_image: VirtualMachineImage | None = Field(
        default=None,
        description="A custom image for the nodes instead of Azure's (Azure: properties.properties."
        'virtualMachineImage, which its API reference describes as "windows only": use it with osType Windows); '
        "unset: not sent, Azure's own image (create-only: see updatePolicy).",
    )
    isolated_network: bool | None = Field(
        default=None,
        description="Whether the cluster's network is isolated (Azure: properties.properties.isolatedNetwork); "
        "unset: not sent, Azure's default applies (false) (create-only: see updatePolicy).",
    )
    disable_local_auth: bool | None = Field(
        default=None,
        description="Opt out of local authentication, so that only managed identities and Microsoft Entra ID "
        "authenticate to the compute (Azure: properties.disableLocalAuth); unset: not sent, Azure's default "
        "applies (create-only: see updatePolicy).",
    )
    property_bag: PropertyBag | None = Field(
        default=None,
        description="Additional properties for Azure, sent as written (Azure: properties.properties.propertyBag, "
        f"a free-form object); at most {PROPERTY_BAG_MAX} top-level keys; unset: none sent (create-only: see "
        "updatePolicy).",
    )
    management_policy: ManagementPolicy = Field(
        default="Manage", description="Manage writes to Azure; ObserveOnly only reads and reports."
    )
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete", description="Delete removes the cluster from Azure with the CR; Orphan leaves it."
    )
    adopt: bool = Field(
        default=False,
        description=(
            "Take over an existing cluster of this name that has no amlops.io-owner tag, or whose tag names an "
            "object that no longer exists. A cluster owned by another existing object is never taken over "
            "(Stalled NotOwned), nor a compute of another type, such as an attached Batch account (Stalled "
            "ComputeTypeMismatch; deleting this object then leaves it as it is)."
        ),
    )
    deletion_protection: bool = deletion_protection_field()
    update_policy: UpdatePolicy = Field(
        default="Refuse",
        description=(
            "What a change of a create-only field (vmSize, vmPriority, subnet, location, adminUser, and the others "
            "Azure sets only when it creates a cluster) does. Refuse (default): the apiserver refuses it. Recreate: "
            "amlops deletes the cluster and creates it anew with the new values, once no node is running or "
            "preparing a job (Reconciling WaitingForIdleCluster until then), with an Event for each step. "
            "workspace and computeName stay refused (another cluster: create a new AmlCompute). Only a cluster "
            "amlops owns, never under ObserveOnly; refused together with deletionProtection. deletionPolicy "
            "Orphan only decides what deleting this object leaves: the re-created cluster is then left."
        ),
    )
    report_nodes: bool = Field(default=False, description="Seed: list_nodes. Report nodes in status.nodes.")
    report_active_runs: bool = Field(
        default=False,
        description="Seed: get_active_runs. Report the Azure ML jobs queued or running on the cluster in "
        "status.activeRuns (read from one listing of the workspace's jobs that every job object shares; it loads "
        "azure-ai-ml in the operator).",
    )


class NodeStateCounts(ApiModel):
    idle_node_count: int = 0
    running_node_count: int = 0
    preparing_node_count: int = 0
    unusable_node_count: int = 0
    leaving_node_count: int = 0
    preempted_node_count: int = 0


class ErrorDetail(ApiModel):
    code: str = Field(default="", description="Azure's code of the detail (errors[].error.details[].code).")
    message: str = Field(default="", description="Azure's text of the detail (errors[].error.details[].message).")


class ClusterError(ApiModel):
    """One of the errors the cluster's nodes met (Azure: properties.properties.errors[].error)."""

    code: str = Field(default="", description="Azure's error code, e.g. QuotaExceeded (errors[].error.code).")
    message: str = Field(default="", description="Azure's message (errors[].error.message).")
    details: list[ErrorDetail] = Field(
        default_factory=list, description="Azure's details of the error (errors[].error.details), as Azure gives them."
    )


class Quota(ApiModel):
    family: str | None = Field(default=None, description="VM family of vmSize, e.g. standardDSv3Family.")
    limit: int | None = Field(default=None, description="vCPU quota of the family in the location.")
    usage: int | None = Field(default=None, description="vCPUs of the family in use.")
    cores_per_node: int | None = Field(default=None, description="vCPUs of one node of vmSize.")


class ComputeIdentityStatus(ApiModel):
    principal_id: str | None = None
    tenant_id: str | None = None


class NodeStatus(ApiModel):
    node_id: str | None = None
    private_ip_address: str | None = None
    public_ip_address: str | None = None
    port: int | None = None
    node_state: str | None = None
    run_id: str | None = None


class SecretVersion(ApiModel):
    """Which version of a Secret was used: its identity, never anything derived from its content."""

    name: str = Field(description="The Secret's name.")
    uid: str = Field(description="The Secret's metadata.uid (a Secret deleted and made anew has another).")
    resource_version: str = Field(description="The Secret's metadata.resourceVersion (any change gives a new one).")


class ActiveRun(ApiModel):
    """An Azure ML job queued or running on the cluster (seed: get_active_runs)."""

    name: str = Field(description="The Azure ML job's name.")
    type: str = Field(default="", description="The job's type: command, pipeline, ...")
    status: str = Field(default="", description="Azure ML's status: NotStarted, Queued, Preparing, Running, ...")
    display_name: str | None = Field(default=None, description="The job's display name.")
    owner: str | None = Field(
        default=None, description="The amlops object that submitted it, <namespace>/<name> (its amlops.io-owner tag)."
    )


class AmlComputeStatus(StatusBase):
    resource_id: str | None = Field(default=None, description="ARM id of the compute.")
    provisioning_state: str | None = Field(default=None, description="Creating, Succeeded, Failed, ...")
    provisioning_errors: list[ProvisioningError] = Field(
        default_factory=list,
        description="Seed: provisioning_errors. Why Azure failed the create or update "
        "(Azure: properties.provisioningErrors).",
    )
    created_on: datetime | None = Field(
        default=None,
        description="Seed: get_status().creation_time. When the compute was created (Azure: properties.createdOn).",
    )
    modified_on: datetime | None = Field(
        default=None,
        description="Seed: get_status().modified_time. When an operation last changed the compute "
        "(Azure: properties.modifiedOn).",
    )
    allocation_state: str | None = Field(
        default=None,
        description="Seed: get_status().allocation_state. Steady or Resizing (Azure: "
        "properties.properties.allocationState).",
    )
    allocation_state_transition_time: datetime | None = Field(
        default=None,
        description="Seed: get_status().allocation_state_transition_time. When the cluster entered its "
        "allocationState (Azure: properties.properties.allocationStateTransitionTime).",
    )
    errors: list[ClusterError] = Field(
        default_factory=list,
        description="Seed: get_status().errors. Errors the cluster's nodes met, e.g. QuotaExceeded when the "
        "autoscaler cannot allocate nodes; empty when Azure reports none (Azure: properties.properties.errors).",
    )
    current_node_count: int | None = None
    target_node_count: int | None = None
    node_state_counts: NodeStateCounts | None = None
    identity: ComputeIdentityStatus | None = Field(default=None, description="The cluster's managed identity.")
    quota: Quota | None = Field(default=None, description="Family quota and usage for vmSize (pre-flight).")
    nodes: list[NodeStatus] | None = Field(
        default=None, description="Seed: list_nodes. Up to AMLOPS_NODES_REPORT_LIMIT nodes, when spec.reportNodes."
    )
    node_count: int | None = Field(default=None, description="Total nodes listNodes returned (status.nodes is capped).")
    active_runs: list[ActiveRun] | None = Field(
        default=None,
        description="Seed: get_active_runs. The Azure ML jobs queued or running on the cluster, when "
        "spec.reportActiveRuns (at most 100).",
    )
    last_sync_time: datetime | None = Field(default=None, description="When amlops last read the cluster from Azure.")
    admin_password_secret: SecretVersion | None = Field(
        default=None,
        description="The Secret of spec.adminUser.passwordSecretRef as it was when amlops created the cluster (its "
        "uid and resourceVersion, never its content): Azure sets the password only then, so AdminCredentialsCurrent "
        "turns False when the Secret is no longer that version.",
    )
    create_only_fields: list[str] | None = Field(
        default=None,
        description="The create-only spec fields the cluster in Azure was created with, each as name=digest of its "
        "value (never a secret: a Secret is named, not read). Set once amlops "
        "knows them: from the amlops.io-create-digest tag it puts on a cluster it creates, or for an older "
        "cluster from the spec when Azure's own values (vmSize, vmPriority, subnet, location) agree with it.",
    )
    recreating: str | None = Field(
        default=None,
        description="updatePolicy Recreate: the changes a re-create of the cluster is applying (waiting for idle "
        "nodes, deleting, creating); cleared once the new cluster has succeeded.",
    )


class AmlCompute(CustomResource):
    spec_model: ClassVar = AmlComputeSpec
    status_model: ClassVar = AmlComputeStatus
    definition: ClassVar = Definition(
        names=Names("AmlCompute", "amlcomputes", "amlcompute", ("amlc",)),
        description="An Azure Machine Learning compute cluster (azureml-core AmlCompute).",
        printer_columns=(
            PrinterColumn("VM Size", ".spec.vmSize"),
            PrinterColumn("State", ".status.provisioningState", description="Azure provisioningState"),
            PrinterColumn("Allocation", ".status.allocationState"),
            PrinterColumn("Nodes", ".status.currentNodeCount", type="integer"),
            PrinterColumn("Target", ".status.targetNodeCount", type="integer"),
            READY_COLUMN,
            REASON_COLUMN,
            AGE_COLUMN,
        ),
        rules=(COMPUTE_NAME_RULE, PROTECTED_NOT_RECREATED),
        scale=ScaleSubresource(".spec.scaleSettings.maxNodeCount", ".status.targetNodeCount"),
    )
