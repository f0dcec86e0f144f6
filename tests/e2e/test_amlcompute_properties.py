"""AmlCompute's api-version 2025-12-01 properties end to end: the real apiserver validates them, the operator
sends them at 2025-12-01 through the real SDK pipeline, and the emulator holds them as Azure would
(stable/2025-12-01/examples/Compute/createOrUpdate/BasicAmlCompute.json, Compute/get/AmlCompute.json)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed
from tests.support.objects import apply, try_apply, wait_condition
from tests.support.processes import EmulatorProcess, StartOperator

from .test_amlcompute import WS_PATH, compute_name, manifest

pytestmark = pytest.mark.e2e
API_VERSION = "2025-12-01"
IMAGE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/images/providers/Microsoft.Compute"
    "/galleries/gallery1/images/win2022/versions/1.0.0"
)
NEW_PROPERTIES: dict[str, Any] = {
    "osType": "Windows",
    "virtualMachineImage": {"id": IMAGE},
    "isolatedNetwork": True,
    "disableLocalAuth": True,
    "propertyBag": {"team": "a", "limits": {"gpus": [0, 1]}},
    "enableNodePublicIp": False,
}


def test_every_2025_12_01_property_reaches_azure_at_that_api_version(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Each new field is in Azure as the spec says it (a GET at 2025-12-01, as Compute/get/AmlCompute.json shows
    the properties), ``enableNodePublicIp: false`` included (at 2020-08-01 Azure did not know it and dropped it),
    and every request the operator made to Microsoft.MachineLearningServices (location reads, the PUT, the
    operation polls, the GETs and lists, the scale PATCH) carried api-version 2025-12-01. The PATCH is the
    nested 2025-12-01 ``ClusterUpdateParameters``: Azure applied it."""
    start_operator(namespace, extra_env=azure.operator_env())
    azure.control("DELETE", "/stats")
    cname = compute_name()
    apply(k8s, namespace, manifest("props", cname, **NEW_PROPERTIES))
    wait_condition(k8s, "amlcompute", "props", namespace, "Ready")

    status, body = azure.arm("GET", f"{WS_PATH}/computes/{cname}", api_version=API_VERSION)
    assert status == 200
    aml = body["properties"]["properties"]
    assert aml["osType"] == "Windows"
    assert aml["virtualMachineImage"] == {"id": IMAGE}
    assert aml["isolatedNetwork"] is True
    assert aml["enableNodePublicIp"] is False
    assert aml["propertyBag"] == NEW_PROPERTIES["propertyBag"]
    assert body["properties"]["disableLocalAuth"] is True

    scaled = subprocess.run(
        ["kubectl", "scale", "amlcompute/props", "-n", namespace, "--replicas=6"],
        env=k8s.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert scaled.returncode == 0, scaled.stderr
    testbed.eventually(
        lambda: (
            azure.arm("GET", f"{WS_PATH}/computes/{cname}", api_version=API_VERSION)[1]["properties"]["properties"][
                "scaleSettings"
            ]["maxNodeCount"]
            == 6
        ),
        what="maxNodeCount 6 in Azure",
    )
    wait_condition(k8s, "amlcompute", "props", namespace, "Ready")

    calls = [c for c in azure.control("GET", "/stats")["recent"] if "/Microsoft.MachineLearningServices/" in c["path"]]
    operations = {c["operation"] for c in calls}
    assert {"MachineLearningCompute_CreateOrUpdate", "MachineLearningCompute_Update"} <= operations, operations
    assert {c["apiVersion"] for c in calls} == {API_VERSION}, [c for c in calls if c["apiVersion"] != API_VERSION]


def _patch(k8s: testbed.Testbed, namespace: str, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "patch", "amlcompute", "probe", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})],
        env=k8s.env(),
        capture_output=True,
        text=True,
        check=False,
    )


CREATE_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("osType", {"osType": "Linux"}),
    ("osType", {"osType": None}),
    ("virtualMachineImage", {"virtualMachineImage": {"id": IMAGE.replace("1.0.0", "2.0.0")}}),
    ("isolatedNetwork", {"isolatedNetwork": False}),
    ("disableLocalAuth", {"disableLocalAuth": None}),
    ("propertyBag", {"propertyBag": {"team": "b"}}),
]


@pytest.mark.parametrize(("field", "change"), CREATE_ONLY, ids=[f"{f} {c[f]}" for f, c in CREATE_ONLY])
def test_the_new_properties_are_create_only(
    k8s: testbed.Testbed, namespace: str, field: str, change: dict[str, Any]
) -> None:
    """Azure keeps what the create sent (PATCH changes only scaleSettings; a PUT on an existing cluster does not
    change its properties): the apiserver refuses a change, a removal or an addition, saying what to do."""
    apply(k8s, namespace, manifest("probe", compute_name(), **NEW_PROPERTIES))
    refused = _patch(k8s, namespace, change)
    assert refused.returncode != 0, f"{change} was accepted"
    assert f"{field} is immutable" in refused.stderr, refused.stderr
    assert "delete this one" in refused.stderr, refused.stderr


def test_adding_a_new_property_later_is_refused(k8s: testbed.Testbed, namespace: str) -> None:
    apply(k8s, namespace, manifest("probe", compute_name()))
    refused = _patch(k8s, namespace, {"isolatedNetwork": True})
    assert refused.returncode != 0
    assert "isolatedNetwork is immutable" in refused.stderr, refused.stderr


SCHEMA_REFUSALS = [
    ("an OS Azure does not have", {"osType": "MacOS"}, "Unsupported value"),
    ("an image that is no ARM id", {"virtualMachineImage": {"id": "win2022"}}, "virtualMachineImage.id"),
    (
        "an ARM id of another resource type",
        {"virtualMachineImage": {"id": IMAGE.replace("Microsoft.Compute/galleries", "Microsoft.Storage/galleries")}},
        "virtualMachineImage.id",
    ),
    ("an image without its id", {"virtualMachineImage": {}}, "virtualMachineImage.id: Required value"),
    ("a property bag of 65 keys", {"propertyBag": {f"k{i}": i for i in range(65)}}, "spec.propertyBag"),
    ("a field 2025-12-01 does not have", {"enableNodePublicIP": False}, 'unknown field "spec.enableNodePublicIP"'),
]


@pytest.mark.parametrize(("reason", "fields", "message"), SCHEMA_REFUSALS, ids=[r[0] for r in SCHEMA_REFUSALS])
def test_the_schema_refuses_what_azure_would_not_take(
    k8s: testbed.Testbed, namespace: str, reason: str, fields: dict[str, Any], message: str
) -> None:
    """Refused by the apiserver before anything reaches Azure; an unknown field (here a mis-cased one) by
    kubectl's server-side strict field validation rather than pruned and silently dropped."""
    doc = yaml.safe_load(manifest("probe", compute_name(), **fields))
    refused = try_apply(k8s, namespace, doc)
    assert refused.returncode != 0, reason
    assert message in refused.stderr, (reason, refused.stderr)


def test_managed_image_and_gallery_image_ids_are_accepted(k8s: testbed.Testbed, namespace: str) -> None:
    """The three image forms the field documents, in any case (ARM ids are case-insensitive)."""
    for index, image in enumerate(
        (
            IMAGE,
            IMAGE.rsplit("/versions/", 1)[0],
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/images/win2022",
        )
    ):
        apply(k8s, namespace, manifest(f"image{index}", compute_name(), virtualMachineImage={"id": image}))
