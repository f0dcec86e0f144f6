"""AmlCompute: pure mappings between the spec, ARM's wire format and the CR status. No I/O.

Wire format: api-version 2025-12-01 (``azure.ml.API_VERSION``) ``ComputeResource`` with ``properties.computeType:
AmlCompute`` and the cluster's own settings (``AmlComputeProperties``) one level deeper under
``properties.properties``; the PATCH body is ``ClusterUpdateParameters`` ``{properties: {properties:
{scaleSettings}}}``. tests/unit/test_arm_models.py checks every body built here against that version's models.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import isodate

from amlops.api.amlcompute import AmlComputeSpec, Identity
from amlops.external.compute_arm import failure as compute_failure
from amlops.external.compute_arm import provisioning_errors, timestamp
from amlops.reconcile.managed import OWNER_TAG

JSON = dict[str, Any]
TRANSITIONAL_PROVISIONING = frozenset({"creating", "updating", "deleting"})
NODE_STATES = ("idle", "running", "preparing", "unusable", "leaving", "preempted")


def iso_duration(seconds: int) -> str:
    return f"PT{seconds}S"


def parse_duration(value: str | None) -> int | None:
    """An ISO-8601 duration as ARM writes it (``PT2M``, ``PT120S``, ``P0DT0H2M0S``, ``PT0.5H``) → whole
    seconds; None when absent or not a duration of days and times (years and months have no fixed length)."""
    if not value:
        return None
    try:
        parsed = isodate.parse_duration(value.strip().upper())
    except (isodate.ISO8601Error, ValueError, TypeError):
        return None
    return int(parsed.total_seconds()) if isinstance(parsed, timedelta) else None


def _count(value: Any) -> int | None:
    """A node count as ARM may write it (a number, or its decimal string)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def subnet_id(spec: AmlComputeSpec) -> str | None:
    s = spec.subnet
    if s is None:
        return None
    if s.subnet_id:
        return s.subnet_id
    if s.vnet_name and s.subnet_name:
        rg = s.vnet_resource_group or spec.workspace.resource_group
        return (
            f"/subscriptions/{spec.workspace.subscription_id}/resourceGroups/{rg}/providers/"
            f"Microsoft.Network/virtualNetworks/{s.vnet_name}/subnets/{s.subnet_name}"
        )
    return None


def identity_to_arm(identity: Identity | None) -> JSON | None:
    if identity is None or identity.type == "None":
        return None
    out: JSON = {"type": identity.type}
    if "UserAssigned" in identity.type:
        out["userAssignedIdentities"] = {i: {} for i in identity.user_assigned_identities}
    return out


def scale_settings_to_arm(spec: AmlComputeSpec) -> JSON:
    s = spec.scale_settings
    return {
        "maxNodeCount": s.max_node_count,
        "minNodeCount": s.min_node_count,
        "nodeIdleTimeBeforeScaleDown": iso_duration(s.node_idle_time_before_scale_down),
    }


def to_arm(spec: AmlComputeSpec, *, owner: str, location: str, admin_password: str | None = None) -> JSON:
    """The PUT body for a new cluster (azureml-core ``provisioning_configuration`` → ARM)."""
    props: JSON = {
        "vmSize": spec.vm_size,
        "vmPriority": spec.vm_priority,
        "scaleSettings": scale_settings_to_arm(spec),
        "remoteLoginPortPublicAccess": spec.remote_login_port_public_access,
        "enableNodePublicIp": spec.enable_node_public_ip,
    }
    # Unset: not sent, so Azure's default applies (as it did before amlops knew these properties).
    optional: JSON = {
        "osType": spec.os_type,
        "virtualMachineImage": {"id": spec.virtual_machine_image.id} if spec.virtual_machine_image else None,
        "isolatedNetwork": spec.isolated_network,
        "propertyBag": spec.property_bag,
    }
    props.update({key: value for key, value in optional.items() if value is not None})
    if spec.admin_user is not None:
        creds: JSON = {"adminUserName": spec.admin_user.username}
        if spec.admin_user.ssh_public_key:
            creds["adminUserSshPublicKey"] = spec.admin_user.ssh_public_key
        if admin_password:
            creds["adminUserPassword"] = admin_password
        props["userAccountCredentials"] = creds
    if sid := subnet_id(spec):
        props["subnet"] = {"id": sid}
    compute: JSON = {"computeType": "AmlCompute", "properties": props}
    if spec.description:
        compute["description"] = spec.description
    if spec.disable_local_auth is not None:
        compute["disableLocalAuth"] = spec.disable_local_auth
    body: JSON = {"location": location, "tags": {**spec.tags, OWNER_TAG: owner}, "properties": compute}
    if identity := identity_to_arm(spec.identity):
        body["identity"] = identity
    return body


def _props(body: JSON) -> tuple[JSON, JSON]:
    compute = body.get("properties") or {}
    return compute, compute.get("properties") or {}


def provisioning_state(body: JSON) -> str:
    return str(_props(body)[0].get("provisioningState") or "")


def is_transitional(body: JSON) -> bool:
    return provisioning_state(body).lower() in TRANSITIONAL_PROVISIONING


def is_resizing(body: JSON) -> bool:
    return str(_props(body)[1].get("allocationState") or "").lower() == "resizing"


def failure(body: JSON) -> tuple[str, str] | None:
    """(code, message) when Azure reports the cluster as Failed."""
    return compute_failure(_props(body)[0])


def cluster_errors(props: JSON) -> list[JSON]:
    """``properties.properties.errors`` as status entries ``{code, message, details}``: what the cluster's nodes
    met (an allocation short of quota, a node setup failure). Each is ``{"error": {code, message, details}}``
    (common-types ``ErrorResponse`` at 2025-12-01, 2020-08-01's ``MachineLearningServiceError`` has the same
    shape); the details keep their code and message, as Azure gives them."""
    out: list[JSON] = []
    for item in props.get("errors") or []:
        error = item.get("error") if isinstance(item, dict) else None
        if not isinstance(error, dict):
            continue
        details = [_code_and_message(d) for d in error.get("details") or [] if isinstance(d, dict)]
        out.append({**_code_and_message(error), "details": details})
    return out


def _code_and_message(error: JSON) -> JSON:
    return {"code": str(error.get("code") or ""), "message": str(error.get("message") or "")}


def from_arm(body: JSON) -> JSON:
    """Status fields in Azure's names from a GET/list body."""
    compute, props = _props(body)
    counts = props.get("nodeStateCounts") or {}
    identity = body.get("identity") or {}
    status: JSON = {
        "resourceId": body.get("id"),
        "provisioningState": compute.get("provisioningState"),
        "provisioningErrors": provisioning_errors(compute),
        "createdOn": timestamp(compute.get("createdOn")),
        "modifiedOn": timestamp(compute.get("modifiedOn")),
        "allocationState": props.get("allocationState"),
        "allocationStateTransitionTime": timestamp(props.get("allocationStateTransitionTime")),
        "errors": cluster_errors(props),
        "currentNodeCount": props.get("currentNodeCount"),
        "targetNodeCount": props.get("targetNodeCount"),
        "nodeStateCounts": {f"{s}NodeCount": int(counts.get(f"{s}NodeCount") or 0) for s in NODE_STATES},
        "identity": {"principalId": identity.get("principalId"), "tenantId": identity.get("tenantId")}
        if identity.get("principalId")
        else None,
    }
    return status


def diff(spec: AmlComputeSpec, body: JSON) -> tuple[JSON, list[str]]:
    """The PATCH body that makes Azure match the spec (empty when up to date) and what differs, for humans.

    Only scale settings and identity can change on an existing cluster; the CRD makes the rest immutable. The
    scale settings go where api-version 2025-12-01's ``ClusterUpdateParameters`` has them (``properties.properties.
    scaleSettings``; 2020-08-01 had them one level up); ``identity`` is no field of that model, but azureml-core's
    ``add_identity``/``remove_identity`` PATCH it so, and Azure applies it.
    """
    _, props = _props(body)
    observed = props.get("scaleSettings") or {}
    wanted = scale_settings_to_arm(spec)
    changes: list[str] = []
    for key in ("minNodeCount", "maxNodeCount"):
        if _count(observed.get(key)) != wanted[key]:
            changes.append(f"scaleSettings.{key} {observed.get(key)} → {wanted[key]}")
    idle = spec.scale_settings.node_idle_time_before_scale_down
    if parse_duration(observed.get("nodeIdleTimeBeforeScaleDown")) != idle:
        changes.append(
            f"scaleSettings.nodeIdleTimeBeforeScaleDown {observed.get('nodeIdleTimeBeforeScaleDown')} → {idle}s"
        )
    patch: JSON = {}
    if changes:
        patch["properties"] = {"properties": {"scaleSettings": wanted}}
    wanted_identity = identity_to_arm(spec.identity)
    if _identity_key(body.get("identity")) != _identity_key(wanted_identity):
        patch["identity"] = wanted_identity or {"type": "None"}
        changes.append(f"identity {_identity_text(body.get('identity'))} → {_identity_text(wanted_identity)}")
    return patch, changes


def _identity_key(identity: JSON | None) -> tuple[str, tuple[str, ...]]:
    if not identity or str(identity.get("type", "None")).lower() == "none":
        return ("None", ())
    # ARM ids, and the identity type, are case-insensitive: Azure may answer in another case than asked.
    ids = tuple(sorted(k.lower() for k in (identity.get("userAssignedIdentities") or {})))
    return (str(identity.get("type")).replace(" ", "").lower(), ids)


def _identity_text(identity: JSON | None) -> str:
    if not identity or str(identity.get("type", "None")).lower() == "none":
        return "None"
    ids = sorted(identity.get("userAssignedIdentities") or {})
    return f"{identity.get('type')}{' ' + ', '.join(ids) if ids else ''}"


def vm_size_mismatch(spec: AmlComputeSpec, body: JSON) -> str | None:
    """Azure ignores a vmSize change on an existing cluster; say so instead of pretending to converge."""
    _, props = _props(body)
    actual = str(props.get("vmSize") or "")
    if actual and actual.lower() != spec.vm_size.lower():
        return f"the cluster in Azure has vmSize {actual}, the spec asks for {spec.vm_size}: Azure cannot change it"
    return None


def node_to_status(node: JSON) -> JSON:
    return {
        "nodeId": node.get("nodeId"),
        "privateIpAddress": node.get("privateIpAddress"),
        "publicIpAddress": node.get("publicIpAddress"),
        "port": node.get("port"),
        "nodeState": node.get("nodeState"),
        "runId": node.get("runId"),
    }


def vm_sizes_of(body: JSON) -> list[JSON]:
    """The sizes of a ``vmSizes`` answer: ``value`` at 2025-12-01 (every version from 2022-05-01). The 2020-08-01
    swagger (and SDK 1.0.1's model) named the list ``amlCompute``, that version's own example
    ``ListVMSizesResult.json`` ``value``; either is read, so the answer of any version is."""
    for key in ("amlCompute", "value"):
        sizes = body.get(key)
        if isinstance(sizes, list):
            return [s for s in sizes if isinstance(s, dict)]
    return []


def family_key(text: Any) -> str:
    """Letters and digits, lower-cased: "standardDSv2Family", "StandardDSv2Family" and "Standard DSv2 Family"
    are one family."""
    return "".join(c for c in str(text or "").lower() if c.isalnum())


def subscription_row(row: JSON) -> bool:
    """A subscription-wide row (``/subscriptions/{s}``, ``/subscriptions/{s}/usages[/...]``), not one of a
    workspace or a compute."""
    return "/resourcegroups/" not in str(row.get("id") or "").lower()


def usage_row(usages: list[JSON], family: str, low_priority: bool) -> JSON | None:
    """The usage row that bounds a new cluster, among the several Azure lists per family (subscription, each
    workspace, each compute; dedicated and low priority: ``ListUsages.json``).

    Dedicated: the subscription's row for the family. At 2020-08-01 it is ``name.value`` "StandardDSv2Family"
    with type ``.../vmFamily/dedicatedCores/usages`` (its low-priority twin has the same id and name, type
    ``.../vmFamily/lowPriorityCores/usages``, limit -1); from 2022-05-01 (2025-12-01, the operator's, included:
    ``examples/Usage/list.json``) ``name.value`` reads "Standard DSv2 Family Cluster Dedicated vCPUs" and the type
    is ``.../vmFamily/usages``. Low priority: the subscription's
    total ("TotalLowPriorityCores", later "Total Cluster LowPriority Regional vCPUs"), since the per-family
    low-priority rows are unlimited (-1)."""
    if low_priority:
        totals = ("totallowprioritycores", "totalclusterlowpriorityregionalvcpus")
        rows = [u for u in usages if subscription_row(u)]
        return next((u for u in rows if family_key((u.get("name") or {}).get("value")) in totals), None)
    return family_usage_row(usages, family, low_priority=False)


def _family_row(row: JSON, fam: str, low_priority: bool) -> bool:
    """Whether ``row`` is one of the family's, of the tier asked: "StandardDSv2Family" typed
    ``.../dedicatedCores/usages`` or ``.../lowPriorityCores/usages`` (2020-08-01), or "Standard DSv2 Family
    Cluster Dedicated vCPUs" / "... LowPriority vCPUs" (2022-05-01 on, 2025-12-01 included)."""
    name, kind = family_key((row.get("name") or {}).get("value")), str(row.get("type") or "").lower()
    tier = "lowpriority" if low_priority else "dedicated"
    return name == f"{fam}cluster{tier}vcpus" or (name == fam and ("lowprioritycores" in kind) == low_priority)


def family_usage_row(
    usages: list[JSON], family: str, *, low_priority: bool, workspace_id: str | None = None
) -> JSON | None:
    """One family's usage row of one tier: the subscription's (``workspace_id`` None), or the workspace's
    (``{workspace_id}/usages/{family}``; Azure lists it only while clusters of the family exist there)."""
    fam = family_key(family)
    if workspace_id is None:
        rows = [u for u in usages if subscription_row(u)]
    else:
        prefix = f"{workspace_id.lower()}/usages/"
        rows = [u for u in usages if str(u.get("id") or "").lower().startswith(prefix)]
    return next((row for row in rows if _family_row(row, fam, low_priority)), None)


def quota_check(
    spec: AmlComputeSpec, sizes: list[JSON], usages: list[JSON]
) -> tuple[JSON | None, str | None, tuple[bool, str] | None]:
    """(quota status, error when the VM size does not exist, (sufficient, message) for QuotaSufficient).

    No sizes at all (the list could not be read): no verdict on the size, Azure's own is awaited."""
    if not sizes:
        return None, None, None
    size = next((s for s in sizes if str(s.get("name", "")).lower() == spec.vm_size.lower()), None)
    if size is None:
        return None, f"VM size {spec.vm_size} is not available for AmlCompute in this location", None
    family = str(size.get("family") or "")
    cores = int(size.get("vCPUs") or 0)
    usage = usage_row(usages, family, spec.vm_priority == "LowPriority")
    limit = int(usage.get("limit") or 0) if usage else -1
    if usage is None or limit < 0:  # no row, or an unlimited one (-1): nothing to judge by
        return {"family": family}, None, None
    used = int(usage.get("currentValue") or 0)
    needed = cores * spec.scale_settings.max_node_count
    quota = {"family": family, "limit": limit, "usage": used, "coresPerNode": cores}
    headroom = limit - used
    message = (
        f"maxNodeCount {spec.scale_settings.max_node_count} x {cores} vCPUs = {needed} vCPUs; "
        f"{family} quota {limit}, in use {used}, free {headroom}"
    )
    return quota, None, (needed <= headroom, message)
