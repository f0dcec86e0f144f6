"""WorkspaceQuota end to end: real apiserver, the operator process, the ARM emulator through the real SDK
(``quotas.update``/``quotas.list``, ``usages.list``, ``virtual_machine_sizes.list``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed
from tests.support.objects import apply, condition, events, find_condition, try_apply, wait_condition, wait_gone
from tests.support.processes import EmulatorProcess, StartOperator, scrape

pytestmark = pytest.mark.e2e
SUB = "00000000-0000-0000-0000-000000000001"
WORKSPACE = {"subscriptionId": SUB, "resourceGroup": "rg-amlops", "name": "ws-amlops"}
WS_PATH = (
    f"/subscriptions/{SUB}/resourceGroups/rg-amlops/providers/Microsoft.MachineLearningServices/workspaces/ws-amlops"
)
QUOTAS = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope/quotas"


def manifest(name: str, limits: list[dict[str, Any]], **spec: Any) -> str:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "WorkspaceQuota",
        "metadata": {"name": name},
        "spec": {"workspace": WORKSPACE, "limits": limits, **spec},
    }
    return yaml.safe_dump(body)


def azure_workspace_limit(azure: EmulatorProcess, family: str) -> int:
    """The workspace's limit of ``family`` as Azure (the emulator) lists it now."""
    status, body = azure.arm("GET", QUOTAS)
    assert status == 200
    return int(next(q["limit"] for q in body["value"] if q["id"] == f"{WS_PATH}/quotas/{family}"))


def key(base: dict[str, str], **labels: str) -> frozenset[tuple[str, str]]:
    return frozenset({**base, **labels}.items())


def test_apply_sets_the_limit_reports_limits_usage_and_sizes_and_delete_leaves_it(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    operator = start_operator(namespace, extra_env=azure.operator_env())
    assert azure_workspace_limit(azure, "StandardDSv2Family") == 24
    limits = [{"vmFamily": "standardDSv2Family", "limit": 16}, {"vmFamily": "StandardNCFamily", "limit": 6}]
    apply(k8s, namespace, manifest("team-quota", limits))
    obj = wait_condition(k8s, "workspacequota", "team-quota", namespace, "Ready")
    assert azure_workspace_limit(azure, "StandardDSv2Family") == 16
    assert azure_workspace_limit(azure, "StandardNCFamily") == 6
    assert azure.operations().get("Quotas_Update") == 1

    status = obj["status"]
    assert status["location"] == "westeurope"
    dsv2, nc = status["families"]
    assert dsv2 == {
        "vmFamily": "standardDSv2Family",
        "workspaceLimit": 16,
        "subscriptionLimit": 24,
        "dedicatedUsage": 0,
        "workspaceDedicatedUsage": 0,
        "lowPriorityUsage": 0,
        "headroom": 16,
    }
    assert (nc["vmFamily"], nc["workspaceLimit"], nc["subscriptionLimit"], nc["headroom"]) == (
        "StandardNCFamily",
        6,
        24,
        6,
    )
    assert status["lowPriorityLimit"] == 100
    nc6 = next(s for s in status["vmSizes"] if s["name"] == "Standard_NC6")
    assert nc6 == {
        "name": "Standard_NC6",
        "family": "standardNCFamily",
        "vCPUs": 6,
        "memoryGB": 56.0,
        "gpus": 1,
        "maxResourceVolumeMB": 389120,
        "lowPriorityCapable": True,
    }
    assert (status["tightestFamily"], status["minHeadroom"]) == ("StandardNCFamily", 6)
    table = k8s.kubectl("get", "workspacequota", "team-quota", "-n", namespace, "-o", "wide", "--no-headers")
    assert "StandardNCFamily" in table.split()  # Tightest, then its Headroom
    assert table.split()[table.split().index("StandardNCFamily") + 1] == "6"
    assert "standardDSv2Family 16/16, StandardNCFamily 6/6" in table

    # The gauges per family, from the operator's /metrics (family in vmSizes' spelling, as AmlCompute's).
    gauges = scrape(operator.metrics_url, "amlops_quota_")
    here = {"subscription": SUB, "location": "westeurope"}
    assert gauges[("amlops_quota_limit_cores", key(here, workspace="ws-amlops", family="standardNCFamily"))] == 6
    assert gauges[("amlops_quota_limit_cores", key(here, workspace="", family="standardNCFamily"))] == 24
    assert gauges[("amlops_quota_headroom_cores", key(here, family="standardDSv2Family"))] == 24
    dedicated = key(here, workspace="", family="standardDSv2Family", priority="dedicated")
    assert gauges[("amlops_quota_usage_cores", dedicated)] == 0

    # Deleting the object changes nothing in Azure: the quota is a setting amlops does not restore.
    k8s.kubectl("delete", "workspacequota", "team-quota", "-n", namespace, "--wait=false")
    wait_gone(k8s, "workspacequota", "team-quota", namespace)
    assert azure_workspace_limit(azure, "StandardDSv2Family") == 16
    assert azure.operations().get("Quotas_Update") == 1


def test_a_limit_above_the_subscriptions_is_stalled_with_azures_code_and_an_event(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Azure answers the item ``InvalidQuotaExceedsSubscriptionLimit`` (the subscription has 24 vCPUs of the family):
    Stalled with that reason, a Warning Event, the limits still reported, nothing changed in Azure."""
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("too-much", [{"vmFamily": "standardDSv2Family", "limit": 500}]))
    obj = wait_condition(k8s, "workspacequota", "too-much", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "InvalidQuotaExceedsSubscriptionLimit"
    assert "standardDSv2Family" in stalled["message"]  # the family as the spec names it
    assert condition(obj, "Ready")["status"] == "False"
    (family,) = obj["status"]["families"]
    assert (family["workspaceLimit"], family["subscriptionLimit"]) == (24, 24)
    assert azure_workspace_limit(azure, "StandardDSv2Family") == 24
    testbed.eventually(
        lambda: any(e["type"] == "Warning" for e in events(k8s, namespace, "InvalidQuotaExceedsSubscriptionLimit")),
        what="a Warning Event InvalidQuotaExceedsSubscriptionLimit",
    )

    # A further pass (forced) sends nothing while the refusal stands: the subscription's limit is still 24.
    k8s.kubectl("annotate", "workspacequota/too-much", "-n", namespace, "amlops.io/reconcile-requested-at=again")
    again = testbed.eventually(
        lambda: (
            (o := testbed.get_object(k8s, "workspacequota", "too-much", namespace))
            and o["status"].get("lastHandledReconcileAt") == "again"
            and o
        ),
        what="the forced pass",
    )
    assert condition(again, "Stalled")["reason"] == "InvalidQuotaExceedsSubscriptionLimit"
    assert azure.operations().get("Quotas_Update") == 1

    # Within the subscription's limit it applies.
    k8s.kubectl(
        "patch",
        "workspacequota",
        "too-much",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"limits": [{"vmFamily": "standardDSv2Family", "limit": 20}]}}),
    )
    wait_condition(k8s, "workspacequota", "too-much", namespace, "Ready")
    assert azure_workspace_limit(azure, "StandardDSv2Family") == 20


def test_two_writers_of_one_family_stop_fighting(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Two WorkspaceQuotas set one workspace's family to 6 and to 9 (found by the spec fuzz): each applied its
    limit, saw the other's and applied its own again, Ready in turn, for ever. Now each counts how often its
    applied limits drifted away (``status.driftRepairs``) and, past three, is Stalled ``QuotaContended`` and stops
    writing. When the two alternate so that one never sees its own limit in place, the engine's bound on updates
    that do not converge stops it first (Stalled ``UpdateDoesNotConverge``). Either way the writes end."""
    start_operator(namespace, extra_env=azure.operator_env())
    apply(k8s, namespace, manifest("six", [{"vmFamily": "standardNCFamily", "limit": 6}]))
    apply(k8s, namespace, manifest("nine", [{"vmFamily": "standardNCFamily", "limit": 9}]))

    def contended(name: str) -> bool:
        obj = testbed.get_object(k8s, "workspacequota", name, namespace)
        stalled = find_condition(obj, "Stalled")
        return (
            stalled is not None
            and stalled.get("status") == "True"
            and stalled.get("reason") in ("QuotaContended", "UpdateDoesNotConverge")
        )

    testbed.eventually(lambda: contended("six") or contended("nine"), timeout=180, what="one writer Stalled")
    stalled = next(name for name in ("six", "nine") if contended(name))
    obj = testbed.get_object(k8s, "workspacequota", stalled, namespace)
    assert obj is not None
    if condition(obj, "Stalled")["reason"] == "QuotaContended":
        assert "another writer keeps changing them" in condition(obj, "Stalled")["message"]
        assert obj["status"]["driftRepairs"]["count"] > 3
    # The other one may end Ready (the last writer) or Stalled too: either way the writes have stopped.
    writes = azure.operations().get("Quotas_Update", 0)
    k8s.kubectl("annotate", "workspacequota", "--all", "-n", namespace, "amlops.io/reconcile-requested-at=look")
    testbed.eventually(
        lambda: all(
            (testbed.get_object(k8s, "workspacequota", n, namespace) or {})
            .get("status", {})
            .get("lastHandledReconcileAt")
            == "look"
            for n in ("six", "nine")
        ),
        what="a forced pass of both",
    )
    assert azure.operations().get("Quotas_Update", 0) <= writes + 1, "the Stalled writer wrote again"
    assert writes <= 2 * 5, f"{writes} writes: the fight was not bounded"


@pytest.mark.parametrize(
    ("reason", "limits", "message"),
    [
        ("not a VM family name", [{"vmFamily": "Standard_DS3_v2", "limit": 4}], "spec.limits[0].vmFamily"),
        (
            "the same family twice, whatever its case",
            [{"vmFamily": "standardDSv2Family", "limit": 4}, {"vmFamily": "StandardDSv2Family", "limit": 8}],
            "each vmFamily may appear once in limits",
        ),
        ("a negative limit", [{"vmFamily": "standardDSv2Family", "limit": -1}], "spec.limits[0].limit"),
        ("a limit beyond int32", [{"vmFamily": "standardDSv2Family", "limit": 2**31}], "spec.limits[0].limit"),
        ("no limits", [], "spec.limits"),
    ],
)
def test_the_apiserver_refuses_a_bad_spec(
    k8s: testbed.Testbed, namespace: str, reason: str, limits: list[dict[str, Any]], message: str
) -> None:
    refused = try_apply(k8s, namespace, manifest("bad", limits))
    assert refused.returncode != 0, reason
    assert message in refused.stderr, (reason, refused.stderr)
    assert testbed.get_object(k8s, "workspacequota", "bad", namespace) is None, reason
