"""C22: every stable Microsoft.MachineLearningServices api-version, each with its own differences for computes.

Sources, all in Azure/azure-rest-api-specs under
``specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/``:
``stable/<version>/machineLearningServices.json`` (2018-11-19 … 2025-06-01), and
``MachineLearningServices/stable/<version>/`` (2025-09-01 ``machineLearningServices.json``; 2025-12-01 and
2026-07-01 ``openapi.json``). Expected values are written here as facts, not read from the emulator's table.
"""

from __future__ import annotations

from typing import Any

import pytest

from amlops_emulator.arm.state import ArmSettings
from amlops_emulator.server import RunningEmulator

from .conftest import BASE, RG, SUB, Arm, Starter, aml_body, session_for

pytestmark = pytest.mark.emulator

LOCATION = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope"
UAI = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
# Every stable folder of the spec, oldest first.
STABLE = (
    "2018-11-19",
    "2019-05-01",
    "2019-06-01",
    "2019-11-01",
    "2020-01-01",
    "2020-03-01",
    "2020-04-01",
    "2020-06-01",
    "2020-08-01",
    "2021-01-01",
    "2021-04-01",
    "2021-07-01",
    "2022-05-01",
    "2022-10-01",
    "2023-04-01",
    "2023-10-01",
    "2024-04-01",
    "2024-10-01",
    "2025-04-01",
    "2025-06-01",
    "2025-09-01",
    "2025-12-01",
    "2026-07-01",
)
# The previews azure-ai-ml 1.35.2 sends (its _ml_client.py: one MachineLearningServicesMgmtClient per api-version),
# each served as the newest stable version dated on or before it; no other preview is served.
AZURE_AI_ML_PREVIEWS = (
    "2022-02-01-preview",
    "2022-10-01-preview",
    "2023-02-01-preview",
    "2023-04-01-preview",
    "2023-06-01-preview",
    "2023-08-01-preview",
    "2024-01-01-preview",
    "2024-04-01-preview",
    "2024-10-01-preview",
    "2025-01-01-preview",
)
# The properties later versions added to AmlCompute.properties / Compute, as a client of that version sends them.
LATER_AML = {
    "enableNodePublicIp": False,
    "isolatedNetwork": True,
    "virtualMachineImage": {"id": "/subscriptions/x/images/win2019"},
    "propertyBag": {"owner": "team-a"},
}


def _created() -> dict[str, Any]:
    body: dict[str, Any] = aml_body("Standard_DS2_v2")
    body["properties"]["properties"].update(LATER_AML)
    body["properties"]["disableLocalAuth"] = True
    return body


async def _settle(arm: Arm) -> None:
    # Frozen clock: the longest operation (create, update by PUT) takes 30 virtual seconds.
    await arm.advance(31)


@pytest.mark.parametrize("version", STABLE)
async def test_c22_every_stable_version_is_served(frozen_arm: Arm, version: str) -> None:
    """C22: GET computes at each stable version (the folders listed in this module's docstring) answers 200 with
    ``PaginatedComputeResourcesList`` ``{value, nextLink}`` and ARM's request headers."""
    status, headers, body = await frozen_arm.call("GET", f"{BASE}/computes", api_version=version)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["x-ms-request-id"]
    assert body == {"value": [], "nextLink": None}


async def test_c22_unsupported_version_is_no_registered_provider_found(frozen_arm: Arm) -> None:
    """C22: an api-version the RP does not serve (a date with no stable folder, or a preview) is ARM's 400
    ``NoRegisteredProviderFound``: "No registered resource provider found for location '{loc}' and API version
    '{v}' for type '{type}'. The supported api-versions are '{ascending, ', '-separated}'. The supported locations
    are '{...}'." as quoted from the real service in MicrosoftDocs/azure-docs#92520 (type
    'workspaces/batchEndpoints') and microsoft/vscode-tools-for-ai#940 (type 'workspaces/models'). No
    Retry-After (trap 7), so azure-core does not retry it. InvalidApiVersionParameter is what ARM's own
    Microsoft.Resources endpoints answer (Azure/azure-cli#28038), not a resource provider's types. The list is
    ascending; the previews the emulator serves (those azure-ai-ml sends) are in it, in date order."""
    supported = ", ".join(sorted(STABLE + AZURE_AI_ML_PREVIEWS))
    status, headers, body = await frozen_arm.call("GET", f"{BASE}/computes/cpu", api_version="2025-10-01")
    assert status == 400
    assert "Retry-After" not in headers
    assert headers["x-ms-request-id"]
    assert body == {
        "error": {
            "code": "NoRegisteredProviderFound",
            "message": "No registered resource provider found for location 'westeurope' and API version "
            f"'2025-10-01' for type 'workspaces/computes'. The supported api-versions are '{supported}'. "
            "The supported locations are 'westeurope'.",
            "details": [],
        }
    }
    status, _, body = await frozen_arm.call("GET", f"{LOCATION}/vmSizes", api_version="2024-07-01-preview")
    assert status == 400
    assert body["error"]["code"] == "NoRegisteredProviderFound"
    assert (
        "for location 'westeurope' and API version '2024-07-01-preview' for type 'locations/vmSizes'"
        in (body["error"]["message"])
    )
    status, _, body = await frozen_arm.call("GET", f"{BASE}/computes", api_version=None)
    assert (status, body["error"]["code"]) == (400, "MissingApiVersionParameter")


@pytest.mark.parametrize(
    ("version", "nested"),
    [("2020-08-01", False), ("2021-04-01", False), ("2021-07-01", True), ("2025-12-01", True)],
)
async def test_c22_patch_reads_scale_settings_where_the_versions_swagger_puts_them(
    frozen_arm: Arm, version: str, nested: bool
) -> None:
    """C22 (C6 per version): ``ClusterUpdateParameters`` is ``{properties: {scaleSettings}}`` up to 2021-04-01
    (``ClusterUpdateProperties.scaleSettings`` in stable/2020-08-01 and stable/2021-04-01
    machineLearningServices.json; example patchAmlCompute.json) and ``{properties: {properties: {scaleSettings}}}``
    from 2021-07-01 (``ClusterUpdateProperties.properties: ScaleSettingsInformation`` in stable/2021-07-01; the
    2025-12-01 generated client, azure-ai-ml 1.35.2 ``_restclient/arm_ml_service``, has the same). Note the
    2021-07-01 example examples/Compute/patch.json still shows the flat body: the swagger wins. The other place
    is an unknown property for that version and is ignored: 200, no Azure-AsyncOperation, nothing changes."""
    await frozen_arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2"), api_version=version)
    await _settle(frozen_arm)
    scale = {"maxNodeCount": 3, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT2M"}
    flat = {"properties": {"scaleSettings": scale}}
    deep = {"properties": {"properties": {"scaleSettings": scale}}}
    status, headers, body = await frozen_arm.call(
        "PATCH", f"{BASE}/computes/cpu", flat if nested else deep, api_version=version
    )
    assert status == 200
    assert "Azure-AsyncOperation" not in headers
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert body["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 1
    status, headers, body = await frozen_arm.call(
        "PATCH", f"{BASE}/computes/cpu", deep if nested else flat, api_version=version
    )
    assert status == 200
    assert f"api-version={version}" in headers["Azure-AsyncOperation"]
    assert body["properties"]["provisioningState"] == "Updating"
    assert body["properties"]["properties"]["scaleSettings"] == {
        "maxNodeCount": 3,
        "minNodeCount": 0,
        "nodeIdleTimeBeforeScaleDown": "PT2M",
    }


@pytest.mark.parametrize(
    ("version", "status"),
    [("2020-08-01", 404), ("2021-07-01", 404), ("2022-05-01", 204), ("2024-10-01", 204), ("2026-07-01", 204)],
)
async def test_c22_delete_of_a_missing_compute(frozen_arm: Arm, version: str, status: int) -> None:
    """C22 (C9 per version): stable/2022-05-01 machineLearningServices.json is the first to document ``204: "No
    content; The target compute does not exist."`` on Compute_Delete (examples/Compute/delete.json from
    2022-10-01 on lists ``"204": {}``); stable/2021-07-01 declares 200/202 only, and so do the versions before it,
    whose clients accept no 204: there ARM's 404 ResourceNotFound (the emulator's C9 policy)."""
    got, headers, body = await frozen_arm.call(
        "DELETE", f"{BASE}/computes/nope", api_version=version, underlyingResourceAction="Delete"
    )
    assert got == status
    assert headers["x-ms-request-id"]
    assert "Azure-AsyncOperation" not in headers
    if status == 204:
        assert body is None
    else:
        assert body["error"]["code"] == "ResourceNotFound"


@pytest.mark.parametrize(
    ("version", "key"),
    [("2020-08-01", "amlCompute"), ("2021-07-01", "amlCompute"), ("2022-05-01", "value"), ("2025-12-01", "value")],
)
async def test_c22_vm_sizes_list_key(frozen_arm: Arm, version: str, key: str) -> None:
    """C22 (C12 per version): ``VirtualMachineSizeListResult`` names its list ``amlCompute`` in stable/2020-08-01
    and stable/2021-07-01 machineLearningServices.json, ``value`` from stable/2022-05-01 (and in the 2025-12-01
    generated client). Evidence conflicts for 2020-08-01: its example examples/ListVMSizesResult.json shows
    ``value``; the emulator keeps the swagger's ``amlCompute`` (which azure-mgmt-machinelearningservices 1.0.1
    deserializes) and the operator reads either key (issue 15 point 4)."""
    status, headers, body = await frozen_arm.call("GET", f"{LOCATION}/vmSizes", api_version=version)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert list(body) == [key]
    size = next(s for s in body[key] if s["name"] == "Standard_DS2_v2")
    assert (size["vCPUs"], size["gpus"]) == (2, 0)


async def test_c22_error_shape_follows_the_version(frozen_arm: Arm) -> None:
    """C22: up to 2021-04-01 the default error is ``MachineLearningServiceError`` ``{error: {code, message,
    details}}`` (stable/2020-08-01, stable/2021-04-01 machineLearningServices.json); from 2021-07-01 the
    common-types ``ErrorResponse`` (v2 in stable/2021-07-01, v3 from stable/2022-05-01), whose ErrorDetail is
    ``{code, message, target, details, additionalInfo}``. The real ML RP 404 quoted in
    Azure/azure-cli-extensions#6662 carries ``details: []`` and ``additionalInfo``; ``x-ms-response-type: error``."""
    status, headers, old = await frozen_arm.call("GET", f"{BASE}/computes/nope", api_version="2020-08-01")
    assert status == 404
    assert headers["x-ms-response-type"] == "error"
    assert list(old["error"]) == ["code", "message", "details"]
    assert (old["error"]["code"], old["error"]["details"]) == ("ResourceNotFound", [])
    for version in ("2021-07-01", "2025-12-01"):
        status, headers, new = await frozen_arm.call("GET", f"{BASE}/computes/nope", api_version=version)
        assert status == 404
        assert headers["x-ms-response-type"] == "error"
        assert new == {
            "error": {
                "code": "ResourceNotFound",
                "message": old["error"]["message"],
                "target": None,
                "details": [],
                "additionalInfo": [],
            }
        }


@pytest.mark.parametrize(
    ("version", "fields"),
    [
        ("2020-08-01", {"principalId", "clientId"}),
        ("2021-07-01", {"principalId", "tenantId", "clientId"}),
        ("2022-05-01", {"principalId", "clientId"}),
        ("2025-12-01", {"principalId", "clientId"}),
    ],
)
async def test_c22_user_assigned_identity_values(frozen_arm: Arm, version: str, fields: set[str]) -> None:
    """C22: the user-assigned identity map's values: stable/2021-07-01 declares its own ``Identity`` whose
    ``UserAssignedIdentity`` is ``{principalId, tenantId, clientId}``; from stable/2022-05-01 ``identity`` is
    common-types v3 ``managedidentity.json#/definitions/ManagedServiceIdentity``, whose values are
    ``{principalId, clientId}`` (v4 the same); 2020-08-01 as the fidelity reference (azure-api-fidelity.md §1.5)
    reads its swagger."""
    body = aml_body("Standard_DS2_v2")
    body["identity"] = {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {UAI: {}}}
    await frozen_arm.call("PUT", f"{BASE}/computes/cpu", body, api_version=version)
    await _settle(frozen_arm)
    status, _, got = await frozen_arm.call("GET", f"{BASE}/computes/cpu", api_version=version)
    assert status == 200
    identity = got["identity"]
    assert identity["type"] == "SystemAssigned,UserAssigned"
    assert identity["principalId"]
    assert identity["tenantId"]
    assert set(identity["userAssignedIdentities"][UAI]) == fields
    assert identity["userAssignedIdentities"][UAI]["clientId"]


async def test_c22_list_pages_with_the_versions_skip_parameter(start_emulator: Starter) -> None:
    """C22 (C10 per version): the computes list pages with ``$skiptoken`` up to 2021-04-01 (stable/2020-08-01
    ``MachineLearningCompute_ListByWorkspace``) and with ``#/parameters/PaginationParameter`` from 2021-07-01
    (stable/2021-07-01 and stable/2022-05-01 ``Compute_List``), which the 2025-12-01 generated client sends as
    ``$skip``. nextLink is an absolute link that, followed, gives the rest."""
    running: RunningEmulator = await start_emulator(speed=0.0, arm=ArmSettings(page_size=2))
    async with session_for(running) as session:
        arm = Arm(running, session)
        for index in range(3):
            await arm.call("PUT", f"{BASE}/computes/cpu{index}", aml_body("Standard_DS2_v2"))
        for version, parameter, other in (
            ("2020-08-01", "$skiptoken=", "$skip="),
            ("2022-05-01", "$skip=", "$skiptoken"),
        ):
            status, _, first = await arm.call("GET", f"{BASE}/computes", api_version=version)
            assert status == 200
            assert [c["name"] for c in first["value"]] == ["cpu0", "cpu1"]
            link = first["nextLink"]
            assert link.startswith(f"{running.arm_url}{BASE}/computes?")
            assert parameter in link
            assert other not in link
            assert f"api-version={version}" in link
            async with session.get(link) as response:
                assert response.status == 200
                rest = await response.json()
            assert ([c["name"] for c in rest["value"]], rest["nextLink"]) == (["cpu2"], None)


async def test_c22_later_aml_properties_are_accepted_and_echoed_from_their_version(frozen_arm: Arm) -> None:
    """C22: ``AmlCompute.properties`` gains ``virtualMachineImage``, ``isolatedNetwork`` and ``enableNodePublicIp``
    in stable/2021-01-01 and stable/2021-04-01, ``propertyBag`` in stable/2022-05-01 (``AmlComputeProperties``);
    ``Compute.disableLocalAuth`` appears in stable/2021-07-01. Values when the client sent none are the recording
    test_compute.pyTestComputetest_aml_compute_create_and_delete.json (Azure/azure-sdk-assets, 2023-08-01-preview):
    the 201 shows ``disableLocalAuth: false``, ``virtualMachineImage: null``, ``isolatedNetwork: false``,
    ``enableNodePublicIp: true`` and no ``propertyBag``; the GET after success adds ``propertyBag: {}``. A GET at
    an older version shows only what that version defines."""
    status, _, created = await frozen_arm.call("PUT", f"{BASE}/computes/new", _created(), api_version="2025-12-01")
    assert status == 201
    assert created["properties"]["disableLocalAuth"] is True
    aml = created["properties"]["properties"]
    assert {k: aml[k] for k in ("enableNodePublicIp", "isolatedNetwork", "virtualMachineImage")} == {
        "enableNodePublicIp": False,
        "isolatedNetwork": True,
        "virtualMachineImage": {"id": "/subscriptions/x/images/win2019"},
    }
    assert "propertyBag" not in aml
    await _settle(frozen_arm)
    _, _, got = await frozen_arm.call("GET", f"{BASE}/computes/new", api_version="2025-12-01")
    assert got["properties"]["properties"]["propertyBag"] == {"owner": "team-a"}
    _, _, older = await frozen_arm.call("GET", f"{BASE}/computes/new", api_version="2021-04-01")
    assert "disableLocalAuth" not in older["properties"]
    assert older["properties"]["properties"]["enableNodePublicIp"] is False
    assert "propertyBag" not in older["properties"]["properties"]
    _, _, oldest = await frozen_arm.call("GET", f"{BASE}/computes/new", api_version="2020-08-01")
    assert "disableLocalAuth" not in oldest["properties"]
    assert not set(LATER_AML) & set(oldest["properties"]["properties"])
    # Emulator policy, not verified: an update by PUT at an older version keeps what that version cannot see.
    status, _, _ = await frozen_arm.call(
        "PUT", f"{BASE}/computes/new", aml_body("Standard_DS2_v2", idle="PT9M"), api_version="2020-08-01"
    )
    assert status == 201
    await _settle(frozen_arm)
    _, _, after = await frozen_arm.call("GET", f"{BASE}/computes/new", api_version="2025-12-01")
    assert after["properties"]["properties"]["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] == "PT9M"
    assert {k: after["properties"]["properties"][k] for k in LATER_AML} == LATER_AML
    assert after["properties"]["disableLocalAuth"] is True


async def test_c22_later_properties_sent_to_an_older_version_are_ignored(frozen_arm: Arm) -> None:
    """C22: a property the version's swagger does not define is ignored, as ARM resource providers generally do;
    no public recording or issue thread shows the ML RP refusing one (not verified beyond that). So a 2020-08-01
    PUT carrying the later properties succeeds and a 2025-12-01 GET shows the defaults of the recording
    test_compute.pyTestComputetest_aml_compute_create_and_delete.json; a wrong type at a version that defines the
    property is a 400."""
    status, _, _ = await frozen_arm.call("PUT", f"{BASE}/computes/old", _created(), api_version="2020-08-01")
    assert status == 201
    await _settle(frozen_arm)
    _, _, got = await frozen_arm.call("GET", f"{BASE}/computes/old", api_version="2025-12-01")
    assert got["properties"]["disableLocalAuth"] is False
    aml = got["properties"]["properties"]
    assert {k: aml[k] for k in LATER_AML} == {
        "enableNodePublicIp": True,
        "isolatedNetwork": False,
        "virtualMachineImage": None,
        "propertyBag": {},
    }
    bad = aml_body("Standard_DS2_v2")
    bad["properties"]["properties"]["enableNodePublicIp"] = "no"
    status, headers, body = await frozen_arm.call("PUT", f"{BASE}/computes/bad", bad, api_version="2025-12-01")
    assert status == 400
    assert "Retry-After" not in headers
    assert body["error"]["code"] == "BadRequest"
    assert "enableNodePublicIp" in body["error"]["message"]
    status, _, _ = await frozen_arm.call("PUT", f"{BASE}/computes/bad", bad, api_version="2020-08-01")
    assert status == 201


async def test_c22_basic_aml_compute_example_at_2025_12_01_is_kept_and_echoed(frozen_arm: Arm) -> None:
    """C22: the request of stable/2025-12-01/examples/Compute/createOrUpdate/BasicAmlCompute.json (osType Windows,
    a Compute Gallery image version as virtualMachineImage, isolatedNetwork false, enableNodePublicIp true,
    remoteLoginPortPublicAccess NotSpecified) is accepted, and a GET shows what it sent in the places
    stable/2025-12-01/examples/Compute/get/AmlCompute.json shows them (osType, virtualMachineImage,
    isolatedNetwork and enableNodePublicIp under ``properties.properties``); the vmSize upper-cased as that
    example and the recording show it. These are the properties the operator sends at 2025-12-01."""
    image = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myResourceGroup/providers/"
        "Microsoft.Compute/galleries/myImageGallery/images/myImageDefinition/versions/0.0.1"
    )
    body = {
        "location": "eastus",
        "properties": {
            "computeType": "AmlCompute",
            "properties": {
                "vmSize": "STANDARD_NC6",
                "vmPriority": "Dedicated",
                "osType": "Windows",
                "virtualMachineImage": {"id": image},
                "isolatedNetwork": False,
                "scaleSettings": {"maxNodeCount": 1, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT5M"},
                "remoteLoginPortPublicAccess": "NotSpecified",
                "enableNodePublicIp": True,
            },
        },
    }
    status, _, _ = await frozen_arm.call("PUT", f"{BASE}/computes/basic", body, api_version="2025-12-01")
    assert status == 201
    await _settle(frozen_arm)
    status, _, got = await frozen_arm.call("GET", f"{BASE}/computes/basic", api_version="2025-12-01")
    assert status == 200
    aml = got["properties"]["properties"]
    assert {
        k: aml[k] for k in ("vmSize", "osType", "virtualMachineImage", "isolatedNetwork", "enableNodePublicIp")
    } == {
        "vmSize": "STANDARD_NC6",
        "osType": "Windows",
        "virtualMachineImage": {"id": image},
        "isolatedNetwork": False,
        "enableNodePublicIp": True,
    }


async def test_c22_usages_and_quotas_in_2025_12_01_names(frozen_arm: Arm) -> None:
    """C22 (C13-C15 per version): from 2022-05-01 (``examples/Usage/list.json`` of 2022-05-01, 2024-04-01 and
    2025-12-01) a family's usage row is ``/subscriptions/{s}/usages/Standard_DSv2_Family_Cluster_Dedicated_vCPUs``
    named "Standard DSv2 Family Cluster Dedicated vCPUs" and typed ``.../vmFamily/usages`` (workspace rows
    ``.../workspaces/usages``), the totals ``/subscriptions/{s}/usages`` typed ``.../dedicatedCores/usages`` and
    ``.../lowPriorityCores/usages``; quotas (``stable/2025-12-01/examples/Quota/list.json``) are
    ``.../quotas/Standard_DSv2_Family_Cluster_Dedicated_vCPUs`` typed ``.../vmFamily/quotas`` and
    ``.../workspaces/quotas``, and ``Quota/update.json`` sets a workspace's limit by that id. 2020-08-01 keeps its
    own names ("StandardDSv2Family", test_c10_c16_lists_and_location.py)."""
    await frozen_arm.call(
        "PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2", min_nodes=1), api_version="2025-12-01"
    )
    await frozen_arm.advance(30 + 30 + 60)  # create, allocate, prepare: one node
    provider = "Microsoft.MachineLearningServices"
    location = f"/subscriptions/{SUB}/providers/{provider}/locations/westeurope"
    name = "Standard_DSv2_Family_Cluster_Dedicated_vCPUs"
    status, _, usages = await frozen_arm.call("GET", f"{location}/usages", api_version="2025-12-01")
    assert status == 200
    rows = {(u["id"], u["type"]): u for u in usages["value"]}
    family = rows[(f"/subscriptions/{SUB}/usages/{name}", f"{provider}/vmFamily/usages")]
    assert family["name"]["value"] == "Standard DSv2 Family Cluster Dedicated vCPUs"
    assert family["currentValue"] == 2  # one Standard_DS2_v2 node: 2 vCPUs
    assert (f"{BASE}/usages/{name}", f"{provider}/workspaces/usages") in rows
    total = rows[(f"/subscriptions/{SUB}/usages", f"{provider}/lowPriorityCores/usages")]
    assert total["name"]["value"] == "Total Cluster LowPriority Regional vCPUs"
    assert not [u for u in usages["value"] if "dedicatedCores/usages" in u["type"] and "/usages/" in u["id"]]

    status, _, quotas = await frozen_arm.call("GET", f"{location}/quotas", api_version="2025-12-01")
    assert status == 200
    by_id = {q["id"]: q for q in quotas["value"]}
    assert by_id[f"/subscriptions/{SUB}/quotas/{name}"]["type"] == f"{provider}/vmFamily/quotas"
    assert by_id[f"{BASE}/quotas/{name}"]["type"] == f"{provider}/workspaces/quotas"
    update = {"value": [{"id": f"{BASE}/quotas/{name}", "type": f"{provider}/workspaces/quotas", "limit": 8}]}
    status, _, answer = await frozen_arm.call("POST", f"{location}/updateQuotas", update, api_version="2025-12-01")
    assert (status, answer["value"][0]["status"]) == (200, "Success")
    _, _, after = await frozen_arm.call("GET", f"{location}/quotas", api_version="2025-12-01")
    assert {q["id"]: q["limit"] for q in after["value"]}[f"{BASE}/quotas/{name}"] == 8
    _, _, old = await frozen_arm.call("GET", f"{location}/quotas", api_version="2020-08-01")
    assert {q["id"]: q["limit"] for q in old["value"]}[f"{BASE}/quotas/StandardDSv2Family"] == 8


@pytest.mark.parametrize(
    ("preview", "stable_status", "sizes_key"),
    [
        ("2022-02-01-preview", 404, "amlCompute"),  # served as 2021-07-01
        ("2023-08-01-preview", 204, "value"),  # as 2023-04-01: azure-ai-ml's compute operations
        ("2024-10-01-preview", 204, "value"),  # as 2024-10-01: azure-ai-ml's workspaces and datastores
    ],
)
async def test_c22_a_preview_is_served_as_the_stable_version_before_it(
    frozen_arm: Arm, preview: str, stable_status: int, sizes_key: str
) -> None:
    """The previews azure-ai-ml 1.35.2 sends (AZURE_AI_ML_PREVIEWS) are served with the behaviour of the newest
    stable version dated on or before them (arm/versions.py), shown here by two of the per-version differences
    above: DELETE of a missing compute and the vmSizes list key. azure-ai-ml's own generated client at
    2023-08-01-preview reads ``value`` (tests/emulator/ml: ``compute.list_sizes``)."""
    got, _, _ = await frozen_arm.call(
        "DELETE", f"{BASE}/computes/nope", api_version=preview, underlyingResourceAction="Delete"
    )
    assert got == stable_status
    status, _, body = await frozen_arm.call("GET", f"{LOCATION}/vmSizes", api_version=preview)
    assert status == 200
    assert list(body) == [sizes_key]
