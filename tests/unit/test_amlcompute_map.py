"""AmlCompute's pure mappings, case by case (crossplane-style tables: each case says why).

spec → ARM PUT body (every provisioning_configuration field), ARM body → status, Failed → (code, message), the
quota pre-flight. Wire shapes: api-version 2025-12-01 ``ComputeResource`` (azure-rest-api-specs
machinelearningservices/stable/2025-12-01, examples Compute/createOrUpdate/BasicAmlCompute.json, AmlCompute.json,
Compute/get/AmlCompute.json); answers of 2020-08-01 (createBasicAmlCompute.json, getAmlCompute.json) read alike.
tests/unit/test_arm_models.py checks each body built here against the 2025-12-01 models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from amlops.api.amlcompute import AmlComputeSpec
from amlops.external import amlcompute_map as m
from amlops.external.compute_arm import timestamp

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
WORKSPACE = {"subscriptionId": SUB, "resourceGroup": "rg", "name": "ws-1"}
OWNER = "team-a.cpu.6f1c6b7e-0000-4000-8000-000000000001"
NET = f"/subscriptions/{SUB}/resourceGroups"
VNETS = "providers/Microsoft.Network/virtualNetworks"
COMPUTES = "providers/Microsoft.MachineLearningServices/workspaces/ws-1/computes"
UAI = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
# BasicAmlCompute.json's virtualMachineImage.id: a Compute Gallery image version.
IMAGE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myResourceGroup/providers/Microsoft.Compute"
    "/galleries/myImageGallery/images/myImageDefinition/versions/0.0.1"
)


def spec(**fields: Any) -> AmlComputeSpec:
    return AmlComputeSpec.model_validate({"workspace": WORKSPACE, **fields})


@dataclass(frozen=True)
class ToArm:
    reason: str
    fields: dict[str, Any]
    expected: dict[str, Any]  # paths into the body ("a.b.c") → value; None: absent
    password: str | None = None


TO_ARM = [
    ToArm(
        "defaults: the seed's provisioning_configuration() defaults, scale in seconds as ISO-8601",
        {},
        {
            "location": "westeurope",
            "properties.computeType": "AmlCompute",
            "properties.properties.vmSize": "STANDARD_DS3_V2",
            "properties.properties.vmPriority": "Dedicated",
            "properties.properties.scaleSettings": {
                "maxNodeCount": 4,
                "minNodeCount": 0,
                "nodeIdleTimeBeforeScaleDown": "PT1800S",
            },
            "properties.properties.remoteLoginPortPublicAccess": "NotSpecified",
            "properties.properties.userAccountCredentials": None,
            "properties.properties.subnet": None,
            "properties.description": None,
            "identity": None,
            "tags": {"amlops.io-owner": OWNER},
        },
    ),
    ToArm(
        "low priority and scale settings",
        {
            "vmPriority": "LowPriority",
            "scaleSettings": {"minNodeCount": 1, "maxNodeCount": 8, "nodeIdleTimeBeforeScaleDown": 120},
        },
        {
            "properties.properties.vmPriority": "LowPriority",
            "properties.properties.scaleSettings": {
                "maxNodeCount": 8,
                "minNodeCount": 1,
                "nodeIdleTimeBeforeScaleDown": "PT120S",
            },
        },
    ),
    ToArm(
        "admin user with ssh key and the password read from its Secret",
        {"adminUser": {"username": "azureuser", "sshPublicKey": "ssh-rsa AAAA", "passwordSecretRef": {"name": "pw"}}},
        {
            "properties.properties.userAccountCredentials": {
                "adminUserName": "azureuser",
                "adminUserSshPublicKey": "ssh-rsa AAAA",
                "adminUserPassword": "s3cr3t",
            }
        },
        password="s3cr3t",
    ),
    ToArm(
        "admin user without a password: no password key at all",
        {"adminUser": {"username": "azureuser"}},
        {"properties.properties.userAccountCredentials": {"adminUserName": "azureuser"}},
    ),
    ToArm(
        "subnet from the seed's three names, vnet resource group defaulting to the workspace's",
        {"subnet": {"vnetName": "vnet", "subnetName": "default"}},
        {"properties.properties.subnet": {"id": f"{NET}/rg/{VNETS}/vnet/subnets/default"}},
    ),
    ToArm(
        "subnet from the seed's three names in another resource group",
        {"subnet": {"vnetResourceGroup": "net-rg", "vnetName": "vnet", "subnetName": "s1"}},
        {"properties.properties.subnet": {"id": f"{NET}/net-rg/{VNETS}/vnet/subnets/s1"}},
    ),
    ToArm(
        "subnet by id",
        {"subnet": {"subnetId": f"{NET}/r/{VNETS}/v/subnets/s"}},
        {"properties.properties.subnet": {"id": f"{NET}/r/{VNETS}/v/subnets/s"}},
    ),
    ToArm(
        "a vnet without a subnet name is no subnet",
        {"subnet": {"vnetName": "vnet"}},
        {"properties.properties.subnet": None},
    ),
    ToArm(
        "user tags kept beside the owner tag, description",
        {"tags": {"team": "a"}, "description": "scoring cluster"},
        {"tags": {"team": "a", "amlops.io-owner": OWNER}, "properties.description": "scoring cluster"},
    ),
    ToArm(
        "system-assigned identity", {"identity": {"type": "SystemAssigned"}}, {"identity": {"type": "SystemAssigned"}}
    ),
    ToArm(
        "user-assigned identities as ARM's map of ids",
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": [UAI]}},
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": {UAI: {}}}},
    ),
    ToArm("identity type None sends no identity", {"identity": {"type": "None"}}, {"identity": None}),
    ToArm(
        "public SSH port closed, node public IPs off",
        {"remoteLoginPortPublicAccess": "Disabled", "enableNodePublicIp": False},
        {
            "properties.properties.remoteLoginPortPublicAccess": "Disabled",
            "properties.properties.enableNodePublicIp": False,
        },
    ),
    ToArm("the location given (the spec's, or the workspace's)", {"location": "eastus"}, {"location": "westeurope"}),
]


def _at(body: dict[str, Any], path: str) -> Any:
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@pytest.mark.parametrize("case", TO_ARM, ids=lambda c: c.reason)
def test_to_arm(case: ToArm) -> None:
    body = m.to_arm(spec(**case.fields), owner=OWNER, location="westeurope", admin_password=case.password)
    for path, value in case.expected.items():
        assert _at(body, path) == value, path


def test_the_owner_tag_wins_over_a_user_tag_of_the_same_name() -> None:
    body = m.to_arm(spec(tags={"amlops.io-owner": "someone-else"}), owner=OWNER, location="westeurope")
    assert body["tags"]["amlops.io-owner"] == OWNER


def arm_body(state: str = "Succeeded", **props: Any) -> dict[str, Any]:
    return {
        "id": f"{NET}/rg/{COMPUTES}/cpu",
        "location": "westeurope",
        "properties": {"computeType": "AmlCompute", "provisioningState": state, "properties": props},
    }


@dataclass(frozen=True)
class FromArm:
    reason: str
    body: dict[str, Any]
    expected: dict[str, Any] = field(default_factory=dict)


FROM_ARM = [
    FromArm(
        "a steady cluster: counts and every node state, zero when Azure omits one",
        arm_body(
            allocationState="Steady",
            currentNodeCount=2,
            targetNodeCount=2,
            nodeStateCounts={"idleNodeCount": 1, "runningNodeCount": 1},
        ),
        {
            "provisioningState": "Succeeded",
            "allocationState": "Steady",
            "currentNodeCount": 2,
            "targetNodeCount": 2,
            "nodeStateCounts": {
                "idleNodeCount": 1,
                "runningNodeCount": 1,
                "preparingNodeCount": 0,
                "unusableNodeCount": 0,
                "leavingNodeCount": 0,
                "preemptedNodeCount": 0,
            },
            "identity": None,
            "provisioningErrors": [],
        },
    ),
    FromArm(
        "a managed identity's principal",
        {**arm_body(), "identity": {"type": "SystemAssigned", "principalId": "p-1", "tenantId": "t-1"}},
        {"identity": {"principalId": "p-1", "tenantId": "t-1"}},
    ),
    FromArm(
        "provisioning errors flattened to {code, message}",
        {
            **arm_body("Failed"),
            "properties": {
                **arm_body("Failed")["properties"],
                "provisioningErrors": [{"error": {"code": "QuotaExceeded", "message": "no cores"}}],
            },
        },
        {"provisioningErrors": [{"code": "QuotaExceeded", "message": "no cores"}]},
    ),
    FromArm(
        "a creating cluster has no counts yet",
        arm_body("Creating"),
        {"currentNodeCount": None, "allocationState": None},
    ),
    FromArm(
        "the cluster's errors (2020-08-01 MachineLearningServiceError: {error: {code, message, details}}), as Azure "
        "gives them: the nodes the autoscaler could not allocate",
        arm_body(
            allocationState="Resizing",
            errors=[
                {
                    "error": {
                        "code": "QuotaExceeded",
                        "message": "Operation results in exceeding quota limits",
                        "details": [{"code": "VmFamily", "message": "standardDSv2Family"}, "not an object"],
                    }
                },
                {"error": {"code": "DiskFull", "message": "no space left on device"}},
            ],
        ),
        {
            "errors": [
                {
                    "code": "QuotaExceeded",
                    "message": "Operation results in exceeding quota limits",
                    "details": [{"code": "VmFamily", "message": "standardDSv2Family"}],
                },
                {"code": "DiskFull", "message": "no space left on device", "details": []},
            ]
        },
    ),
    FromArm(
        "no errors (null while the cluster is made, as the recording shows): an empty list, never a missing field",
        arm_body("Creating", errors=None),
        {"errors": []},
    ),
    FromArm(
        "an entry without the error wrapper is not an error Azure reported: skipped",
        arm_body(errors=[{"code": "X"}, None]),
        {"errors": []},
    ),
    FromArm(
        "times as the ML RP writes them (.NET seven digits and +00:00; milliseconds for the allocation state) in "
        "status' one form, whole seconds",
        {
            **arm_body(allocationState="Steady", allocationStateTransitionTime="2022-08-30T19:56:28.632+00:00"),
            "properties": {
                **arm_body(allocationState="Steady", allocationStateTransitionTime="2022-08-30T19:56:28.632+00:00")[
                    "properties"
                ],
                "createdOn": "2022-08-30T19:56:28.2261097+00:00",
                "modifiedOn": "2022-08-30T19:56:37.8772733+00:00",
            },
        },
        {
            "createdOn": "2022-08-30T19:56:28Z",
            "modifiedOn": "2022-08-30T19:56:37Z",
            "allocationStateTransitionTime": "2022-08-30T19:56:28Z",
        },
    ),
    FromArm(
        "a transition time Azure has not set yet (null while the cluster is made)",
        arm_body("Creating", allocationStateTransitionTime=None),
        {"allocationStateTransitionTime": None, "createdOn": None, "modifiedOn": None},
    ),
]


@pytest.mark.parametrize("case", FROM_ARM, ids=lambda c: c.reason)
def test_from_arm(case: FromArm) -> None:
    status = m.from_arm(case.body)
    assert status["resourceId"] == case.body["id"]
    for key, value in case.expected.items():
        assert status[key] == value, key


@pytest.mark.parametrize(
    ("reason", "body", "expected"),
    [
        ("succeeded is no failure", arm_body("Succeeded"), None),
        ("creating is no failure", arm_body("Creating"), None),
        (
            "Azure's first error code and message",
            {
                **arm_body("Failed"),
                "properties": {
                    **arm_body("Failed")["properties"],
                    "provisioningErrors": [
                        {"error": {"code": "InvalidPropertyValue", "message": "not a supported VM size"}}
                    ],
                },
            },
            ("InvalidPropertyValue", "not a supported VM size"),
        ),
        (
            "failed without errors",
            arm_body("Failed"),
            ("ProvisioningFailed", "Azure reports provisioningState Failed without an error"),
        ),
    ],
)
def test_failure(reason: str, body: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert m.failure(body) == expected, reason


def test_transitional_states_and_resizing() -> None:
    assert [m.is_transitional(arm_body(s)) for s in ("Creating", "Updating", "Deleting", "Succeeded", "Failed")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert m.is_resizing(arm_body(allocationState="Resizing"))
    assert not m.is_resizing(arm_body(allocationState="Steady"))


def test_a_vm_size_azure_kept_is_reported_not_patched() -> None:
    # Azure's GETs echo vmSize upper-cased (the azure-ai-ml recording test_aml_compute_create_and_delete); issue 15
    # expected canonical casing. Either form, against either spelling in the spec, is the same size.
    assert m.vm_size_mismatch(spec(vmSize="Standard_DS3_v2"), arm_body(vmSize="STANDARD_DS3_V2")) is None, "upper"
    assert m.vm_size_mismatch(spec(vmSize="STANDARD_DS3_V2"), arm_body(vmSize="Standard_DS3_v2")) is None, "canonical"
    message = m.vm_size_mismatch(spec(vmSize="STANDARD_NC6"), arm_body(vmSize="STANDARD_DS3_V2"))
    assert message is not None
    assert "STANDARD_DS3_V2" in message
    assert "cannot change" in message


SIZES = [{"name": "Standard_DS3_v2", "family": "standardDSv2Family", "vCPUs": 4}]
USAGES = "Microsoft.MachineLearningServices"
WS_ID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-1"


def usage(usage_id: str, kind: str, name: str, limit: int, current: int) -> dict[str, Any]:
    return {
        "id": usage_id,
        "type": f"{USAGES}/{kind}/usages",
        "name": {"value": name, "localizedValue": name},
        "limit": limit,
        "currentValue": current,
        "unit": "Count",
    }


def usages_2020(family_limit: int = 24, family_used: int = 2, low_limit: int = 50) -> list[dict[str, Any]]:
    """The rows of ``stable/2020-08-01/examples/ListUsages.json`` (azure-rest-api-specs), for DSv2: totals, the
    subscription's family row, its workspace and compute rows, then the low-priority rows with ``limit: -1``
    sharing the family row's id and name."""
    fam = "StandardDSv2Family"
    return [
        usage(f"/subscriptions/{SUB}", "totalCores", "TotalCores", 100, 7),
        usage(f"/subscriptions/{SUB}", "totalDedicatedCores", "TotalDedicatedCores", 24, 14),
        usage(f"/subscriptions/{SUB}/usages/{fam}", "vmFamily/dedicatedCores", fam, family_limit, family_used),
        usage(f"{WS_ID}/usages/{fam}", "workspaces/dedicatedCores", fam, 8, 2),
        usage(f"{WS_ID}/computes/c1/usages/{fam}", "workspaces/computes/dedicatedCores", fam, 24, 2),
        usage(f"/subscriptions/{SUB}", "totalLowPriorityCores", "TotalLowPriorityCores", low_limit, 18),
        usage(f"/subscriptions/{SUB}/usages/{fam}", "vmFamily/lowPriorityCores", fam, -1, 0),
        usage(f"{WS_ID}/usages/{fam}", "workspace/lowPriorityCores", fam, -1, 0),
    ]


def usages_2024(family_limit: int = 24) -> list[dict[str, Any]]:
    """The same rows as ``stable/2024-10-01/examples/Usage/list.json`` spells them: names are the display names,
    types drop ``dedicatedCores``/``lowPriorityCores``, and the low-priority family row comes first here."""
    ded, low = "Standard DSv2 Family Cluster Dedicated vCPUs", "Standard DSv2 Family Cluster LowPriority vCPUs"
    return [
        usage(f"/subscriptions/{SUB}/usages", "totalCores", "Clusters", 100, 7),
        usage(f"/subscriptions/{SUB}/usages/{low.replace(' ', '_')}", "vmFamily", low, -1, 0),
        usage(f"{WS_ID}/usages/{ded.replace(' ', '_')}", "workspaces", ded, 4, 2),
        usage(f"/subscriptions/{SUB}/usages/{ded.replace(' ', '_')}", "vmFamily", ded, family_limit, 2),
        usage(f"/subscriptions/{SUB}/usages", "lowPriorityCores", "Total Cluster LowPriority Regional vCPUs", 50, 18),
    ]


@dataclass(frozen=True)
class Quota:
    reason: str
    fields: dict[str, Any]
    usages: list[dict[str, Any]]
    sufficient: bool | None
    limit: int | None = None
    error: bool = False
    sizes: list[dict[str, Any]] = field(default_factory=lambda: SIZES)


QUOTAS = [
    Quota("fits: 4 nodes x 4 vCPUs within 22 free", {}, usages_2020(), True, 24),
    Quota("exactly the headroom fits", {}, usages_2020(20, 4), True, 20),
    Quota("one vCPU over", {"scaleSettings": {"maxNodeCount": 5}}, usages_2020(20, 1), False, 20),
    Quota(
        "the subscription's family row, not the workspace's, the compute's or the low-priority one (-1)",
        {"scaleSettings": {"maxNodeCount": 5}},
        usages_2020(40, 0),
        True,
        40,
    ),
    Quota(
        "2024-10-01 names: the dedicated family row, though the low-priority one comes first",
        {},
        usages_2024(),
        True,
        24,
    ),
    Quota(
        "low priority counts against the subscription's low-priority total",
        {"vmPriority": "LowPriority", "scaleSettings": {"maxNodeCount": 8}},
        usages_2020(0, 0, 50),
        True,
        50,
    ),
    Quota(
        "low priority at 2024-10-01 names",
        {"vmPriority": "LowPriority", "scaleSettings": {"maxNodeCount": 9}},
        usages_2024(),
        False,
        50,
    ),
    Quota(
        "no row for the family: no verdict", {}, [usage(f"/subscriptions/{SUB}", "x", "StandardNCFamily", 24, 0)], None
    ),
    Quota(
        "only an unlimited row (-1): no verdict",
        {},
        [
            usage(
                f"/subscriptions/{SUB}/usages/StandardDSv2Family",
                "vmFamily/dedicatedCores",
                "StandardDSv2Family",
                -1,
                0,
            )
        ],
        None,
    ),
    Quota("a size the location does not offer", {"vmSize": "Standard_Unknown"}, [], None, error=True),
]


@pytest.mark.parametrize("case", QUOTAS, ids=lambda c: c.reason)
def test_quota_check(case: Quota) -> None:
    quota, error, sufficient = m.quota_check(spec(**case.fields), case.sizes, case.usages)
    assert (error is not None) is case.error
    if case.error:
        return
    assert quota is not None
    assert quota["family"] == "standardDSv2Family"
    assert quota.get("limit") == case.limit
    assert (sufficient[0] if sufficient else None) is case.sufficient
    if sufficient:
        assert "vCPUs" in sufficient[1]


def test_no_size_list_gives_no_verdict() -> None:
    """vmSizes could not be read (or answered a shape no version has): Azure judges the size when it creates."""
    assert m.quota_check(spec(vmSize="Standard_Unknown"), [], usages_2020()) == (None, None, None)


@pytest.mark.parametrize(
    ("reason", "body", "names"),
    [
        ("the 2020-08-01 swagger's key", {"amlCompute": SIZES}, ["Standard_DS3_v2"]),
        ("the 2020-08-01 example's (and every later version's) key", {"value": SIZES}, ["Standard_DS3_v2"]),
        ("neither: nothing", {"sizes": SIZES}, []),
        ("not a list: nothing", {"value": None}, []),
    ],
)
def test_vm_sizes_of(reason: str, body: dict[str, Any], names: list[str]) -> None:
    assert [s["name"] for s in m.vm_sizes_of(body)] == names, reason


@pytest.mark.parametrize(
    ("reason", "value", "expected"),
    [
        (".NET's seven fractional digits and an offset", "2022-08-30T19:56:28.2261097+00:00", "2022-08-30T19:56:28Z"),
        ("milliseconds", "2022-08-30T19:56:28.632+00:00", "2022-08-30T19:56:28Z"),
        ("Z", "2022-08-30T19:56:28Z", "2022-08-30T19:56:28Z"),
        ("another offset is converted to UTC", "2022-08-30T21:56:28+02:00", "2022-08-30T19:56:28Z"),
        ("no zone means UTC", "2022-08-30T19:56:28", "2022-08-30T19:56:28Z"),
        ("absent", None, None),
        ("not a time: None rather than a value the apiserver's date-time format refuses", "yesterday", None),
    ],
)
def test_timestamp(reason: str, value: str | None, expected: str | None) -> None:
    assert timestamp(value) == expected, reason
