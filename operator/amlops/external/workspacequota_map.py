"""WorkspaceQuota: pure mappings between the spec, the quotas/usages/vmSizes answers and the CR status. No I/O.

Wire format: ``Quotas_List`` answers one row per family for the subscription (``/subscriptions/{s}/quotas/{q}``)
and one per workspace of the location (``{workspace}/quotas/{q}``); ``Quotas_Update`` takes ``{value: [{id, type,
limit, unit}]}`` and answers each item with a ``status`` (``Success``, ``InvalidQuotaExceedsSubscriptionLimit``,
``InvalidVMFamilyName``, ``InvalidQuotaBelowClusterMinimum``, ``Failure``, ``Undefined``,
``OperationNotSupportedForSku``, ``OperationNotEnabledForRegion``: the swagger's ``UpdateWorkspaceQuotas``).
The operator's api-version, 2025-12-01 (``stable/2025-12-01/examples/Quota/list.json``, ``update.json``), names a
quota ``Standard_DSv2_Family_Cluster_Dedicated_vCPUs`` with types ``.../vmFamily/quotas`` and
``.../workspaces/quotas``; 2020-08-01 (``ListWorkspaceQuotasByVMFamily.json``, ``updateQuota.json``) named it
``StandardDSv2Family`` with types ``.../vmFamily/dedicatedCores/quotas`` and ``.../workspaces/dedicatedCores/
quotas``. Both are read; an update names a quota as Azure listed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from amlops.api.workspacequota import WorkspaceQuotaSpec
from amlops.external.amlcompute_map import family_key, family_usage_row, usage_row
from amlops.status import READY, REASON_UPDATING, RECONCILING, STALLED, find

JSON = dict[str, Any]
# The type of a workspace quota at 2025-12-01 (``examples/Quota/update.json``), for a family Azure did not list.
WORKSPACE_QUOTA_TYPE = "Microsoft.MachineLearningServices/workspaces/quotas"
_DEDICATED_SUFFIX = "clusterdedicatedvcpus"
SUCCESS = "Success"
# Azure answered an item without a status: nothing says it failed, nothing says it applied.
REASON_NO_STATUS = "QuotaUpdateUnanswered"


def quota_name(family: str) -> str:
    """The 2025-12-01 name of the family's dedicated quota: "Standard_DSv2_Family_Cluster_Dedicated_vCPUs" for
    "standardDSv2Family" (vmSizes' spelling) or "StandardDSv2Family" (2020-08-01's)."""
    core = family[len("standard") :] if family.lower().startswith("standard") else family
    core = core[: -len("family")] if core.lower().endswith("family") else core
    return f"Standard_{core.strip('_')}_Family_Cluster_Dedicated_vCPUs"


def quota_family(name: str) -> str:
    """The family key (``family_key``) of a quota's name or id segment, either version's spelling:
    "Standard_DSv2_Family_Cluster_Dedicated_vCPUs" and "StandardDSv2Family" are "standarddsv2family"."""
    key = family_key(name)
    return key[: -len(_DEDICATED_SUFFIX)] if key.endswith(_DEDICATED_SUFFIX) else key


def _dedicated(row: JSON, name: str) -> bool:
    """A dedicated-vCPU quota: 2020-08-01 says so in the type (``.../dedicatedCores/quotas``), 2025-12-01 in the
    name ("..._Cluster_Dedicated_vCPUs"); a low-priority row of either is not a workspace's dedicated limit."""
    kind, key = str(row.get("type") or "").lower(), family_key(name)
    return "lowpriority" not in kind and "lowpriority" not in key


def _rows(quotas: list[JSON], scope: str) -> dict[str, JSON]:
    """Family key → the dedicated quota row whose id is ``{scope}/quotas/{name}``."""
    prefix = f"{scope.lower()}/quotas/"
    out: dict[str, JSON] = {}
    for row in quotas:
        quota_id = str(row.get("id") or "")
        name = quota_id[len(prefix) :]
        if quota_id.lower().startswith(prefix) and "/" not in name and _dedicated(row, name):
            out[quota_family(name)] = row
    return out


def _limits(quotas: list[JSON], scope: str) -> dict[str, int]:
    return {fam: row["limit"] for fam, row in _rows(quotas, scope).items() if isinstance(row.get("limit"), int)}


def workspace_limits(quotas: list[JSON], workspace_id: str) -> dict[str, int]:
    return _limits(quotas, workspace_id)


def subscription_limits(quotas: list[JSON], subscription_id: str) -> dict[str, int]:
    return _limits(quotas, f"/subscriptions/{subscription_id}")


def diff(spec: WorkspaceQuotaSpec, quotas: list[JSON], workspace_id: str) -> tuple[list[JSON], list[str]]:
    """The ``Quotas_Update`` items that make Azure match the spec (empty when it does), and what differs."""
    listed = _rows(quotas, workspace_id)
    items: list[JSON] = []
    changes: list[str] = []
    for wanted in spec.limits:
        row = listed.get(quota_family(wanted.vm_family)) or {}
        have = row.get("limit") if isinstance(row.get("limit"), int) else None
        if have == wanted.limit:
            continue
        # The quota as Azure listed it (its id and type, in the spelling of its api-version); else 2025-12-01's.
        items.append(
            {
                "id": str(row.get("id") or f"{workspace_id}/quotas/{quota_name(wanted.vm_family)}"),
                "type": str(row.get("type") or WORKSPACE_QUOTA_TYPE),
                "limit": wanted.limit,
                "unit": "Count",
            }
        )
        changes.append(f"{wanted.vm_family} {have if have is not None else 'unknown'} → {wanted.limit}")
    return items, changes


def refusal(results: list[JSON], families: Sequence[str] = ()) -> tuple[str, str] | None:
    """(Azure's status, message) of the first item ``Quotas_Update`` did not apply; None when all succeeded. The
    message names the family as ``families`` (the spec's ``vmFamily`` values) spell it, with Azure's quota name
    beside it when that differs ("Standard_DSv2_Family_Cluster_Dedicated_vCPUs" at 2025-12-01)."""
    for item in results:
        status = str(item.get("status") or "")
        if status == SUCCESS:
            continue
        quota = str(item.get("id") or "").rsplit("/", 1)[-1]
        family = next((f for f in families if quota_family(f) == quota_family(quota)), quota)
        named = family if family == quota else f"{family} ({quota})"
        code = status or REASON_NO_STATUS
        return code, f"Azure did not set the {named} workspace quota to {item.get('limit')}: {code}"
    return None


REASON_CONTENDED = "QuotaContended"
MAX_DRIFT_REPAIRS = 3
EXCEEDS_SUBSCRIPTION = "InvalidQuotaExceedsSubscriptionLimit"
INVALID_FAMILY = "InvalidVMFamilyName"


def standing_refusal(
    spec: WorkspaceQuotaSpec,
    conditions: Sequence[Mapping[str, Any]],
    generation: int,
    quotas: list[JSON],
    subscription_id: str,
) -> tuple[str, str] | None:
    """Azure's refusal of this generation, while what Azure judged is still so: a limit above the subscription's
    limit as listed now, or a family the list does not have. Then nothing is sent again (the work queue would
    otherwise POST the same refused limits every minute); a subscription limit raised outside the cluster ends
    it, and so does a spec change. Other refusals (below what clusters hold, ``Failure``) are asked again."""
    stall = find(conditions, STALLED)
    if stall is None or stall.get("status") != "True" or stall.get("observedGeneration") != generation:
        return None
    reason, message = str(stall.get("reason") or ""), str(stall.get("message") or "")
    allowed = subscription_limits(quotas, subscription_id)
    wanted = [(quota_family(f.vm_family), f.limit) for f in spec.limits]
    if reason == EXCEEDS_SUBSCRIPTION and any(k in allowed and n > allowed[k] for k, n in wanted):
        return reason, message
    if reason == INVALID_FAMILY and any(k not in allowed for k, _ in wanted):
        return reason, message
    return None


def drift_repairs(
    status: Mapping[str, Any], generation: int, drifted: bool, changes: Sequence[str]
) -> tuple[dict[str, int] | None, tuple[str, str] | None]:
    """``status.driftRepairs`` after this observation, and Stalled ``QuotaContended`` once the limits of this
    generation have drifted away after being applied more than ``MAX_DRIFT_REPAIRS`` times. Without it, two
    writers of one workspace and family (two WorkspaceQuotas, or one and a script) overwrite each other for ever,
    each finding the other's limit on every pass. Counted only when the previous pass had applied this
    generation's limits (Reconciling ``Updating``) or found them in place (Ready), so the first apply and Azure's
    own refusals (Stalled) do not count."""
    previous = status.get("driftRepairs") or {}
    count = int(previous.get("count") or 0) if previous.get("generation") == generation else 0
    if drifted and _applied(status.get("conditions") or [], generation):
        count += 1
    record = {"generation": generation, "count": count} if count else None
    if count <= MAX_DRIFT_REPAIRS:
        return record, None
    message = (
        f"the limits were changed in Azure {count} times after amlops had applied them ({'; '.join(changes)}): "
        "another writer keeps changing them (a second WorkspaceQuota for this workspace and family, or a tool "
        "outside amlops). amlops stopped writing; remove the other writer, then change this spec."
    )
    return record, (REASON_CONTENDED, message)


def _applied(conditions: Sequence[Mapping[str, Any]], generation: int) -> bool:
    """The last pass applied this generation's limits, or found them in place."""
    ready, reconciling = find(conditions, READY), find(conditions, RECONCILING)
    updating = reconciling if reconciling is not None and reconciling.get("reason") == REASON_UPDATING else None
    return any(
        c is not None and c.get("status") == "True" and c.get("observedGeneration") == generation
        for c in (ready, updating)
    )


def _value(row: JSON | None) -> int | None:
    value = (row or {}).get("currentValue")
    return value if isinstance(value, int) else None


def _headroom(limit: int | None, used: int | None) -> int | None:
    return None if limit is None or limit < 0 else limit - (used or 0)


def families(
    spec: WorkspaceQuotaSpec, quotas: list[JSON], usages: list[JSON], workspace_id: str, subscription_id: str
) -> list[JSON]:
    """``status.families``: per family of the spec, in its order, the limits, usage and headroom."""
    ws_limits = workspace_limits(quotas, workspace_id)
    sub_limits = subscription_limits(quotas, subscription_id)
    out: list[JSON] = []
    for wanted in spec.limits:
        fam = wanted.vm_family
        ws_limit, sub_limit = ws_limits.get(quota_family(fam)), sub_limits.get(quota_family(fam))
        dedicated = _value(family_usage_row(usages, fam, low_priority=False))
        ws_used = _value(family_usage_row(usages, fam, low_priority=False, workspace_id=workspace_id))
        # Azure lists a workspace's row only while clusters of the family exist there: none is none in use.
        ws_used = ws_used if ws_used is not None else 0
        room = [h for h in (_headroom(ws_limit, ws_used), _headroom(sub_limit, dedicated)) if h is not None]
        out.append(
            {
                "vmFamily": fam,
                "workspaceLimit": ws_limit,
                "subscriptionLimit": sub_limit,
                "dedicatedUsage": dedicated,
                "workspaceDedicatedUsage": ws_used,
                "lowPriorityUsage": _value(family_usage_row(usages, fam, low_priority=True)),
                "headroom": min(room) if room else None,
            }
        )
    return out


def headroom(families_: list[JSON]) -> JSON:
    """The status fields the printer columns show (a column shows one value, not a list): the family with the
    least headroom, that headroom, and "family free/limit" of every family."""
    known = [f for f in families_ if f.get("headroom") is not None]
    tightest = min(known, key=lambda f: int(f["headroom"]), default=None)
    summary = ", ".join(
        f"{f['vmFamily']} {f.get('headroom') if f.get('headroom') is not None else '?'}/"
        f"{f.get('workspaceLimit') if f.get('workspaceLimit') is not None else '?'}"
        for f in families_
    )
    return {
        "tightestFamily": tightest["vmFamily"] if tightest else None,
        "minHeadroom": tightest["headroom"] if tightest else None,
        "headroomSummary": summary,
    }


def low_priority_total(usages: list[JSON]) -> JSON:
    """``lowPriorityLimit`` and ``lowPriorityUsage``: the subscription's low-priority total (every family)."""
    row = usage_row(usages, "", low_priority=True)
    limit = (row or {}).get("limit")
    return {"lowPriorityLimit": limit if isinstance(limit, int) else None, "lowPriorityUsage": _value(row)}


def vm_size(size: JSON) -> JSON:
    """One ``status.vmSizes`` entry, in Azure's ``VirtualMachineSize`` names."""
    keys = ("name", "family", "vCPUs", "memoryGB", "gpus", "maxResourceVolumeMB", "lowPriorityCapable")
    return {key: size.get(key) for key in keys}
