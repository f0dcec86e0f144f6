"""WorkspaceQuota's pure mappings, case by case (each case says why).

spec → ``Quotas_Update`` items, ``Quotas_List`` + ``Usages_List`` + ``VirtualMachineSizes_List`` → status, the
per-item ``status`` → Stalled. Wire shapes: azure-rest-api-specs machinelearningservices stable/2020-08-01
examples ``ListWorkspaceQuotasByVMFamily.json`` (ids ``/subscriptions/{s}/quotas/StandardDSv2Family`` and
``{workspace}/quotas/StandardDSv2Family``), ``updateQuota.json`` (items ``{id, type, limit, unit}``, answered
with ``status: Success``), ``ListUsages.json``; the status values are the swagger's ``UpdateWorkspaceQuotas``
enum. At the operator's api-version, 2025-12-01 (``stable/2025-12-01/examples/Quota/list.json``, ``update.json``,
``Usage/list.json``), a quota is ``.../quotas/Standard_DSv2_Family_Cluster_Dedicated_vCPUs`` typed
``.../workspaces/quotas`` or ``.../vmFamily/quotas``: both spellings are read (``QUOTAS_2025``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from amlops.api.workspacequota import WorkspaceQuotaSpec
from amlops.external import workspacequota_map as m

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
WS_ID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
OTHER_WS = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-2"
WORKSPACE = {"subscriptionId": SUB, "resourceGroup": "rg", "name": "ws-1"}
PROVIDER = "Microsoft.MachineLearningServices"


def spec(*limits: tuple[str, int]) -> WorkspaceQuotaSpec:
    return WorkspaceQuotaSpec.model_validate(
        {"workspace": WORKSPACE, "limits": [{"vmFamily": f, "limit": n} for f, n in limits]}
    )


def sub_quota(family: str, limit: int) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/quotas/{family}",
        "type": f"{PROVIDER}/vmFamily/dedicatedCores/quotas",
        "limit": limit,
        "name": {"value": family, "localizedValue": family},
        "unit": "Count",
    }


def ws_quota(family: str, limit: int, ws: str = WS_ID) -> dict[str, Any]:
    return {
        **sub_quota(family, limit),
        "id": f"{ws}/quotas/{family}",
        "type": f"{PROVIDER}/workspaces/dedicatedCores/quotas",
    }


def usage(usage_id: str, kind: str, name: str, current: int, limit: int) -> dict[str, Any]:
    return {
        "id": usage_id,
        "type": f"{PROVIDER}/{kind}/usages",
        "unit": "Count",
        "currentValue": current,
        "limit": limit,
        "name": {"value": name, "localizedValue": name},
    }


QUOTAS = [
    sub_quota("StandardDSv2Family", 24),
    ws_quota("StandardDSv2Family", 24),
    ws_quota("StandardDSv2Family", 12, OTHER_WS),
    sub_quota("StandardNCFamily", 12),
    ws_quota("StandardNCFamily", 0),
]


def quota_2025(scope: str, family: str, limit: int) -> dict[str, Any]:
    """A row of ``stable/2025-12-01/examples/Quota/list.json``: "Standard_DSv2_Family_Cluster_Dedicated_vCPUs"."""
    name = f"Standard_{family}_Family_Cluster_Dedicated_vCPUs"
    kind = "vmFamily" if "/resourceGroups/" not in scope else "workspaces"
    return {
        "id": f"{scope}/quotas/{name}",
        "type": f"{PROVIDER}/{kind}/quotas",
        "limit": limit,
        "name": {"value": name.replace("_", " "), "localizedValue": name.replace("_", " ")},
        "unit": "Count",
    }


QUOTAS_2025 = [
    quota_2025(f"/subscriptions/{SUB}", "DSv2", 24),
    quota_2025(WS_ID, "DSv2", 24),
    quota_2025(OTHER_WS, "DSv2", 12),
    quota_2025(f"/subscriptions/{SUB}", "NC", 12),
    quota_2025(WS_ID, "NC", 0),
]
USAGES = [
    usage(f"/subscriptions/{SUB}", "totalLowPriorityCores", "TotalLowPriorityCores", 6, 100),
    usage(f"/subscriptions/{SUB}/usages/StandardDSv2Family", "vmFamily/dedicatedCores", "StandardDSv2Family", 10, 24),
    usage(f"{WS_ID}/usages/StandardDSv2Family", "workspaces/dedicatedCores", "StandardDSv2Family", 4, 24),
    usage(f"{OTHER_WS}/usages/StandardDSv2Family", "workspaces/dedicatedCores", "StandardDSv2Family", 6, 12),
    usage(f"/subscriptions/{SUB}/usages/StandardDSv2Family", "vmFamily/lowPriorityCores", "StandardDSv2Family", 2, -1),
    usage(f"/subscriptions/{SUB}/usages/StandardNCFamily", "vmFamily/dedicatedCores", "StandardNCFamily", 0, 12),
]


@dataclass(frozen=True)
class Diff:
    reason: str
    limits: tuple[tuple[str, int], ...]
    quotas: list[dict[str, Any]]
    expected: list[tuple[str, int]]  # (quota id's family segment, limit) of each item sent
    kind: str = f"{PROVIDER}/workspaces/dedicatedCores/quotas"  # the type of each item sent


DIFFS = [
    Diff("the limit Azure has already: nothing to send", (("standardDSv2Family", 24),), QUOTAS, []),
    Diff(
        "a new limit: one item, the family spelt as the quotas API does (updateQuota.json)",
        (("standardDSv2Family", 16),),
        QUOTAS,
        [("StandardDSv2Family", 16)],
    ),
    Diff(
        "only the families that differ are sent; the other workspace's row is not this one's",
        (("StandardDSv2Family", 12), ("standardNCFamily", 0)),
        QUOTAS,
        [("StandardDSv2Family", 12)],
    ),
    Diff(
        "a family Azure does not list for the workspace is sent in 2025-12-01's spelling (update.json): Azure "
        "judges it (InvalidVMFamilyName)",
        (("standardXYZFamily", 4),),
        QUOTAS,
        [("Standard_XYZ_Family_Cluster_Dedicated_vCPUs", 4)],
        f"{PROVIDER}/workspaces/quotas",
    ),
    Diff("limit 0 is a limit, not absence", (("standardDSv2Family", 0),), QUOTAS, [("StandardDSv2Family", 0)]),
    Diff("2025-12-01: the limit Azure has already", (("standardDSv2Family", 24),), QUOTAS_2025, []),
    Diff(
        "2025-12-01: the quota named and typed as Azure listed it (Quota/list.json, update.json)",
        (("StandardDSv2Family", 16), ("standardNCFamily", 0)),
        QUOTAS_2025,
        [("Standard_DSv2_Family_Cluster_Dedicated_vCPUs", 16)],
        f"{PROVIDER}/workspaces/quotas",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in DIFFS])
def test_diff(case: Diff) -> None:
    items, changes = m.diff(spec(*case.limits), case.quotas, WS_ID)
    assert [(i["id"].rsplit("/", 1)[-1], i["limit"]) for i in items] == case.expected, case.reason
    assert len(changes) == len(items), case.reason
    for item in items:
        assert item["id"].startswith(f"{WS_ID}/quotas/"), case.reason
        assert (item["type"], item["unit"]) == (case.kind, "Count"), case.reason


@pytest.mark.parametrize(
    ("reason", "results", "expected"),
    [
        ("every item Success: applied", [{"id": f"{WS_ID}/quotas/StandardDSv2Family", "status": "Success"}], None),
        (
            "above the subscription's limit: Azure's status is the reason",
            [
                {"id": f"{WS_ID}/quotas/StandardDSv2Family", "status": "Success", "limit": 4},
                {
                    "id": f"{WS_ID}/quotas/StandardNCFamily",
                    "status": "InvalidQuotaExceedsSubscriptionLimit",
                    "limit": 99,
                },
            ],
            "InvalidQuotaExceedsSubscriptionLimit",
        ),
        (
            "an unknown family",
            [{"id": "x/quotas/StandardXYZFamily", "status": "InvalidVMFamilyName"}],
            "InvalidVMFamilyName",
        ),
        ("no status at all is no proof of success", [{"id": "x/quotas/StandardNCFamily"}], m.REASON_NO_STATUS),
        (
            "Failure (the swagger's generic value) is refused too",
            [{"id": "x/quotas/F", "status": "Failure"}],
            "Failure",
        ),
    ],
)
def test_refusal(reason: str, results: list[dict[str, Any]], expected: str | None) -> None:
    refused = m.refusal(results)
    assert (refused[0] if refused else None) == expected, reason
    if refused:
        assert results[-1]["id"].rsplit("/", 1)[-1] in refused[1], reason


def test_a_refusal_names_the_family_as_the_spec_does() -> None:
    """At 2025-12-01 Azure names the quota "Standard_DSv2_Family_Cluster_Dedicated_vCPUs" (Quota/update.json); the
    message says the spec's "standardDSv2Family" first, Azure's name beside it."""
    results = [
        {
            "id": f"{WS_ID}/quotas/Standard_DSv2_Family_Cluster_Dedicated_vCPUs",
            "status": "InvalidQuotaExceedsSubscriptionLimit",
            "limit": 500,
        }
    ]
    refused = m.refusal(results, ["standardNCFamily", "standardDSv2Family"])
    assert refused == (
        "InvalidQuotaExceedsSubscriptionLimit",
        "Azure did not set the standardDSv2Family (Standard_DSv2_Family_Cluster_Dedicated_vCPUs) workspace quota to "
        "500: InvalidQuotaExceedsSubscriptionLimit",
    )


@dataclass(frozen=True)
class Families:
    reason: str
    family: str
    expected: dict[str, Any]


FAMILIES = [
    Families(
        "limits from both scopes; usage: subscription and workspace dedicated, low priority; headroom the tighter",
        "standardDSv2Family",
        {
            "workspaceLimit": 24,
            "subscriptionLimit": 24,
            "dedicatedUsage": 10,
            "workspaceDedicatedUsage": 4,
            "lowPriorityUsage": 2,
            "headroom": 14,  # workspace 24 - 4 = 20, subscription 24 - 10 = 14
        },
    ),
    Families(
        "no workspace usage row (Azure lists it only while clusters exist): none in use; workspace limit 0 binds",
        "StandardNCFamily",
        {
            "workspaceLimit": 0,
            "subscriptionLimit": 12,
            "dedicatedUsage": 0,
            "workspaceDedicatedUsage": 0,
            "lowPriorityUsage": None,
            "headroom": 0,
        },
    ),
    Families(
        "a family Azure does not know: nothing to report, no headroom invented",
        "standardXYZFamily",
        {
            "workspaceLimit": None,
            "subscriptionLimit": None,
            "dedicatedUsage": None,
            "workspaceDedicatedUsage": 0,
            "lowPriorityUsage": None,
            "headroom": None,
        },
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in FAMILIES])
def test_families(case: Families) -> None:
    (row,) = m.families(spec((case.family, 1)), QUOTAS, USAGES, WS_ID, SUB)
    assert row == {"vmFamily": case.family, **case.expected}, case.reason


def test_families_read_2025_12_01_names() -> None:
    """The same limits and usage as ``QUOTAS``/``USAGES``, in 2025-12-01's spelling (Quota/list.json: ids
    ``.../quotas/Standard_DSv2_Family_Cluster_Dedicated_vCPUs``; Usage/list.json: "Standard DSv2 Family Cluster
    Dedicated vCPUs" typed ``.../vmFamily/usages``, the low-priority total "Total Cluster LowPriority Regional
    vCPUs"), give the same status."""
    dsv2 = "Standard DSv2 Family Cluster Dedicated vCPUs"
    usages = [
        usage(f"/subscriptions/{SUB}/usages", "lowPriorityCores", "Total Cluster LowPriority Regional vCPUs", 6, 100),
        usage(f"/subscriptions/{SUB}/usages/Standard_DSv2_Family_Cluster_Dedicated_vCPUs", "vmFamily", dsv2, 10, 24),
        usage(f"{WS_ID}/usages/Standard_DSv2_Family_Cluster_Dedicated_vCPUs", "workspaces", dsv2, 4, 24),
        usage(
            f"/subscriptions/{SUB}/usages/Standard_DSv2_Family_Cluster_LowPriority_vCPUs",
            "vmFamily",
            "Standard DSv2 Family Cluster LowPriority vCPUs",
            2,
            -1,
        ),
    ]
    new = m.families(spec(("standardDSv2Family", 1)), QUOTAS_2025, usages, WS_ID, SUB)
    old = m.families(spec(("standardDSv2Family", 1)), QUOTAS, USAGES, WS_ID, SUB)
    assert new == old
    assert new[0]["workspaceLimit"] == 24
    assert new[0]["headroom"] == 14
    assert m.low_priority_total(usages) == m.low_priority_total(USAGES)


def test_families_keep_the_spec_order() -> None:
    """The printer columns list families and headroom side by side: both in the order of spec.limits."""
    rows = m.families(spec(("standardNCFamily", 0), ("standardDSv2Family", 1)), QUOTAS, USAGES, WS_ID, SUB)
    assert [r["vmFamily"] for r in rows] == ["standardNCFamily", "standardDSv2Family"]


@pytest.mark.parametrize(
    ("reason", "families", "expected"),
    [
        (
            "the family with the least headroom is the one shown",
            [
                {"vmFamily": "a", "headroom": 14, "workspaceLimit": 24},
                {"vmFamily": "b", "headroom": 0, "workspaceLimit": 0},
            ],
            {"tightestFamily": "b", "minHeadroom": 0, "headroomSummary": "a 14/24, b 0/0"},
        ),
        (
            "a family Azure does not know has no headroom: not the tightest, '?' in the summary",
            [
                {"vmFamily": "x", "headroom": None, "workspaceLimit": None},
                {"vmFamily": "a", "headroom": 3, "workspaceLimit": 4},
            ],
            {"tightestFamily": "a", "minHeadroom": 3, "headroomSummary": "x ?/?, a 3/4"},
        ),
        (
            "nothing known: nothing shown",
            [{"vmFamily": "x", "headroom": None}],
            {"tightestFamily": None, "minHeadroom": None, "headroomSummary": "x ?/?"},
        ),
    ],
)
def test_headroom(reason: str, families: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert m.headroom(families) == expected, reason


def test_low_priority_total_and_vm_size() -> None:
    assert m.low_priority_total(USAGES) == {"lowPriorityLimit": 100, "lowPriorityUsage": 6}
    assert m.low_priority_total([]) == {"lowPriorityLimit": None, "lowPriorityUsage": None}
    size = {
        "name": "Standard_NC6",
        "family": "standardNCFamily",
        "vCPUs": 6,
        "gpus": 1,
        "osVhdSizeMB": 1047552,
        "maxResourceVolumeMB": 389120,
        "memoryGB": 56.0,
        "lowPriorityCapable": False,
        "premiumIO": False,
    }
    assert m.vm_size(size) == {
        "name": "Standard_NC6",
        "family": "standardNCFamily",
        "vCPUs": 6,
        "memoryGB": 56.0,
        "gpus": 1,
        "maxResourceVolumeMB": 389120,
        "lowPriorityCapable": False,
    }


@pytest.mark.parametrize(
    ("reason", "limits", "refused"),
    [
        ("a valid family and limit", [{"vmFamily": "standardDSv2Family", "limit": 0}], False),
        ("quotas' capitalised spelling", [{"vmFamily": "StandardNCASv3_T4Family", "limit": 8}], False),
        ("not a family name", [{"vmFamily": "Standard_DS3_v2", "limit": 8}], True),
        ("negative limit", [{"vmFamily": "standardDSv2Family", "limit": -1}], True),
        ("above int32", [{"vmFamily": "standardDSv2Family", "limit": 2**31}], True),
        ("no limits at all", [], True),
    ],
)
def test_the_model_refuses_what_the_schema_refuses(reason: str, limits: list[dict[str, Any]], refused: bool) -> None:
    """The pydantic model carries the CRD's rules (the CEL uniqueness rule is the apiserver's: e2e)."""
    try:
        WorkspaceQuotaSpec.model_validate({"workspace": WORKSPACE, "limits": limits})
    except ValueError:
        assert refused, reason
    else:
        assert not refused, reason


def stalled(reason: str, generation: int = 2) -> list[dict[str, Any]]:
    return [{"type": "Stalled", "status": "True", "reason": reason, "message": "m", "observedGeneration": generation}]


@pytest.mark.parametrize(
    ("reason", "limits", "conditions", "expected"),
    [
        (
            "refused above the subscription's 24, still above it: no second POST",
            (("standardDSv2Family", 500),),
            stalled(m.EXCEEDS_SUBSCRIPTION),
            m.EXCEEDS_SUBSCRIPTION,
        ),
        (
            "the subscription's limit now allows it (raised outside the cluster): ask Azure again",
            (("standardDSv2Family", 20),),
            stalled(m.EXCEEDS_SUBSCRIPTION),
            None,
        ),
        (
            "a refusal of an earlier generation is not this spec's",
            (("standardDSv2Family", 500),),
            stalled(m.EXCEEDS_SUBSCRIPTION, generation=1),
            None,
        ),
        (
            "an unknown family Azure still does not list",
            (("standardXYZFamily", 4),),
            stalled(m.INVALID_FAMILY),
            m.INVALID_FAMILY,
        ),
        (
            "below what clusters hold: usage may drop, Azure judges again",
            (("standardDSv2Family", 1),),
            stalled("InvalidQuotaBelowClusterMinimum"),
            None,
        ),
        ("not Stalled: nothing stands", (("standardDSv2Family", 500),), [], None),
    ],
)
def test_standing_refusal(
    reason: str, limits: tuple[tuple[str, int], ...], conditions: list[dict[str, Any]], expected: str | None
) -> None:
    refused = m.standing_refusal(spec(*limits), conditions, 2, QUOTAS, SUB)
    assert (refused[0] if refused else None) == expected, reason


def _ready(generation: int, status: str = "True") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "observedGeneration": generation}


@pytest.mark.parametrize(
    ("status", "drifted", "count", "contended"),
    [
        pytest.param({}, True, None, False, id="the first apply is no repair"),
        pytest.param(
            {"conditions": [{"type": "Reconciling", "status": "True", "reason": "Updating", "observedGeneration": 2}]},
            True,
            1,
            False,
            id="drift right after our own update (two writers in turn): 1",
        ),
        pytest.param(
            {"conditions": [{"type": "Reconciling", "status": "True", "reason": "Creating", "observedGeneration": 2}]},
            True,
            None,
            False,
            id="another Reconciling reason is no apply",
        ),
        pytest.param({"conditions": [_ready(2)]}, False, None, False, id="converged and unchanged: nothing"),
        pytest.param({"conditions": [_ready(2)]}, True, 1, False, id="drift after Ready of this generation: 1"),
        pytest.param({"conditions": [_ready(1)]}, True, None, False, id="Ready of an older generation: a new spec"),
        pytest.param(
            {"conditions": [_ready(2, "False")], "driftRepairs": {"generation": 2, "count": 2}},
            True,
            2,
            False,
            id="not Ready before (applying, or Azure refused): not counted again",
        ),
        pytest.param(
            {"conditions": [_ready(2)], "driftRepairs": {"generation": 2, "count": 3}},
            True,
            4,
            True,
            id="past the limit: Stalled, no more writes",
        ),
        pytest.param(
            {"conditions": [_ready(2, "False")], "driftRepairs": {"generation": 2, "count": 4}},
            False,
            4,
            True,
            id="stays Stalled while the generation is the same",
        ),
        pytest.param(
            {"conditions": [_ready(1)], "driftRepairs": {"generation": 1, "count": 4}},
            True,
            None,
            False,
            id="a spec change starts the count again",
        ),
    ],
)
def test_drift_repairs(status: dict[str, Any], drifted: bool, count: int | None, contended: bool) -> None:
    record, failure = m.drift_repairs(status, 2, drifted, ["standardNCFamily 9 → 6"])
    assert (record or {}).get("count") == count
    assert (failure is not None) is contended
    if failure:
        assert failure[0] == m.REASON_CONTENDED
        assert "standardNCFamily 9 → 6" in failure[1]
