"""Invalid references (issue 15, point 11): a compute naming an identity or subnet that is malformed or does not
exist is refused with a 400 at once, never created and made Ready.

Sources, real Azure answers quoted in public threads (the codes and message templates are theirs):

- ``LinkedInvalidPropertyId`` for an id that is not fully qualified: azure-cli issue 25401 and azure-docs issue
  112377, both assigning a user-assigned identity by name ("Property id 'usermanagedidentityexample' at path ''
  is invalid. Expect fully qualified resource Id that start with '/subscriptions/{subscriptionId}' or
  '/providers/{resourceProviderNamespace}/'.").
- ``FailedIdentityOperation`` when the identity service cannot assign it: azure-libraries-for-net issue 690 and
  azure-cli issue 31837 ("Identity operation for resource '…' failed with error 'Failed to perform resource
  identity operation. Status: 'BadRequest'. Response: '{"error":{"code":"BadRequest",…}}'.'."). The inner
  message for an identity that does not exist is not verified.
- ``InvalidResourceReference`` for a subnet that does not exist: azure-cli issue 8569 and azure-docs issue 81734
  ("Resource {subnet id} referenced by resource {id} was not found. Please make sure that the referenced resource
  exists, and that both resources are in the same region."). Those threads are the network RP's; that the ML RP
  words it the same is not verified, nor the ``path`` ARM names for a malformed subnet id.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.machinelearningservices.aio import MachineLearningServicesMgmtClient

from .conftest import BASE, RG, SUB, WS, Arm, aml_body

pytestmark = pytest.mark.emulator

COMPUTE_ID = f"{BASE}/computes/refs"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default"
ELSEWHERE = f"/subscriptions/{SUB}/resourceGroups/no-such-rg/providers"


def with_identities(*ids: str) -> dict[str, Any]:
    body = aml_body("Standard_DS2_v2")
    body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {i: {} for i in ids}}
    return body


def with_subnet(subnet_id: str) -> dict[str, Any]:
    body = aml_body("Standard_DS2_v2")
    body["properties"]["properties"]["subnet"] = {"id": subnet_id}
    return body


def linked_invalid(value: str, path: str) -> str:
    return (
        f"Property id '{value}' at path '{path}' is invalid. Expect fully qualified resource Id that start with "
        "'/subscriptions/{subscriptionId}' or '/providers/{resourceProviderNamespace}/'."
    )


async def refused(arm: Arm, method: str, body: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    status, headers, answer = await arm.call(method, f"{BASE}/computes/refs", body)
    assert status == 400, answer
    assert "Retry-After" not in headers  # azure-core would retry a 400 that carried one (fidelity trap 7)
    assert set(answer) == {"error"}
    assert set(answer["error"]) >= {"code", "message"}
    return headers, answer["error"]


async def test_the_issues_identity_not_an_id_is_refused_through_the_sdk(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """The case the issue found: ``userAssignedIdentities`` keyed by ``not-an-id`` used to be accepted and become
    Ready. Now the SDK's create raises at once with ARM's ``LinkedInvalidPropertyId`` and nothing exists."""
    body = io.BytesIO(json.dumps(with_identities("not-an-id")).encode())
    with pytest.raises(HttpResponseError) as raised:
        await ml_client.machine_learning_compute.begin_create_or_update(RG, WS, "refs", body)
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "LinkedInvalidPropertyId"
    assert raised.value.error.message == linked_invalid("not-an-id", "")
    status, _, _ = await arm.call("GET", f"{BASE}/computes/refs")
    assert status == 404


@pytest.mark.parametrize(
    ("identity", "code"),
    [
        pytest.param("not-an-id", "LinkedInvalidPropertyId", id="not an ARM id"),
        pytest.param("id1", "LinkedInvalidPropertyId", id="a bare name"),
        pytest.param(
            f"{ELSEWHERE}/Microsoft.ManagedIdentity/userAssignedIdentities/id1",
            "FailedIdentityOperation",
            id="in a resource group that does not exist",
        ),
        pytest.param(
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/id1",
            "FailedIdentityOperation",
            id="not an identity",
        ),
    ],
)
async def test_create_with_a_bad_identity_is_400(arm: Arm, identity: str, code: str) -> None:
    """A malformed id: ARM's ``LinkedInvalidPropertyId`` at path ''. A well-formed id that names no identity:
    ``FailedIdentityOperation`` wrapping the identity service's BadRequest. Either way nothing is created."""
    _, error = await refused(arm, "PUT", with_identities(IDENTITY, identity))
    assert error["code"] == code
    if code == "LinkedInvalidPropertyId":
        assert error["message"] == linked_invalid(identity, "")
    else:
        assert error["message"].startswith(
            f"Identity operation for resource '{COMPUTE_ID}' failed with error 'Failed to perform resource "
            "identity operation. Status: 'BadRequest'. Response: '"
        )
        inner = json.loads(error["message"].split("Response: '", 1)[1].removesuffix("'.'."))
        assert inner["error"]["code"] == "BadRequest"
        assert identity in inner["error"]["message"]
    status, _, _ = await arm.call("GET", f"{BASE}/computes/refs")
    assert status == 404


@pytest.mark.parametrize(
    ("subnet", "code"),
    [
        pytest.param("default", "LinkedInvalidPropertyId", id="a bare subnet name"),
        pytest.param(
            f"{ELSEWHERE}/Microsoft.Network/virtualNetworks/vnet/subnets/default",
            "InvalidResourceReference",
            id="in a resource group that does not exist",
        ),
        pytest.param(
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/vnet",
            "InvalidResourceReference",
            id="a virtual network, not a subnet",
        ),
    ],
)
async def test_create_with_a_bad_subnet_is_400(arm: Arm, subnet: str, code: str) -> None:
    """A malformed subnet id: ``LinkedInvalidPropertyId``; one that names no subnet: ``InvalidResourceReference``
    with the network RP's wording, naming both the subnet and the compute."""
    _, error = await refused(arm, "PUT", with_subnet(subnet))
    assert error["code"] == code
    if code == "LinkedInvalidPropertyId":
        assert error["message"] == linked_invalid(subnet, "properties.properties.subnet.id")
    else:
        assert error["message"] == (
            f"Resource {subnet} referenced by resource {COMPUTE_ID} was not found. Please make sure that the "
            "referenced resource exists, and that both resources are in the same region."
        )


async def test_patch_adding_a_bad_identity_is_400_and_changes_nothing(frozen_arm: Arm) -> None:
    """azureml-core's ``add_identity`` PATCH with a malformed id is refused like a create; the identity stays."""
    await frozen_arm.call("PUT", f"{BASE}/computes/refs", aml_body("Standard_DS2_v2"))
    await frozen_arm.advance(30)  # created
    patch = {"identity": {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {"not-an-id": {}}}}
    _, error = await refused(frozen_arm, "PATCH", patch)
    assert error["code"] == "LinkedInvalidPropertyId"
    _, _, body = await frozen_arm.call("GET", f"{BASE}/computes/refs")
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert body["identity"]["type"] == "SystemAssigned"
    assert "userAssignedIdentities" not in body["identity"]


async def test_references_that_could_exist_are_accepted(arm: Arm) -> None:
    """The control: an identity and a subnet in the seeded resource group are accepted (201) and echoed."""
    body = with_identities(IDENTITY)
    body["properties"]["properties"]["subnet"] = {"id": SUBNET}
    status, _, created = await arm.call("PUT", f"{BASE}/computes/refs", body)
    assert status == 201
    assert list(created["identity"]["userAssignedIdentities"]) == [IDENTITY]
    assert created["properties"]["properties"]["subnet"] == {"id": SUBNET}
