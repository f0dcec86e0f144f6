"""Compute resources: parsing PUT/PATCH bodies the way the ML RP does, and rendering them the way it answers.

Bodies are JSON-shaped (``dict[str, Any]``); every field read goes through the small checkers below so that a
malformed body becomes a 400 ``BadRequest``, never an exception. Unknown fields are ignored, as ARM RPs do.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from amlops_emulator.arm.catalogue import VmSize, find_size, unsupported
from amlops_emulator.arm.errors import bad_request
from amlops_emulator.arm.simulator import Cluster, ScaleSettings
from amlops_emulator.arm.versions import DEFAULT, ApiVersion

COMPUTE_TYPE = "Microsoft.MachineLearningServices/workspaces/computes"
AML_COMPUTE = "AmlCompute"
BATCH = "Batch"  # azureml-core's attach type; in no swagger enum (fidelity trap 4)
TENANT_ID = "00000000-0000-0000-0000-00000000000a"  # the emulator's one Entra tenant
DEFAULT_IDLE = "PT30M"  # the service default when scaleSettings omits nodeIdleTimeBeforeScaleDown

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_IDENTITY_TYPES = {
    "systemassigned": "SystemAssigned",
    "userassigned": "UserAssigned",
    "systemassigned,userassigned": "SystemAssigned,UserAssigned",
    "none": "None",
}
_PRIORITIES = {"dedicated": "Dedicated", "lowpriority": "LowPriority"}
_REMOTE_LOGIN = {"enabled": "Enabled", "disabled": "Disabled", "notspecified": "NotSpecified"}
_OS_TYPES = {"linux": "Linux", "windows": "Windows"}
_BATCH_ACCOUNT_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Batch/"
    r"batchAccounts/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


# -- checkers ---------------------------------------------------------------------------------------------------
def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"'{where}' must be a JSON object.")
    return value


def opt_obj(value: Any, where: str) -> dict[str, Any] | None:
    return None if value is None else obj(value, where)


def opt_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{where}' must be a string.")
    return value


def opt_bool(value: Any, where: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad_request(f"'{where}' must be a boolean.")
    return value


def opt_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{where}' must be an integer.")
    return value


def enum(value: Any, allowed: dict[str, str], where: str, default: str) -> str:
    text = opt_str(value, where)
    if text is None:
        return default
    canonical = allowed.get(text.replace(" ", "").lower())
    if canonical is None:
        raise bad_request(f"'{where}' must be one of {', '.join(sorted(set(allowed.values())))}; got '{text}'.")
    return canonical


def parse_duration(text: str, where: str) -> float:
    match = _DURATION.match(text)
    if match is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        raise bad_request(f"'{where}' must be an ISO 8601 duration such as 'PT5M'; got '{text}'.")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return (
        parts.get("days", 0.0) * 86400
        + parts.get("hours", 0.0) * 3600
        + parts.get("minutes", 0.0) * 60
        + parts.get("seconds", 0.0)
    )


def tags_of(value: Any) -> dict[str, str] | None:
    tags = opt_obj(value, "tags")
    if tags is not None and not all(isinstance(v, str) for v in tags.values()):
        raise bad_request("'tags' values must be strings.")
    return tags


def identity_of(value: Any, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """The identity as the service returns it: principal ids filled in, ``None`` type meaning no identity."""
    body = opt_obj(value, "identity")
    if body is None:
        return previous
    kind = enum(body.get("type"), _IDENTITY_TYPES, "identity.type", "None")
    if kind == "None":
        return None
    result: dict[str, Any] = {"type": kind}
    if "SystemAssigned" in kind:
        old = previous or {}
        result["principalId"] = old.get("principalId") or str(uuid.uuid4())
        result["tenantId"] = old.get("tenantId") or TENANT_ID
    if "UserAssigned" in kind:
        requested = obj(body.get("userAssignedIdentities") or {}, "identity.userAssignedIdentities")
        known = (previous or {}).get("userAssignedIdentities") or {}
        assigned = {}
        for arm_id, entry in requested.items():
            if entry is None:  # azureml-core removes a user-assigned identity by sending null for it
                continue
            assigned[arm_id] = known.get(arm_id) or {
                "principalId": str(uuid.uuid4()),
                "clientId": str(uuid.uuid4()),
            }
        if not assigned:
            raise bad_request("'identity.userAssignedIdentities' must name at least one identity.")
        result["userAssignedIdentities"] = assigned
    return result


def scale_of(value: Any, previous: ScaleSettings | None = None) -> ScaleSettings:
    body = obj(value, "properties.properties.scaleSettings")
    max_nodes = opt_int(body.get("maxNodeCount"), "scaleSettings.maxNodeCount")
    if max_nodes is None:
        if previous is None:
            raise bad_request("'scaleSettings.maxNodeCount' is required.")
        max_nodes = previous.max_nodes
    min_nodes = opt_int(body.get("minNodeCount"), "scaleSettings.minNodeCount")
    if min_nodes is None:
        min_nodes = 0 if previous is None else previous.min_nodes
    if min_nodes < 0 or max_nodes < 0:
        raise bad_request("Node counts must be greater than or equal to 0.")
    if min_nodes > max_nodes:
        raise bad_request(
            f"The minimum node count ({min_nodes}) must be less than or equal to the maximum ({max_nodes})."
        )
    if max_nodes > 1000:
        raise bad_request("'scaleSettings.maxNodeCount' must be at most 1000.")
    idle_text = opt_str(body.get("nodeIdleTimeBeforeScaleDown"), "scaleSettings.nodeIdleTimeBeforeScaleDown")
    if idle_text is None:
        idle_text = DEFAULT_IDLE if previous is None else previous.idle_text
    idle = parse_duration(idle_text, "scaleSettings.nodeIdleTimeBeforeScaleDown")
    return ScaleSettings(min_nodes, max_nodes, idle, idle_text)


# -- AmlCompute -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AmlSpec:
    vm_size: VmSize
    vm_priority: str
    scale: ScaleSettings
    os_type: str
    remote_login: str
    user_account: dict[str, Any] | None
    subnet: dict[str, Any] | None
    # AmlComputeProperties that later api-versions added (ApiVersion.aml_properties), as the client sent them.
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def low_priority(self) -> bool:
        return self.vm_priority == "LowPriority"


def _image(value: Any, where: str) -> dict[str, Any] | None:
    image = opt_obj(value, where)
    if image is not None and not opt_str(image.get("id"), f"{where}.id"):
        raise bad_request(f"'{where}.id' is required.")  # VirtualMachineImage.required: ["id"]
    return {"id": image["id"]} if image is not None else None


# The later AmlComputeProperties: their checkers, and what a GET shows when the client sent none.
_EXTRA_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "enableNodePublicIp": opt_bool,
    "isolatedNetwork": opt_bool,
    "virtualMachineImage": _image,
    "propertyBag": opt_obj,
}
# As the recording (test_compute.pyTestComputetest_aml_compute_create_and_delete.json) shows them when the client
# sent none: enableNodePublicIp true (also the swagger's default), isolatedNetwork false, virtualMachineImage null,
# and propertyBag {} on GETs (the initial 201 has no propertyBag key).
_EXTRA_DEFAULTS: dict[str, Any] = {
    "enableNodePublicIp": True,
    "isolatedNetwork": False,
    "virtualMachineImage": None,
    "propertyBag": {},
}


def extras_of(body: dict[str, Any], accepted: frozenset[str]) -> dict[str, Any]:
    """The properties this api-version knows. Others are ignored, as ARM RPs ignore unknown properties (no
    public recording shows the ML RP refusing one)."""
    extras = {name: _EXTRA_CHECKS[name](body.get(name), f"properties.properties.{name}") for name in accepted}
    return {name: value for name, value in extras.items() if value is not None}


def aml_spec_of(value: Any, version: ApiVersion = DEFAULT) -> AmlSpec:
    body = obj(value, "properties.properties")
    size_name = opt_str(body.get("vmSize"), "properties.properties.vmSize")
    if not size_name:
        raise bad_request("'properties.properties.vmSize' is required for AmlCompute.")
    # An unknown size is no 400: the create fails later, as Azure's does (state.ArmState.put).
    size = find_size(size_name) or unsupported(size_name)
    priority = enum(body.get("vmPriority"), _PRIORITIES, "vmPriority", "Dedicated")
    if priority == "LowPriority" and size.supported and not size.low_priority_capable:
        raise bad_request(f"The VM size '{size.name}' does not support low priority.")
    if body.get("scaleSettings") is None:
        raise bad_request("'properties.properties.scaleSettings' is required for AmlCompute.")
    user = opt_obj(body.get("userAccountCredentials"), "userAccountCredentials")
    if user is not None and not opt_str(user.get("adminUserName"), "userAccountCredentials.adminUserName"):
        raise bad_request("'userAccountCredentials.adminUserName' is required.")
    subnet = opt_obj(body.get("subnet"), "subnet")
    if subnet is not None and not opt_str(subnet.get("id"), "subnet.id"):
        raise bad_request("'subnet.id' is required.")
    return AmlSpec(
        vm_size=size,
        vm_priority=priority,
        scale=scale_of(body["scaleSettings"]),
        os_type=enum(body.get("osType"), _OS_TYPES, "osType", "Linux"),
        remote_login=enum(
            body.get("remoteLoginPortPublicAccess"), _REMOTE_LOGIN, "remoteLoginPortPublicAccess", "NotSpecified"
        ),
        user_account=user,
        subnet={"id": subnet["id"]} if subnet else None,
        extras=extras_of(body, version.aml_properties),
    )


def batch_account_of(resource_id: Any) -> tuple[str, str, str]:
    text = opt_str(resource_id, "properties.resourceId")
    match = _BATCH_ACCOUNT_ID.match(text or "")
    if match is None:
        raise bad_request(
            "'properties.resourceId' must be a Batch account id "
            "'/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Batch/batchAccounts/{name}'."
        )
    return match["sub"], match["rg"], match["name"]


# -- the stored resource ----------------------------------------------------------------------------------------
@dataclass
class ComputeRecord:
    arm_id: str
    name: str
    workspace_name: str
    compute_type: str
    location: str
    created_on: datetime
    modified_on: datetime
    tags: dict[str, str] | None = None
    identity: dict[str, Any] | None = None
    description: str | None = None
    resource_id: str | None = None  # Batch: the attached account
    disable_local_auth: bool | None = None  # Compute.disableLocalAuth (2021-07-01 and later)
    aml: AmlSpec | None = None
    cluster: Cluster | None = None
    operation_id: str | None = None  # the latest operation: it decides provisioningState (state.py)
    deleted_at: datetime | None = None

    @property
    def attached(self) -> bool:
        return self.compute_type != AML_COMPUTE


def render(
    record: ComputeRecord,
    provisioning_state: str,
    provisioning_errors: list[dict[str, Any]] | None = None,
    *,
    initial: bool = False,
    version: ApiVersion = DEFAULT,
    modified_on: datetime | None = None,
) -> dict[str, Any]:
    """The ``ComputeResource`` body in ``version``'s shape, as the recording of azure-ai-ml's
    ``test_aml_compute_create_and_delete`` shows it. ``initial`` gives a PUT's 201: vmSize upper-cased, every
    observed field null, credentials omitted. A create's 201 also has no ``computeLocation`` and ``tags`` null
    when none were sent; an update's 201 has both, and the BatchAI cluster as ``resourceId``. ``identity`` and
    ``sku`` are absent when there are none (never null keys). ``modified_on``: when the last operation ended (it
    advances then), else the record's."""
    provisioned = record.cluster is not None and record.cluster.provisioned
    creating = initial and record.modified_on == record.created_on  # the create's own 201 (or a joined retry)
    properties: dict[str, Any] = {
        "computeType": record.compute_type,
        "computeLocation": record.location,
        "description": record.description,
        "resourceId": record.resource_id,
        "provisioningState": provisioning_state,
        "createdOn": arm_time(record.created_on),
        "modifiedOn": arm_time(modified_on or record.modified_on),
        "provisioningErrors": provisioning_errors,
        "isAttachedCompute": record.attached,
    }
    if "disableLocalAuth" in version.compute_properties:
        properties["disableLocalAuth"] = bool(record.disable_local_auth)
    if creating:
        del properties["computeLocation"]
    if record.aml is not None:
        if provisioning_state == "Creating" and provisioned:
            # A PUT on an existing cluster shows the BatchAI cluster id while it runs, its 201 included.
            ws_prefix = record.arm_id.split("/providers/")[0]
            properties["resourceId"] = (
                f"{ws_prefix}/providers/Microsoft.BatchAI/workspaces/{record.workspace_name}/clusters/{record.name}"
            )
        properties["properties"] = _render_aml(record.aml, record.cluster, initial=initial, version=version)
    else:
        properties["properties"] = None
    body: dict[str, Any] = {
        "id": record.arm_id,
        "name": record.name,
        "type": COMPUTE_TYPE,
        "location": record.location,
        "tags": record.tags if record.tags is not None else (None if creating else {}),
    }
    if record.identity is not None:
        body["identity"] = _render_identity(record.identity, version)
    body["properties"] = properties
    return body


def _render_identity(identity: dict[str, Any] | None, version: ApiVersion) -> dict[str, Any] | None:
    if identity is None or not version.user_identity_tenant or "userAssignedIdentities" not in identity:
        return identity
    # 2021-07-01's local UserAssignedIdentity also declares tenantId (common-types v3 MSI, from 2022-05-01, not).
    users = {arm_id: {**entry, "tenantId": TENANT_ID} for arm_id, entry in identity["userAssignedIdentities"].items()}
    return {**identity, "userAssignedIdentities": users}


def _render_aml(spec: AmlSpec, cluster: Cluster | None, *, initial: bool, version: ApiVersion) -> dict[str, Any]:
    remote = spec.remote_login
    if remote == "NotSpecified" and not initial:
        # The swagger (AmlComputeProperties.remoteLoginPortPublicAccess): "NotSpecified - … closed on all nodes of
        # the cluster if VNet is defined, else is open all public nodes. It can be default only during cluster
        # creation time, after creation it will be either enabled or disabled."
        remote = "Disabled" if spec.subnet else "Enabled"
    body: dict[str, Any] = {
        "osType": spec.os_type,
        # Upper-cased in the 201 and in every GET after it (the recording); see test_c03's docstring.
        "vmSize": spec.vm_size.name.upper(),
        "vmPriority": spec.vm_priority,
        "scaleSettings": spec.scale.to_wire(),
        "subnet": spec.subnet,
        "remoteLoginPortPublicAccess": remote,
        "allocationState": None,
        "errors": None,
        "currentNodeCount": None,
        "targetNodeCount": None,
        "nodeStateCounts": None,
    }
    for name in sorted(version.aml_properties - ({"propertyBag"} if initial else set())):
        body[name] = spec.extras.get(name, _EXTRA_DEFAULTS[name])
    if not initial:
        body["allocationStateTransitionTime"] = None  # absent from the 201, null while the cluster is made
    if not initial and spec.user_account is not None:
        body["userAccountCredentials"] = {
            "adminUserName": spec.user_account.get("adminUserName"),
            "adminUserSshPublicKey": spec.user_account.get("adminUserSshPublicKey"),
            "adminUserPassword": None,  # the service never returns the password
        }
    if cluster is not None and cluster.provisioned and not initial:
        body.update(
            allocationState=cluster.allocation_state,
            allocationStateTransitionTime=(
                arm_time(cluster.allocation_changed, digits=3) if cluster.allocation_changed else None
            ),
            errors=cluster.errors,
            currentNodeCount=cluster.current_node_count(),
            targetNodeCount=cluster.target_node_count(),
            nodeStateCounts=cluster.node_state_counts(),
        )
    return body


def arm_time(moment: datetime, digits: int = 7) -> str:
    """A timestamp as the ML RP writes it (.NET's ``yyyy-MM-ddTHH:mm:ss.FFFFFFFzzz``): up to seven fractional
    digits with trailing zeros dropped, and ``+00:00`` rather than ``Z`` — ``2022-08-30T19:56:28.2261097+00:00``,
    ``…:59.264095+00:00``; ``allocationStateTransitionTime`` carries milliseconds only (``…:28.632+00:00``)."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}0"[:digits].rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "+00:00"
