"""C10-C16: paged lists (computes, nodes), VM sizes, usages, quotas, and attaching a Batch account."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.machinelearningservices import models

from amlops_emulator.arm.state import ArmSettings
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT
from amlops_emulator.server import RunningEmulator

from .conftest import BASE, FAST, RG, SUB, WS, Arm, Starter, aml_body, client_for, session_for

pytestmark = pytest.mark.emulator

LOC = "westeurope"
LOCATION = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/{LOC}"
WS_ID = BASE  # the seeded workspace's ARM id


def _io(body: dict[str, Any]) -> Any:
    return io.BytesIO(json.dumps(body).encode())


@pytest.fixture
async def paged(start_emulator: Starter) -> RunningEmulator:
    return await start_emulator(speed=FAST, arm=ArmSettings(page_size=2))


async def test_c10_list_follows_next_link_with_the_clients_api_version(paged: RunningEmulator) -> None:
    """C10: five computes in pages of two: the SDK follows nextLink (rewriting api-version) and sees all."""
    async with session_for(paged) as session:
        arm = Arm(paged, session)
        for index in range(5):
            await arm.call("PUT", f"{BASE}/computes/cpu{index}", aml_body("Standard_DS2_v2"))
        status, _, first = await arm.call("GET", f"{BASE}/computes")
        assert status == 200
        assert len(first["value"]) == 2
        assert first["nextLink"].startswith(f"{paged.arm_url}{BASE}/computes?")
        assert "$skiptoken=" in first["nextLink"]
        async with client_for(paged) as client:
            names = [c.name async for c in client.machine_learning_compute.list_by_workspace(RG, WS)]
        assert names == [f"cpu{i}" for i in range(5)]
        stats = await arm.control("GET", "/stats")
        followed = [c for c in stats["recent"] if c["operation"] == "MachineLearningCompute_ListByWorkspace"]
        assert len(followed) == 1 + 3  # our raw call, then the SDK's three pages


async def test_c10_a_compute_created_between_pages_moves_no_other_across_them(paged: RunningEmulator) -> None:
    """C10: the skip token is opaque to clients (the SDK follows nextLink verbatim); the emulator's names the last
    compute of the page, so a compute created or deleted while a client pages neither repeats nor hides one still
    to come (with an offset, a compute created before the next page's start would repeat one). Not a claim about
    Azure's order, which no public source gives: a property clients rely on, kept at the cost of a page."""
    async with session_for(paged) as session:
        arm = Arm(paged, session)
        for name in ("cpu1", "cpu3", "cpu5", "cpu7"):
            await arm.call("PUT", f"{BASE}/computes/{name}", aml_body("Standard_DS2_v2"))
        _, _, first = await arm.call("GET", f"{BASE}/computes")
        assert [c["name"] for c in first["value"]] == ["cpu1", "cpu3"]
        await arm.call("PUT", f"{BASE}/computes/cpu0", aml_body("Standard_DS2_v2"))  # before the next page
        _, _, second = await arm.call("GET", first["nextLink"].removeprefix(paged.arm_url))
        assert [c["name"] for c in second["value"]] == ["cpu5", "cpu7"]
        assert second["nextLink"] is None


async def test_c10_empty_workspace_lists_nothing(ml_client: Any) -> None:
    """C10: a collection GET under existing parents is an empty 200, never an error."""
    assert [c async for c in ml_client.machine_learning_compute.list_by_workspace(RG, WS)] == []


async def test_c11_list_nodes_pages_and_is_followed_with_get(paged: RunningEmulator) -> None:
    """C11: POST listNodes pages nodes; the SDK follows nextLink with GET; running nodes carry a runId."""
    async with session_for(paged) as session, client_for(paged) as client:
        arm = Arm(paged, session)
        await (
            await client.machine_learning_compute.begin_create_or_update(
                RG, WS, "cpu", _io(aml_body("Standard_DS2_v2", min_nodes=3, max_nodes=4))
            )
        ).result()
        await arm.advance(120)
        await arm.control("POST", "/arm/workload", {"computeId": f"{BASE}/computes/cpu", "busyNodes": 1})
        status, _, page = await arm.call("POST", f"{BASE}/computes/cpu/listNodes")
        assert status == 200
        assert page["computeType"] == "AmlCompute"
        assert len(page["nodes"]) == 2
        assert page["nextLink"]
        # listNodes.json: a running node names its runId; an idle one has no runId key at all (not a null).
        assert all(("runId" in n) == (n["nodeState"] == "running") for n in page["nodes"])
        nodes = [n async for n in client.machine_learning_compute.list_nodes(RG, WS, "cpu")]
        assert len(nodes) == 3
        assert len({n.node_id for n in nodes}) == 3
        assert sorted(str(n.node_state) for n in nodes) == ["idle", "idle", "running"]
        running = next(n for n in nodes if n.node_state == "running")
        assert running.run_id
        assert running.port == 50000
        assert (running.private_ip_address or "").startswith("10.")
        stats = await arm.control("GET", "/stats")
        methods = [c["method"] for c in stats["recent"] if c["operation"] == "MachineLearningCompute_ListNodes"]
        assert methods[-2:] == ["POST", "GET"]


async def test_c12_vm_sizes_use_the_aml_compute_key(ml_client: Any, arm: Arm) -> None:
    """C12: 2020-08-01 wraps sizes in "amlCompute" (trap 1); later api-versions use "value"."""
    result = await ml_client.virtual_machine_sizes.list(LOC)
    names = {s.name for s in result.aml_compute}
    assert {"Standard_D1_v2", "Standard_DS2_v2", "Standard_E4s_v3", "Standard_F4s_v2", "Standard_NC6"} <= names
    assert {"Standard_ND40rs_v2", "Standard_NC6s_v3"} <= names
    status, _, body = await arm.call("GET", f"{LOCATION}/vmSizes")
    assert status == 200
    assert list(body) == ["amlCompute"]
    d1 = next(s for s in body["amlCompute"] if s["name"] == "Standard_D1_v2")
    assert {k: d1[k] for k in ("family", "vCPUs", "gpus", "osVhdSizeMB", "maxResourceVolumeMB", "memoryGB")} == {
        "family": "standardDv2Family",
        "vCPUs": 1,
        "gpus": 0,
        "osVhdSizeMB": 1047552,
        "maxResourceVolumeMB": 51200,
        "memoryGB": 3.5,
    }
    assert d1["lowPriorityCapable"] is True
    assert d1["premiumIO"] is False
    assert d1["supportedComputeTypes"][0] == "AmlCompute"
    assert d1["estimatedVMPrices"]["billingCurrency"] == "USD"
    nc = next(s for s in body["amlCompute"] if s["name"] == "Standard_NC24")
    assert nc["gpus"] == 4
    _, _, newer = await arm.call("GET", f"{LOCATION}/vmSizes", api_version="2024-10-01")
    assert list(newer) == ["value"]


def usage(usages: list[models.Usage], name: str) -> models.Usage:
    return next(u for u in usages if name_of(u) == name)


def name_of(row: models.Usage) -> str | None:
    return row.name.value if row.name is not None else None


async def test_c13_usages_follow_node_counts(frozen: RunningEmulator, frozen_arm: Arm) -> None:
    """C13: the rows of ``stable/2020-08-01/examples/ListUsages.json`` (azure-rest-api-specs): the subscription's
    totals with id ``/subscriptions/{s}``, a row per VM family with id ``/subscriptions/{s}/usages/{Family}`` and a
    capitalised ``name.value``, then each workspace's and each cluster's row of that family (where clusters are),
    then the low-priority rows, whose family rows have ``limit: -1``. ``currentValue`` follows the nodes.

    From 2022-05-01 the example (``examples/Usage/list.json``) spells names as display names ("Standard DSv2 Family
    Cluster Dedicated vCPUs") and types without ``dedicatedCores``; the emulator serves those at those versions
    (test_c22_api_versions.py), and the operator reads both (tests/unit/test_amlcompute_map.py). The examples
    misspell some types (``.../workspace/...``); the emulator writes ``workspaces``."""
    async with client_for(frozen) as client:
        usages = [u async for u in client.usages.list(LOC)]
        total = usage(usages, "TotalCores")
        assert (total.id, total.type, total.current_value, total.limit, total.unit) == (
            f"/subscriptions/{SUB}",
            "Microsoft.MachineLearningServices/totalCores/usages",
            0,
            100,
            "Count",
        )
        assert total.name is not None
        assert total.name.localized_value == "Total Cluster vCPUs"
        assert [name_of(u) for u in usages[:2]] == ["TotalCores", "TotalDedicatedCores"]
        assert not any(str(u.id).startswith(f"{WS_ID}/") for u in usages), "no workspace rows without clusters"
        await frozen_arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2", min_nodes=2, max_nodes=2))
        await frozen_arm.advance(30 + 30 + 60)
        usages = [u async for u in client.usages.list(LOC)]
    dsv2 = [u for u in usages if name_of(u) == "StandardDSv2Family"]
    assert [
        (u.id, str(u.type).removeprefix("Microsoft.MachineLearningServices/"), u.current_value, u.limit) for u in dsv2
    ] == [
        (f"/subscriptions/{SUB}/usages/StandardDSv2Family", "vmFamily/dedicatedCores/usages", 4, 24),
        (f"{WS_ID}/usages/StandardDSv2Family", "workspaces/dedicatedCores/usages", 4, 24),
        (f"{WS_ID}/computes/cpu/usages/StandardDSv2Family", "workspaces/computes/dedicatedCores/usages", 4, 24),
        (f"/subscriptions/{SUB}/usages/StandardDSv2Family", "vmFamily/lowPriorityCores/usages", 0, -1),
    ]
    assert {u.name.localized_value for u in dsv2 if u.name is not None} == {
        "Standard DSv2 Family Cluster Dedicated vCPUs",
        "Standard DSv2 Family Cluster LowPriority vCPUs",
    }
    assert usage(usages, "TotalCores").current_value == 4
    low_total = usage(usages, "TotalLowPriorityCores")
    assert (low_total.id, low_total.limit) == (f"/subscriptions/{SUB}", 100)
    names = [name_of(u) for u in usages]
    assert names.index("TotalLowPriorityCores") > names.index("StandardDSv2Family"), "dedicated rows first"
    _, _, raw = await frozen_arm.call("GET", f"{LOCATION}/usages")
    assert raw["nextLink"] is None
    assert set(raw["value"][0]) == {"id", "type", "unit", "currentValue", "limit", "name"}


async def test_c14_list_quotas_by_vm_family(ml_client: Any, arm: Arm) -> None:
    """C14: Quotas (and lower-case quotas) list subscription-level and workspace-level family limits, ids and
    ``name.value`` capitalised as usages' ("StandardDSv2Family": ``stable/2020-08-01/examples/
    ListWorkspaceQuotasByVMFamily.json``)."""
    quotas = [q async for q in ml_client.quotas.list(LOC)]
    kinds = {q.type for q in quotas}
    assert kinds == {
        "Microsoft.MachineLearningServices/vmFamily/dedicatedCores/quotas",
        "Microsoft.MachineLearningServices/workspaces/dedicatedCores/quotas",
    }
    dsv2 = next(q for q in quotas if q.id == f"/subscriptions/{SUB}/quotas/StandardDSv2Family")
    assert (dsv2.limit, dsv2.unit, dsv2.name.value) == (24, "Count", "StandardDSv2Family")
    status, _, lower = await arm.call("GET", f"{LOCATION}/quotas")
    assert status == 200
    assert len(lower["value"]) == len(quotas)


async def test_c15_update_quotas_statuses(ml_client: Any) -> None:
    """C15: updateQuotas answers Success, InvalidVMFamilyName or InvalidQuotaExceedsSubscriptionLimit per item."""
    ws_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
    kind = "Microsoft.MachineLearningServices/workspaces/dedicatedCores/quotas"
    params = models.QuotaUpdateParameters(
        value=[
            models.QuotaBaseProperties(id=f"{ws_id}/quotas/StandardDSv2Family", type=kind, limit=10, unit="Count"),
            models.QuotaBaseProperties(id=f"{ws_id}/quotas/StandardXYZFamily", type=kind, limit=10, unit="Count"),
            models.QuotaBaseProperties(id=f"{ws_id}/quotas/standardNCFamily", type=kind, limit=1000, unit="Count"),
        ]
    )
    result = await ml_client.quotas.update(LOC, params)
    assert [r.status for r in result.value] == [
        "Success",
        "InvalidVMFamilyName",
        "InvalidQuotaExceedsSubscriptionLimit",
    ]
    quotas = [q async for q in ml_client.quotas.list(LOC)]
    assert next(q for q in quotas if q.id == f"{ws_id}/quotas/StandardDSv2Family").limit == 10
    # The workspace limit now caps clusters: 6 DS2_v2 nodes (12 vCPUs) exceed 10.
    with pytest.raises(HttpResponseError, match="specified workspace has a Standard DSv2 family vCPU quota of 10"):
        await (
            await ml_client.machine_learning_compute.begin_create_or_update(
                RG, WS, "big", _io(aml_body("Standard_DS2_v2", min_nodes=6, max_nodes=6))
            )
        ).result()


async def test_c16_attach_and_detach_a_batch_account(ml_client: Any, arm: Arm) -> None:
    """C16: attach {computeType: Batch}: 201 + Azure-AsyncOperation; GET shows it attached; Detach is 202."""
    account = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Batch/batchAccounts/{DEFAULT_BATCH_ACCOUNT}"
    )
    body = {
        "location": LOC,
        "tags": {"owner": "amlops"},
        "properties": {"computeType": "Batch", "resourceId": account, "description": "batch pool host"},
    }
    status, headers, _ = await arm.call("PUT", f"{BASE}/computes/batch1", body)
    assert status == 201
    assert "Azure-AsyncOperation" in headers
    result = await (
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "batch2", _io(body))
    ).result()
    # The SDK knows no "Batch" discriminator (trap 4): it falls back to the base Compute class.
    assert type(result.properties) is models.Compute
    assert result.properties.is_attached_compute is True
    assert result.properties.resource_id == account
    _, _, raw = await arm.call("GET", f"{BASE}/computes/batch2")
    props = raw["properties"]
    assert props["computeType"] == "Batch"
    assert props["isAttachedCompute"] is True
    assert (props["provisioningErrors"], props["description"], raw["tags"]) == (
        None,
        "batch pool host",
        {"owner": "amlops"},
    )
    # Attaching is not idempotent; deleting the account through ML is refused; detaching works.
    status, _, again = await arm.call("PUT", f"{BASE}/computes/batch2", body)
    assert (status, again["error"]["code"]) == (409, "Conflict")
    status, _, _ = await arm.call("DELETE", f"{BASE}/computes/batch2", underlyingResourceAction="Delete")
    assert status == 400
    await (await ml_client.machine_learning_compute.begin_delete(RG, WS, "batch2", "Detach")).result()
    names = [c.name async for c in ml_client.machine_learning_compute.list_by_workspace(RG, WS)]
    assert "batch2" not in names


async def test_c16_attach_an_unknown_batch_account_is_400(arm: Arm) -> None:
    """C16: the Batch account must exist in the seed."""
    account = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Batch/batchAccounts/nosuchacct"
    body = {"location": LOC, "properties": {"computeType": "Batch", "resourceId": account}}
    status, headers, error = await arm.call("PUT", f"{BASE}/computes/batch1", body)
    assert (status, error["error"]["code"]) == (400, "InvalidResourceId")
    assert "Retry-After" not in headers


async def test_workspace_get_answers_its_location(ml_client: Any) -> None:
    """Workspaces_Get: the operator reads a workspace's location as a compute's default location."""
    ws = await ml_client.workspaces.get(RG, WS)
    assert ws.name == WS
    assert ws.location == "westeurope"


async def test_workspace_get_of_a_missing_workspace_is_resource_not_found(ml_client: Any) -> None:
    with pytest.raises(HttpResponseError) as info:
        await ml_client.workspaces.get(RG, "no-such-workspace")
    assert info.value.status_code == 404
