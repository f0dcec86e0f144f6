"""The real apiserver serves our CRDs: kubectl works, bad input is rejected at the schema / CEL layer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import amlops_testbed as testbed
from tests.support.objects import try_apply

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
WORKSPACE = """\
  workspace:
    subscriptionId: 00000000-0000-0000-0000-000000000001
    resourceGroup: rg-amlops
    name: ws-amlops
"""


def test_discovery_lists_every_kind_in_the_amlops_category(k8s: testbed.Testbed) -> None:
    resources = k8s.kubectl("api-resources", "--api-group=amlops.io", "-o", "name")
    assert sorted(resources.split()) == [
        "amlcomputes.amlops.io",
        "batchcomputes.amlops.io",
        "commandjobs.amlops.io",
        "paralleljobs.amlops.io",
        "workspacequotas.amlops.io",
    ]
    assert testbed.discovery_has(k8s, "amlops.io/v1alpha1", "amlcomputes")


def test_samples_apply_and_show_in_kubectl_get_amlops(k8s: testbed.Testbed, namespace: str) -> None:
    k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES))
    table = k8s.kubectl("get", "amlops", "-n", namespace)
    for name in (
        "amlcompute.amlops.io/cpu-cluster",
        "batchcompute.amlops.io/batch",
        "paralleljob.amlops.io/score",
        "commandjob.amlops.io/train",
        "workspacequota.amlops.io/team-quota",
    ):
        assert name in table
    # Defaults from the typed models are applied by the apiserver (structural schema defaulting).
    obj = testbed.get_object(k8s, "amlcompute", "cpu-cluster", namespace)
    assert obj is not None
    assert obj["spec"]["managementPolicy"] == "Manage"
    assert obj["spec"]["deletionPolicy"] == "Delete"


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(
            "kind: AmlCompute\nmetadata: {name: bad-enum}\nspec:\n" + WORKSPACE + "  vmPriority: Cheap\n",
            'spec.vmPriority: Unsupported value: "Cheap"',
            id="UnknownEnumValue",
        ),
        pytest.param(
            "kind: AmlCompute\nmetadata: {name: no-workspace}\nspec:\n  vmSize: STANDARD_D2_V2\n",
            "spec.workspace: Required value",
            id="MissingRequiredField",
        ),
        pytest.param(
            "kind: AmlCompute\nmetadata: {name: neg}\nspec:\n" + WORKSPACE + "  scaleSettings: {maxNodeCount: -1}\n",
            "spec.scaleSettings.maxNodeCount: Invalid value: -1",
            id="NegativeNodeCount",
        ),
        pytest.param(
            "kind: AmlCompute\nmetadata: {name: minmax}\nspec:\n"
            + WORKSPACE
            + "  scaleSettings: {minNodeCount: 5, maxNodeCount: 2}\n",
            "minNodeCount must be <= maxNodeCount",
            id="MinAboveMax",
        ),
        pytest.param(
            "kind: AmlCompute\nmetadata: {name: ids}\nspec:\n"
            + WORKSPACE
            + "  identity: {type: SystemAssigned, userAssignedIdentities: [/subscriptions/s/id]}\n",
            "userAssignedIdentities are only allowed with type UserAssigned",
            id="IdentityIdsWithoutUserAssigned",
        ),
        pytest.param(
            "kind: AmlCompute\nmetadata: {name: a-very-long-cluster-name}\nspec:\n" + WORKSPACE,
            "set spec.computeName",
            id="NameNotAnAzureComputeName",
        ),
        pytest.param(
            "kind: BatchCompute\nmetadata: {name: both}\nspec:\n"
            + WORKSPACE
            + "  batchAccount: {resourceGroup: rg, accountName: acct}\n"
            + "  resourceId: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/acct\n",
            "set exactly one of spec.batchAccount and spec.resourceId",
            id="BatchAccountAndResourceId",
        ),
    ],
)
def test_invalid_manifests_are_rejected_with_a_clear_message(
    k8s: testbed.Testbed, namespace: str, manifest: str, expected: str
) -> None:
    result = try_apply(k8s, namespace, "apiVersion: amlops.io/v1alpha1\n" + manifest)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_vm_size_change_is_rejected_with_what_to_do_instead(k8s: testbed.Testbed, namespace: str) -> None:
    manifest = (
        textwrap.dedent(
            """\
        apiVersion: amlops.io/v1alpha1
        kind: AmlCompute
        metadata: {name: gpu}
        spec:
        """
        )
        + WORKSPACE
    )
    assert try_apply(k8s, namespace, manifest + "  vmSize: STANDARD_NC6\n").returncode == 0
    result = try_apply(k8s, namespace, manifest + "  vmSize: STANDARD_NC12\n")
    assert result.returncode != 0
    assert "vmSize is immutable: create a new AmlCompute with the new size" in result.stderr


def test_a_stopped_testbed_leaves_no_process_or_data_behind(tmp_path: Path) -> None:
    bed = testbed.start(testbed.ensure_built(), tmp_path)
    pids = [p.pid for p in bed.processes]
    assert len(pids) == 2
    assert bed.get("/readyz")[0] == 200
    bed.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not bed.etcd_data.exists()
