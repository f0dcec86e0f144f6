"""Quotas_Update and Quotas_List as Azure answers them, through the operator's own adapter
(``MlClient.update_quotas``/``quotas``: SDK 1.0.1's ``quotas.update``/``quotas.list``) and raw HTTPS.

Evidence: azure-rest-api-specs ``specification/machinelearningservices/resource-manager/
Microsoft.MachineLearningServices/stable/2020-08-01/examples/updateQuota.json`` (request ``{value: [{id, type,
limit, unit}]}`` with ids ``{workspace}/quotas/StandardDSv2Family``; answer 200 ``{value: [{id, type, limit,
unit, status: "Success"}]}``), ``ListWorkspaceQuotasByVMFamily.json`` (the subscription's and each workspace's
row per family), and the swagger's ``UpdateWorkspaceQuotas.status`` enum (Undefined, Success, Failure,
InvalidQuotaBelowClusterMinimum, InvalidQuotaExceedsSubscriptionLimit, InvalidVMFamilyName; later versions add
OperationNotSupportedForSku, OperationNotEnabledForRegion): a refused item is answered in the list with its
status, not as an HTTP error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from amlops.api.workspacequota import WorkspaceQuotaSpec
from amlops.azure.clients import AzureClients
from amlops.azure.ml import MlClient
from amlops.external import workspacequota_map as m
from amlops.settings import Settings
from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.server import RunningEmulator

from .conftest import BASE, RG, SUB, WS, Arm

pytestmark = pytest.mark.emulator

LOC = "westeurope"
LOCATION = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/{LOC}"
KIND = "Microsoft.MachineLearningServices/workspaces/dedicatedCores/quotas"


@pytest.fixture
async def ml(emulator: RunningEmulator) -> AsyncIterator[MlClient]:
    clients = AzureClients(
        Settings(arm_endpoint=emulator.arm_url, ca_bundle=emulator.tls.ca, static_token=EMULATOR_TOKEN)
    )
    try:
        yield clients.ml("default", SUB)
    finally:
        await clients.close()


def spec(*limits: tuple[str, int]) -> WorkspaceQuotaSpec:
    return WorkspaceQuotaSpec.model_validate(
        {
            "workspace": {"subscriptionId": SUB, "resourceGroup": RG, "name": WS},
            "limits": [{"vmFamily": f, "limit": n} for f, n in limits],
        }
    )


async def test_update_answers_as_update_quota_json(arm: Arm) -> None:
    """updateQuota.json: 200, ``value`` echoes each item's id, type, limit and unit, with ``status: Success``."""
    item = {"id": f"{BASE}/quotas/StandardDSv2Family", "type": KIND, "limit": 12, "unit": "Count"}
    status, _, body = await arm.call("POST", f"{LOCATION}/updateQuotas", {"value": [item]})
    assert status == 200
    (answer,) = body["value"]
    assert answer == {**item, "status": "Success"}


async def test_the_operator_applies_and_reads_back_a_limit(ml: MlClient) -> None:
    """The diff the operator sends for a new limit is applied; Quotas_List then shows it in the workspace's row
    (ListWorkspaceQuotasByVMFamily.json), and the diff is empty."""
    wanted = spec(("standardDSv2Family", 8))
    items, _ = m.diff(wanted, await ml.quotas(LOC), BASE)
    assert len(items) == 1
    results = await ml.update_quotas(LOC, items)
    assert m.refusal(results) is None
    quotas = await ml.quotas(LOC)
    assert m.workspace_limits(quotas, BASE)["standarddsv2family"] == 8
    assert m.diff(wanted, quotas, BASE)[0] == []


@pytest.mark.parametrize(
    ("family", "limit", "status"),
    [
        ("standardNCFamily", 1000, "InvalidQuotaExceedsSubscriptionLimit"),
        ("standardXYZFamily", 4, "InvalidVMFamilyName"),
    ],
)
async def test_a_refused_item_is_answered_with_its_status(ml: MlClient, family: str, limit: int, status: str) -> None:
    """A refused item comes back in the 200 list with the swagger's status value; the limit is left as it was."""
    before = m.workspace_limits(await ml.quotas(LOC), BASE)
    items, _ = m.diff(spec((family, limit)), await ml.quotas(LOC), BASE)
    refused = m.refusal(await ml.update_quotas(LOC, items))
    assert refused is not None
    assert refused[0] == status
    assert m.workspace_limits(await ml.quotas(LOC), BASE) == before
