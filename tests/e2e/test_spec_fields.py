"""No silent drift (issue 16, point 2): every spec field of every kind, changed on a live object, is either
applied (in Azure, as Azure allows, or by the operator for its own fields) or refused by the apiserver with a
message that says what to do. One table per kind; :func:`test_every_spec_field_has_a_row` derives the field
paths from the models (``amlops.api.KINDS``) and fails for a field without a row, so a new field needs a decision.

Evidence for what Azure can change on an existing AmlCompute: its update (PATCH, ``ClusterUpdateParameters``)
carries ``scaleSettings`` (azure-rest-api-specs, machineLearningServices.json) and ``identity`` (azureml-core
``AmlCompute.add_identity`` / ``remove_identity`` PATCH it); a PUT on an existing compute is accepted and its
property changes ignored (Azure/bicep#17617, azure-rest-api-specs#18889; Terraform azurerm and Pulumi
``ComputeCluster``: "it can only be created and deleted"). A Batch pool's vmSize, task slots, image and node agent
are fixed at creation (Batch REST ``Pool - Patch`` takes start task, metadata and packages only).

The walk: one object per kind, Ready first; each row edits the stored object (``kubectl replace``), then checks
the refusal's message, or waits until the change shows in the emulator or the object; the object is then put
back and waited on until it has settled again. Waits are conditions with a deadline, never sleeps.
"""

from __future__ import annotations

import copy
import json
import subprocess
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import amlops_testbed as testbed
from amlops.api import KINDS, CustomResource
from amlops.external.amlcompute_map import parse_duration
from amlops_emulator.azurite import Azurite
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT
from tests.support.objects import (
    apply,
    condition,
    find_condition,
    is_true,
    observed,
    try_apply,
    wait_condition,
    wait_gone,
)
from tests.support.processes import StartOperator

from .test_amlcompute import WORKSPACE, WS_PATH, compute_name
from .test_batchcompute import batch, pools
from .test_commandjob import Workspace, waiting_job, workspace  # noqa: F401  (workspace: a fixture)
from .test_paralleljob import Bed, bed, files  # noqa: F401  (bed: the fixture the walk uses)
from .test_workspacequota import azure_workspace_limit

pytestmark = pytest.mark.e2e

ARM = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-amlops/providers"
IDENTITY_1 = f"{ARM}/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
IDENTITY_2 = f"{ARM}/Microsoft.ManagedIdentity/userAssignedIdentities/id2"
SUBNET_ID = f"{ARM}/Microsoft.Network/virtualNetworks/vnet/subnets/default"
VM_IMAGE_ID = f"{ARM}/Microsoft.Compute/galleries/gallery/images/image/versions/1.0.0"
SSH_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 walk@amlops"
OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-000000000002"
TIMEOUT = 120.0


# ------------------------------------------------------------------------------------------------ the tables


@dataclass
class Walk:
    """One kind's object in the walk, and what its checks need."""

    bed: Bed
    resource: str
    name: str
    extra: dict[str, str] = field(default_factory=dict)

    def get(self) -> dict[str, Any]:
        return testbed.get_object(self.bed.k8s, self.resource, self.name, self.bed.ns) or {}


Check = Callable[[Walk], object]


@dataclass(frozen=True)
class Row:
    """One spec field: ``edit`` (spec paths → new values; None removes; ``[]`` is the first list item, ``{}``
    the first map entry) is refused with ``refused`` in the apiserver's answer, or applied: ``applied`` turns
    true once the change shows in Azure (the emulator) or the object; ``how`` says what it checks."""

    field: str
    edit: Mapping[str, Any]
    refused: str | None = None
    applied: Check | None = None
    how: str = ""
    restore: bool = True


def refused(path: str, value: Any, fragment: str, **more: Any) -> Row:
    """``path`` set to ``value`` (and the paths of ``more``, ``__`` for ``.``) is refused with ``fragment``."""
    return Row(path, {path: value, **{k.replace("__", "."): v for k, v in more.items()}}, refused=fragment)


def applied(path: str, edit: Mapping[str, Any], how: str, check: Check, *, restore: bool = True) -> Row:
    return Row(path, edit, applied=check, how=how, restore=restore)


def settled(walk: Walk) -> bool:
    """The operator has handled this generation, and the object is not Stalled."""
    obj = walk.get()
    return observed(obj) and not is_true(obj, "Stalled")


def ready(walk: Walk) -> bool:
    obj = walk.get()
    return observed(obj) and is_true(obj, "Ready")


def stalled(reason: str) -> Callable[[Walk], bool]:
    def check(walk: Walk) -> bool:
        obj = walk.get()
        stall = find_condition(obj, "Stalled")
        return observed(obj) and stall is not None and stall["status"] == "True" and stall["reason"] == reason

    return check


def operator_acted(walk: Walk) -> bool:
    """The edit is stored and the operator handled it (for fields read only at some moment: adopt when amlops
    meets an unowned resource, deletionProtection by the chart's admission policy on a delete, proven in
    tests/chart/test_install.py)."""
    return settled(walk)


missing_credentials = stalled("CredentialsMissing")


# AmlCompute -----------------------------------------------------------------------------------------------


def aml_body(walk: Walk) -> dict[str, Any]:
    status, body = walk.bed.azure.arm("GET", f"{WS_PATH}/computes/{walk.extra['compute']}")
    assert status == 200, body
    return dict(body)


def aml_recreated(walk: Walk) -> bool:
    """The cluster in Azure is the re-created one (absent while the re-create deletes it), and the object Ready."""
    status, body = walk.bed.azure.arm("GET", f"{WS_PATH}/computes/{walk.extra['compute']}")
    if status == 404:
        return False
    assert status == 200, body
    return body["properties"].get("description") == "re-created by the walk" and ready(walk)


def aml_scale(walk: Walk) -> dict[str, Any]:
    return dict(aml_body(walk)["properties"]["properties"]["scaleSettings"])


def aml_identity(walk: Walk) -> tuple[str, set[str]]:
    identity = aml_body(walk).get("identity") or {}
    ids = {i.lower() for i in identity.get("userAssignedIdentities") or {}}
    return str(identity.get("type", "None")).replace(" ", ""), ids


def aml_observe_only(walk: Walk) -> bool:
    """ObserveOnly: this generation (maxNodeCount 4) is handled, and Azure still has the 2 of before."""
    return settled(walk) and int(aml_scale(walk)["maxNodeCount"]) == 2


def aml_orphaned(walk: Walk) -> bool:
    """deletionPolicy Orphan: deleting the object leaves the cluster in Azure."""
    if not settled(walk):
        return False
    walk.bed.k8s.kubectl("delete", walk.resource, walk.name, "-n", walk.bed.ns, "--wait=false")
    wait_gone(walk.bed.k8s, walk.resource, walk.name, walk.bed.ns)
    return bool(aml_body(walk)["properties"]["provisioningState"] == "Succeeded")


def aml_nodes_reported(walk: Walk) -> bool:
    obj = walk.get()
    return observed(obj) and (obj.get("status") or {}).get("nodeCount") is not None


def aml_active_runs_reported(walk: Walk) -> bool:
    """status.activeRuns written (a list, empty while no job runs on the cluster)."""
    obj = walk.get()
    return observed(obj) and (obj.get("status") or {}).get("activeRuns") is not None


AML_IMMUTABLE = "is immutable"
AMLCOMPUTE: list[Row] = [
    refused("workspace.subscriptionId", OTHER_SUBSCRIPTION, "workspace is immutable: create the AmlCompute anew"),
    refused("workspace.resourceGroup", "rg-other", "workspace is immutable"),
    refused("workspace.name", "ws-other", "workspace is immutable"),
    refused("computeName", "cother", "computeName is immutable: create a new AmlCompute"),
    refused("vmSize", "STANDARD_D2S_V3", "vmSize is immutable: create a new AmlCompute with the new size"),
    refused("vmPriority", "LowPriority", "vmPriority is immutable"),
    refused("adminUser.username", "other", "adminUser is immutable: Azure sets the admin credentials"),
    refused("adminUser.passwordSecretRef.name", "other-password", "(username, passwordSecretRef, sshPublicKey)"),
    refused("adminUser.passwordSecretRef.key", "other", "adminUser is immutable"),
    refused("adminUser.sshPublicKey", SSH_KEY + "2", "adminUser is immutable"),
    refused("subnet.vnetResourceGroup", "rg-amlops", "subnet is immutable: create a new AmlCompute in the other"),
    refused("subnet.vnetName", "vnet2", "subnet is immutable"),
    refused("subnet.subnetName", "other", "subnet is immutable"),
    refused("subnet.subnetId", SUBNET_ID, "subnet is immutable", subnet__vnetName=None, subnet__subnetName=None),
    refused("tags", {"team": "ops"}, "tags is immutable: Azure sets a cluster's tags only when it creates it"),
    refused("description", "other", "description is immutable: Azure sets a cluster's description only"),
    refused("remoteLoginPortPublicAccess", "Enabled", "remoteLoginPortPublicAccess is immutable: Azure sets"),
    refused("enableNodePublicIp", True, "enableNodePublicIp is immutable: Azure gives the nodes public IPs"),
    refused("location", "westus", "location is immutable: create a new AmlCompute in the other region"),
    # api-version 2025-12-01's create-only properties (unset at creation: adding one is a change too).
    refused("osType", "Windows", "osType is immutable: the OS is chosen when the cluster is created"),
    refused("virtualMachineImage.id", VM_IMAGE_ID, "virtualMachineImage is immutable: the node image is chosen"),
    refused("isolatedNetwork", True, "isolatedNetwork is immutable: network isolation is set when"),
    refused("disableLocalAuth", True, "disableLocalAuth is immutable: local authentication is set when"),
    refused("propertyBag", {"k": "v"}, "propertyBag is immutable: Azure reads the property bag only when"),
    applied(
        "scaleSettings.maxNodeCount",
        {"scaleSettings.maxNodeCount": 3},
        "PATCH: Azure's scaleSettings.maxNodeCount",
        lambda w: int(aml_scale(w)["maxNodeCount"]) == 3,
    ),
    applied(
        "scaleSettings.minNodeCount",
        {"scaleSettings.minNodeCount": 1},
        "PATCH: Azure's scaleSettings.minNodeCount",
        lambda w: int(aml_scale(w)["minNodeCount"]) == 1,
    ),
    applied(
        "scaleSettings.nodeIdleTimeBeforeScaleDown",
        {"scaleSettings.nodeIdleTimeBeforeScaleDown": 300},
        "PATCH: Azure's scaleSettings.nodeIdleTimeBeforeScaleDown",
        lambda w: parse_duration(aml_scale(w)["nodeIdleTimeBeforeScaleDown"]) == 300,
    ),
    applied(
        "identity.type",
        {"identity.type": "SystemAssigned,UserAssigned", "identity.userAssignedIdentities": [IDENTITY_1]},
        "PATCH: Azure's identity.type",
        lambda w: aml_identity(w) == ("SystemAssigned,UserAssigned", {IDENTITY_1.lower()}),
    ),
    applied(
        "identity.userAssignedIdentities",
        {"identity.type": "UserAssigned", "identity.userAssignedIdentities": [IDENTITY_2]},
        "PATCH: Azure's identity.userAssignedIdentities",
        lambda w: aml_identity(w) == ("UserAssigned", {IDENTITY_2.lower()}),
    ),
    applied(
        "credentials.secretRef.name",
        {"credentials.secretRef.name": "no-such-secret"},
        "the next pass uses it: Stalled CredentialsMissing",
        missing_credentials,
    ),
    applied(
        "managementPolicy",
        {"managementPolicy": "ObserveOnly", "scaleSettings.maxNodeCount": 4},
        "ObserveOnly: a maxNodeCount change is not written to Azure",
        aml_observe_only,
    ),
    applied("adopt", {"adopt": True}, "stored and handled", operator_acted),
    applied("deletionProtection", {"deletionProtection": True}, "stored and handled", operator_acted),
    applied("reportNodes", {"reportNodes": True}, "status.nodeCount reported", aml_nodes_reported),
    applied("reportActiveRuns", {"reportActiveRuns": True}, "status.activeRuns reported", aml_active_runs_reported),
    applied(
        "updatePolicy",
        {"updatePolicy": "Recreate", "description": "re-created by the walk"},
        "Recreate: a create-only change re-creates the cluster, and Azure holds the new description",
        aml_recreated,
        restore=False,  # back under Refuse, the old description would be a refused change
    ),
    applied(
        "deletionPolicy",
        {"deletionPolicy": "Orphan"},
        "deleting the object leaves the cluster in Azure",
        aml_orphaned,
        restore=False,
    ),
]


# WorkspaceQuota -------------------------------------------------------------------------------------------


def quota_observe_only(walk: Walk) -> bool:
    return settled(walk) and azure_workspace_limit(walk.bed.azure, "StandardDSv2Family") == 16


WORKSPACEQUOTA: list[Row] = [
    refused("workspace.subscriptionId", OTHER_SUBSCRIPTION, "workspace is immutable: create a WorkspaceQuota"),
    refused("workspace.resourceGroup", "rg-other", "workspace is immutable"),
    refused("workspace.name", "ws-other", "workspace is immutable"),
    refused("location", "westus", "location is immutable: create a WorkspaceQuota for the other location"),
    refused("deletionPolicy", "Delete", 'Unsupported value: "Delete"'),
    applied(
        "limits[].limit",
        {"limits[].limit": 12},
        "updateQuotas: the workspace's limit in Azure",
        lambda w: azure_workspace_limit(w.bed.azure, "StandardDSv2Family") == 12,
    ),
    applied(
        "limits[].vmFamily",
        {"limits[].vmFamily": "StandardNCFamily"},
        "updateQuotas: the other family's limit in Azure",
        lambda w: azure_workspace_limit(w.bed.azure, "StandardNCFamily") == 16,
    ),
    applied(
        "credentials.secretRef.name",
        {"credentials.secretRef.name": "no-such-secret"},
        "the next pass uses it: Stalled CredentialsMissing",
        missing_credentials,
    ),
    applied(
        "managementPolicy",
        {"managementPolicy": "ObserveOnly", "limits[].limit": 8},
        "ObserveOnly: a limit change is not written to Azure",
        quota_observe_only,
    ),
]


# ParallelJob ----------------------------------------------------------------------------------------------


def job_suspended(walk: Walk) -> bool:
    obj = walk.get()
    if (obj.get("status") or {}).get("phase") != "Suspended":
        return False
    return bool(batch(walk.bed.azure, lambda c: c.get_job(obj["status"]["jobId"])).state == "disabled")


PJ_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
PJ_IMMUTABLE = "a ParallelJob's spec is immutable except suspend and deletionProtection: create a new ParallelJob"


def pj(path: str, value: Any, fragment: str = PJ_IMMUTABLE, **more: Any) -> Row:
    return refused(path, value, fragment, **more)


PARALLELJOB: list[Row] = [
    # First, while the job runs; it stays suspended (not restored): the walk goes on with a job that does not
    # finish under it, and the other rows start from the suspended spec.
    applied(
        "suspend",
        {"suspend": True},
        "phase Suspended, its Batch job disabled",
        job_suspended,
        restore=False,
    ),
    pj("compute.name", "other"),
    pj("compute.poolId", "other"),
    pj("compute.instanceType", "STANDARD_D4S_V3"),
    pj("compute.lowPriority", True),
    pj("displayName", "other"),
    pj("description", "other"),
    pj("tags", {"a": "b"}),
    pj("properties", {"a": "b"}),
    pj("experimentName", "other"),
    pj("inputs{}.uri", "https://elsewhere.example/x"),
    pj("inputs{}.type", "uri_file"),
    # A value on a data input: the per-input rule refuses it (a literal input has a type of its own and no uri).
    pj("inputs{}.value", "3", "a data input (uri_folder, uri_file, mltable) sets uri"),
    pj("outputs{}.uri", "https://elsewhere.example/y"),
    # uri_folder is the only type: any other is refused by the schema before the transition rule runs.
    pj("outputs{}.type", "uri_file", 'Unsupported value: "uri_file"'),
    pj("inputData", "${{inputs.other}}"),
    pj("miniBatchSize", "2"),
    pj("partitionKeys", ["region"]),
    pj("maxConcurrencyPerInstance", 3),
    pj("instanceCount", 1),
    pj("errorThreshold", 5),
    pj("miniBatchErrorThreshold", 5),
    pj("retrySettings.maxRetries", 1),
    pj("retrySettings.timeout", 30),
    pj("environmentVariables", {"DELAY": "0"}),
    pj("loggingLevel", "DEBUG"),
    pj("task.code", "https://elsewhere.example/code"),
    pj("task.codeConfigMap", "code", task__code=None),
    pj("task.entryScript", "other.py"),
    pj("task.programArguments", "--fast"),
    pj("task.environment.image", "python:3.12"),
    pj("task.environment.condaFile", "env.yml"),
    pj("task.environment.pipRequirements", ["six"]),
    pj("task.appendRowTo", None),
    pj("isDeterministic", False),  # true is the default (the seed's): a change is to false
    pj("storageCredentials.secretRef.name", "other"),
    pj("storageCredentials.secretRef.key", "other"),
    pj("activeDeadlineSeconds", 600),
    pj("ttlSecondsAfterFinished", 60),
    pj("resources.instanceType", "Standard_NC6s_v3"),
    pj("resources.shmSize", "2g"),
    pj("resources.dockerArgs", "--ipc=host"),
    pj("identity.type", "aml_token"),
    pj("identity.clientId", PJ_CLIENT_ID, identity__type="managed"),
    pj("identity.objectId", PJ_CLIENT_ID, identity__type="managed"),
    pj("identity.resourceId", IDENTITY_1, identity__type="managed"),
    applied("deletionProtection", {"deletionProtection": True}, "stored and handled", operator_acted),
]


# BatchCompute ---------------------------------------------------------------------------------------------


def pool(walk: Walk, pool_id: str = "scoring") -> Any:
    return pools(walk.bed.azure).get(pool_id)


def batch_observe_only(walk: Walk) -> bool:
    return settled(walk) and pool(walk).target_dedicated_nodes == 2


def pool_replaced(walk: Walk) -> bool:
    found = pools(walk.bed.azure)
    return "scoring2" in found and ("scoring" not in found or found["scoring"].state == "deleting")


def batch_orphaned(walk: Walk) -> bool:
    """deletionPolicy Orphan: deleting the object leaves the account attached."""
    if not settled(walk):
        return False
    walk.bed.k8s.kubectl("delete", walk.resource, walk.name, "-n", walk.bed.ns, "--wait=false")
    wait_gone(walk.bed.k8s, walk.resource, walk.name, walk.bed.ns)
    status, body = walk.bed.azure.arm("GET", f"{WS_PATH}/computes/{walk.extra['compute']}")
    return status == 200 and body["properties"]["computeType"] == "Batch"


POOL = "pools[]."
BATCHCOMPUTE: list[Row] = [
    refused("workspace.subscriptionId", OTHER_SUBSCRIPTION, "workspace is immutable: create a BatchCompute anew"),
    refused("workspace.resourceGroup", "rg-other", "workspace is immutable"),
    refused("workspace.name", "ws-other", "workspace is immutable"),
    refused("computeName", "cother", "computeName is immutable"),
    refused("batchAccount.resourceGroup", "rg-other", "batchAccount is immutable: attach the other account"),
    refused("batchAccount.accountName", "other", "batchAccount is immutable"),
    refused(
        "resourceId",
        f"{ARM}/Microsoft.Batch/batchAccounts/{DEFAULT_BATCH_ACCOUNT}",
        "resourceId is immutable: attach the other account",
        batchAccount=None,
    ),
    refused("endpoint", "https://other.westeurope.batch.azure.com", "endpoint is immutable"),
    refused("description", "other", "description is immutable: Azure sets an attached compute's description"),
    refused("tags", {"team": "ops"}, "tags is immutable: Azure sets an attached compute's tags only"),
    refused(POOL + "vmSize", "STANDARD_D4S_V3", "vmSize is immutable: Batch sets a pool's VM size"),
    refused(POOL + "taskSlotsPerNode", 2, "taskSlotsPerNode is immutable: Batch sets a pool's task slots"),
    refused(POOL + "imageReference.publisher", "other", "imageReference is immutable: Batch sets a pool's OS image"),
    refused(POOL + "imageReference.offer", "other", "imageReference is immutable"),
    refused(POOL + "imageReference.sku", "other", "imageReference is immutable"),
    refused(POOL + "imageReference.version", "1.0.0", "imageReference is immutable"),
    refused(POOL + "nodeAgentSkuId", "batch.node.other", "nodeAgentSkuId is immutable: Batch sets a pool's node"),
    refused(POOL + "startTask.commandLine", "echo hi", "startTask is immutable: amlops sets a pool's start task"),
    refused(
        POOL + "startTask.waitForSuccess", False, "startTask is immutable", pools__0__startTask__commandLine="echo"
    ),
    refused(
        POOL + "startTask.environment", {"A": "b"}, "startTask is immutable", pools__0__startTask__commandLine="echo"
    ),
    applied(
        POOL + "targetDedicatedNodes",
        {POOL + "targetDedicatedNodes": 1},
        "a resize: the pool's targetDedicatedNodes in Batch",
        lambda w: pool(w).target_dedicated_nodes == 1,
    ),
    applied(
        POOL + "targetLowPriorityNodes",
        {POOL + "targetLowPriorityNodes": 1},
        "a resize: the pool's targetLowPriorityNodes in Batch",
        lambda w: pool(w).target_low_priority_nodes == 1,
    ),
    applied(POOL + "adopt", {POOL + "adopt": True}, "stored and handled", operator_acted),
    applied(
        POOL + "id",
        {POOL + "id": "scoring2"},
        "the new pool is created in Batch, the old one deleted",
        pool_replaced,
    ),
    applied(
        "batchCredentials.sharedKeySecretRef.name",
        {"batchCredentials.sharedKeySecretRef.name": "no-such-secret"},
        "the next pass uses it: Stalled CredentialsMissing",
        missing_credentials,
    ),
    applied(
        "batchCredentials.sharedKeySecretRef.key",
        {"batchCredentials.sharedKeySecretRef.key": "other"},
        "the next pass uses it: Stalled CredentialsMissing",
        missing_credentials,
    ),
    applied(
        "credentials.secretRef.name",
        {"credentials.secretRef.name": "no-such-secret"},
        "the next pass uses it: Stalled CredentialsMissing",
        missing_credentials,
    ),
    applied(
        "managementPolicy",
        {"managementPolicy": "ObserveOnly", POOL + "targetDedicatedNodes": 0},
        "ObserveOnly: a resize is not written to Batch",
        batch_observe_only,
    ),
    applied("adopt", {"adopt": True}, "stored and handled", operator_acted),
    applied("deletionProtection", {"deletionProtection": True}, "stored and handled", operator_acted),
    applied(
        "deletionPolicy",
        {"deletionPolicy": "Orphan"},
        "deleting the object leaves the account attached",
        batch_orphaned,
        restore=False,
    ),
]

# CommandJob -----------------------------------------------------------------------------------------------


def commandjob_suspended(walk: Walk) -> bool:
    """Suspended, its Azure ML job canceled."""
    status = walk.get().get("status") or {}
    return status.get("phase") == "Suspended" and status.get("azureStatus") == "Canceled"


CJ_IMMUTABLE = "a CommandJob's spec is immutable except suspend and deletionProtection: create a new CommandJob"


def cj(path: str, value: Any, **more: Any) -> Row:
    return refused(path, value, CJ_IMMUTABLE, **more)


COMMANDJOB: list[Row] = [
    # First, while the job runs; it stays suspended (not restored), as ParallelJob's walk.
    applied(
        "suspend", {"suspend": True}, "phase Suspended, its Azure ML job canceled", commandjob_suspended, restore=False
    ),
    cj("compute", "other"),
    cj("code", "azureml:other:1"),
    cj("codeConfigMap", "other-code"),
    cj("command", "python other.py"),
    cj("environment.name", "azureml:sklearn:1"),
    cj("environment.image", "python:3.12"),
    cj("environment.condaFile", "name: other"),
    cj("environment.pipRequirements", ["six"]),
    cj("environmentVariables", {"OTHER": "1"}),
    cj("inputs{}.uri", "azureml://datastores/workspaceblobstore/paths/other/"),
    cj("inputs{}.type", "string"),
    cj("inputs{}.value", "2"),
    cj("outputs{}.uri", "azureml://datastores/workspaceblobstore/paths/other/"),
    cj("outputs{}.type", "uri_file"),
    cj("resources.instanceCount", 2),
    cj("resources.shmSize", "2g"),
    cj("resources.dockerArgs", "--ipc=host"),
    cj("distribution.type", "PyTorch"),
    cj("distribution.processCountPerInstance", 2, distribution__type="PyTorch"),
    cj("distribution.workerCount", 2, distribution__type="TensorFlow"),
    cj("distribution.parameterServerCount", 1, distribution__type="TensorFlow"),
    cj("limits.timeout", 60),
    cj("displayName", "other"),
    cj("experimentName", "other"),
    cj("description", "other"),
    cj("tags", {"other": "1"}),
    cj("properties", {"other": "1"}),
    cj("identity.type", "aml_token"),
    cj("identity.clientId", "00000000-0000-0000-0000-0000000000c1", identity__type="managed"),
    cj("identity.objectId", "00000000-0000-0000-0000-0000000000c2", identity__type="managed"),
    cj(
        "identity.resourceId",
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
        identity__type="managed",
    ),
    cj("deletionPolicy", "Orphan"),
    cj("activeDeadlineSeconds", 600),
    cj("ttlSecondsAfterFinished", 60),
    applied("deletionProtection", {"deletionProtection": True}, "stored and handled", operator_acted),
]

TABLES: dict[str, list[Row]] = {
    "CommandJob": COMMANDJOB,
    "AmlCompute": AMLCOMPUTE,
    "BatchCompute": BATCHCOMPUTE,
    "ParallelJob": PARALLELJOB,
    "WorkspaceQuota": WORKSPACEQUOTA,
}


# ------------------------------------------------------------------------------------- the fields of a model


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → X (the spec's optional fields)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def leaf_fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf of ``model`` in camelCase: ``scaleSettings.maxNodeCount``, ``pools[].vmSize`` for a list of
    objects, ``inputs{}.uri`` for a map of objects; a list or map of scalars is one leaf."""
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        annotation = _unwrap(info.annotation)
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if (sub := _model(annotation)) is not None:
            yield from leaf_fields(sub, path + ".")
        elif origin is list and (sub := _model(args[0])) is not None:
            yield from leaf_fields(sub, path + "[].")
        elif origin is dict and (sub := _model(args[1])) is not None:
            yield from leaf_fields(sub, path + "{}.")
        else:
            yield path


def _kind(name: str) -> type[CustomResource]:
    return next(k for k in KINDS if k.kind() == name)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind())
def test_every_spec_field_has_a_row(kind: type[CustomResource]) -> None:
    """A field without a row has no decision (applied or refused): add one to its kind's table."""
    table = TABLES.get(kind.kind())
    assert table is not None, f"{kind.kind()} has no table in {__name__}"
    fields = set(leaf_fields(kind.spec_model))
    rows = [row.field for row in table]
    assert sorted(fields - set(rows)) == [], f"{kind.kind()} fields without a row: applied or refused?"
    assert sorted(set(rows) - fields) == [], f"{kind.kind()} rows of fields the model does not have"
    assert len(rows) == len(set(rows)), "a field with two rows"
    for row in table:
        assert (row.refused is None) != (row.applied is None), f"{row.field}: refused or applied, not both"


def test_leaf_fields_walks_objects_lists_and_maps() -> None:
    """The completeness check sees nested objects, lists of objects and maps of objects."""
    aml = set(leaf_fields(_kind("AmlCompute").spec_model))
    assert {"scaleSettings.maxNodeCount", "adminUser.passwordSecretRef.key", "tags"} <= aml
    assert "scaleSettings" not in aml
    batch_fields = set(leaf_fields(_kind("BatchCompute").spec_model))
    assert {"pools[].imageReference.sku", "pools[].startTask.environment"} <= batch_fields
    assert "inputs{}.uri" in set(leaf_fields(_kind("ParallelJob").spec_model))


# ------------------------------------------------------------------------------------------------- the walk


def _steps(path: str, spec: Mapping[str, Any]) -> list[str | int]:
    """``pools[].vmSize`` → ["pools", 0, "vmSize"]; ``inputs{}.uri`` → ["inputs", <first key>, "uri"]."""
    steps: list[str | int] = []
    node: Any = spec
    for part in path.split("."):
        if part.endswith("[]"):
            steps += [part[:-2], 0]
            node = (node or {}).get(part[:-2], [{}])[0]
        elif part.endswith("{}"):
            key = next(iter((node or {}).get(part[:-2]) or {"x": None}))
            steps += [part[:-2], key]
            node = ((node or {}).get(part[:-2]) or {}).get(key)
        elif part.isdigit():
            steps.append(int(part))
            node = node[int(part)] if isinstance(node, list) else None
        else:
            steps.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return steps


def edited(spec: Mapping[str, Any], edit: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with each path of ``edit`` set (None: removed), missing objects on the way created."""
    out = copy.deepcopy(dict(spec))
    for path, value in edit.items():
        *parents, last = _steps(path, out)
        node: Any = out
        for step in parents:
            node = node[step] if isinstance(step, int) else node.setdefault(step, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def replace_spec(walk: Walk, spec: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """``kubectl replace`` of the stored object with ``spec``: the apiserver runs every rule, transitions too."""
    obj = walk.get()
    obj["spec"] = dict(spec)
    obj.pop("status", None)
    return subprocess.run(
        ["kubectl", "replace", "-n", walk.bed.ns, "-f", "-"],
        input=json.dumps(obj),
        env=walk.bed.k8s.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def walk_rows(walk: Walk, rows: list[Row], back: Check) -> None:
    """Each row on the live object; after an applied one the object is put back and waited on (``back``)."""
    original = walk.get()["spec"]
    for row in rows:
        if testbed.get_object(walk.bed.k8s, walk.resource, walk.name, walk.bed.ns) is None:
            raise AssertionError(f"{walk.resource}/{walk.name} is gone before {row.field}: its row must be last")
        answer = replace_spec(walk, edited(original, row.edit))
        if row.refused is not None:
            assert answer.returncode != 0, f"{walk.resource} {row.field}: accepted, expected refused"
            assert row.refused in answer.stderr, f"{walk.resource} {row.field}: {answer.stderr}"
            continue
        assert row.applied is not None
        assert answer.returncode == 0, f"{walk.resource} {row.field}: refused: {answer.stderr}"
        testbed.eventually(partial(row.applied, walk), timeout=TIMEOUT, what=f"{walk.resource} {row.field}: {row.how}")
        if not row.restore:
            obj = testbed.get_object(walk.bed.k8s, walk.resource, walk.name, walk.bed.ns)
            original = obj["spec"] if obj else original  # the rows after it start from here
            continue
        restored = replace_spec(walk, original)
        assert restored.returncode == 0, restored.stderr
        testbed.eventually(partial(back, walk), timeout=TIMEOUT, what=f"{walk.resource} back after {row.field}")


def walk_amlcompute(b: Bed) -> None:
    secret = ("create", "secret", "generic", "admin-password", "-n", b.ns)
    b.k8s.kubectl(*secret, "--from-literal=password=Walk-1-Passw0rd!")
    cname = compute_name()
    spec = {
        "workspace": WORKSPACE,
        "computeName": cname,
        "vmSize": "STANDARD_DS3_V2",
        "vmPriority": "Dedicated",
        "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": 1800},
        "adminUser": {
            "username": "azureuser",
            "passwordSecretRef": {"name": "admin-password"},
            "sshPublicKey": SSH_KEY,
        },
        "subnet": {"vnetName": "vnet", "subnetName": "default"},
        "tags": {"team": "ml"},
        "description": "walked field by field",
        "remoteLoginPortPublicAccess": "Disabled",
        "identity": {"type": "SystemAssigned"},
        "location": "westeurope",
        "enableNodePublicIp": False,
    }
    apply(
        b.k8s,
        b.ns,
        {"apiVersion": "amlops.io/v1alpha1", "kind": "AmlCompute", "metadata": {"name": "cpu"}, "spec": spec},
    )
    walk = Walk(b, "amlcompute", "cpu", {"compute": cname})
    testbed.eventually(lambda: ready(walk), timeout=TIMEOUT, what="amlcompute/cpu Ready")
    # The subnet's two names reach Azure as its id (half of them, now refused, was sent as no subnet at all).
    assert aml_body(walk)["properties"]["properties"]["subnet"]["id"].lower() == SUBNET_ID.lower()

    # The admin password: Azure sets it only at creation. A new one in the same Secret is not applied; the
    # AdminCredentialsCurrent condition says so (the Secret's uid and resourceVersion, never its data, compared).
    obj = wait_condition(b.k8s, "amlcompute", "cpu", b.ns, "AdminCredentialsCurrent", timeout=TIMEOUT)
    assert condition(obj, "AdminCredentialsCurrent")["reason"] == "AsCreated"
    recorded = obj["status"]["adminPasswordSecret"]
    assert set(recorded) == {"name", "uid", "resourceVersion"}
    assert "Walk-1-Passw0rd!" not in json.dumps(obj["status"])
    rotated = b.k8s.kubectl(*secret, "--from-literal=password=Walk-2-Passw0rd!", "--dry-run=client", "-o", "json")
    b.k8s.kubectl("apply", "-n", b.ns, "-f", "-", input_text=rotated)
    obj = wait_condition(b.k8s, "amlcompute", "cpu", b.ns, "AdminCredentialsCurrent", "False", timeout=TIMEOUT)
    changed = condition(obj, "AdminCredentialsCurrent")
    assert changed["reason"] == "SecretChangedSinceCreate"
    assert "create a new AmlCompute" in changed["message"]
    assert is_true(obj, "Ready"), "the cluster itself is fine: only its password is not the Secret's"
    assert obj["status"]["adminPasswordSecret"] == recorded

    walk_rows(walk, AMLCOMPUTE, ready)


def walk_workspacequota(b: Bed) -> None:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "WorkspaceQuota",
        "metadata": {"name": "quota"},
        "spec": {"workspace": WORKSPACE, "limits": [{"vmFamily": "standardDSv2Family", "limit": 16}]},
    }
    apply(b.k8s, b.ns, body)
    walk = Walk(b, "workspacequota", "quota")
    testbed.eventually(lambda: ready(walk), timeout=TIMEOUT, what="workspacequota/quota Ready")
    walk_rows(walk, WORKSPACEQUOTA, ready)


def walk_paralleljob(b: Bed) -> None:
    b.upload("inputs", files(40))
    b.job("walk", miniBatchSize="1", environmentVariables={"DELAY": "1"})
    walk = Walk(b, "paralleljob", "walk")
    testbed.eventually(
        lambda: (walk.get().get("status") or {}).get("miniBatches", {}).get("succeeded", 0) >= 1,
        timeout=TIMEOUT,
        what="paralleljob/walk running",
    )
    walk_rows(walk, PARALLELJOB, settled)
    b.k8s.kubectl("delete", "paralleljob", "walk", "-n", b.ns, "--wait=false")
    wait_gone(b.k8s, "paralleljob", "walk", b.ns, timeout=TIMEOUT)


def walk_batchcompute(b: Bed) -> None:
    obj = testbed.get_object(b.k8s, "batchcompute", "batch", b.ns)
    assert obj is not None
    walk = Walk(b, "batchcompute", "batch", {"compute": obj["spec"]["computeName"]})
    walk_rows(walk, BATCHCOMPUTE, ready)


def test_every_spec_field_is_applied_or_refused(bed: Bed) -> None:  # noqa: F811  (the fixture)
    """The tables walked on live objects: AmlCompute, WorkspaceQuota, a running ParallelJob, then the
    BatchCompute it ran on (last: its walk ends with the object deleted)."""
    walk_amlcompute(bed)
    walk_workspacequota(bed)
    walk_paralleljob(bed)
    walk_batchcompute(bed)


# ---------------------------------------------------------------------------- ARM ids and names in the schema


def aml(**spec: Any) -> dict[str, Any]:
    base = {"workspace": WORKSPACE, "computeName": "cids"}
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "AmlCompute",
        "metadata": {"name": "ids"},
        "spec": {**base, **spec},
    }


def batchc(**spec: Any) -> dict[str, Any]:
    base = {"workspace": WORKSPACE, "computeName": "cids"}
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "BatchCompute",
        "metadata": {"name": "ids"},
        "spec": {**base, **spec},
    }


NOT_AN_ID = "not-an-id"
SCHEMA_REFUSALS = [
    # Every field holding an ARM resource id is checked against the id's form: never sent to Azure.
    (
        "identity.userAssignedIdentities",
        aml(identity={"type": "UserAssigned", "userAssignedIdentities": [NOT_AN_ID]}),
        "should match",
    ),
    ("subnet.subnetId", aml(subnet={"subnetId": NOT_AN_ID}), "should match"),
    ("resourceId", batchc(resourceId=NOT_AN_ID), "should match"),
    ("virtualMachineImage.id", aml(virtualMachineImage={"id": NOT_AN_ID}), "should match"),
    # An id of another type of resource is no better.
    ("subnet.subnetId (an identity's id)", aml(subnet={"subnetId": IDENTITY_1}), "should match"),
    # Half a subnet was sent as none: the cluster became Ready outside the network.
    ("subnet.subnetName alone", aml(subnet={"subnetName": "default"}), "set subnet.subnetId, or subnet.vnetName"),
    ("subnet both forms", aml(subnet={"subnetId": SUBNET_ID, "vnetName": "vnet", "subnetName": "default"}), "not both"),
    # Names that reach another object follow its rules (a Secret, a region in a URL, a workspace).
    ("credentials.secretRef.name", aml(credentials={"secretRef": {"name": "../kube-system/x"}}), "should match"),
    (
        "adminUser.passwordSecretRef.name",
        aml(adminUser={"username": "u", "passwordSecretRef": {"name": "A_B"}}),
        "should match",
    ),
    ("location", aml(location="west europe/../x"), "should match"),
    ("workspace.name", aml(workspace={**WORKSPACE, "name": "ws/../x"}), "should match"),
    ("computeName", aml(computeName="1-not-a-name"), "should match"),
    (
        "batchCredentials.sharedKeySecretRef.name",
        batchc(
            resourceId=f"{ARM}/Microsoft.Batch/batchAccounts/{DEFAULT_BATCH_ACCOUNT}",
            batchCredentials={"sharedKeySecretRef": {"name": "a/b"}},
        ),
        "should match",
    ),
    (
        "batchAccount.accountName",
        batchc(batchAccount={"resourceGroup": "rg-amlops", "accountName": "Not_An_Account"}),
        "should match",
    ),
]


@pytest.mark.parametrize(("what", "manifest", "fragment"), SCHEMA_REFUSALS, ids=[r[0] for r in SCHEMA_REFUSALS])
def test_arm_ids_and_names_are_refused_by_the_apiserver(
    k8s: testbed.Testbed, namespace: str, what: str, manifest: dict[str, Any], fragment: str
) -> None:
    answer = try_apply(k8s, namespace, manifest)
    assert answer.returncode != 0, f"{what}: accepted"
    assert fragment in answer.stderr, answer.stderr
    assert testbed.get_object(k8s, manifest["kind"].lower(), "ids", namespace) is None


def test_every_commandjob_field_is_applied_or_refused(
    workspace: Workspace,  # noqa: F811  (the fixture)
    azurite: Azurite,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    """CommandJob's table on a running job (tests/e2e/test_commandjob.py's workspace: the emulator with Azurite,
    an AmlCompute, the training scripts)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    waiting_job(workspace, "walk", probe, inputs={"n": {"type": "integer", "value": "1"}}, outputs={"model": {}})
    b = Bed(workspace.k8s, workspace.namespace, workspace.azure, azurite, "unused", start_operator, workspace.operator)
    walk_rows(Walk(b, "commandjob", "walk"), COMMANDJOB, settled)
    (probe / "go").write_text("go")
