"""Details that clients compare (issue 15, point 9): the exact shape of a compute's 201s and of its GETs.

Source for every case: the azure-sdk-for-python recording
``sdk/ml/azure-ai-ml/tests/recordings/compute/e2etests/test_compute.pyTestComputetest_aml_compute_create_and_delete.json``
(real traffic, 30 Aug 2022): a create (PUT 201), the operation, two GETs, an update by PUT (201), the operation,
two GETs and a DELETE. The expected values below are the recording's, written as facts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from amlops_emulator.arm.compute import arm_time

from .conftest import BASE, Arm

pytestmark = pytest.mark.emulator

# .NET's "yyyy-MM-ddTHH:mm:ss.FFFFFFFzzz": up to seven fractional digits, trailing zeros dropped, "+00:00".
ARM_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,6}[1-9])?\+00:00$")
MILLIS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,2}[1-9])?\+00:00$")
SSH_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDW administrator@host"


def recorded_body(*, min_nodes: int = 0, idle: str = "PT1M40S") -> dict[str, Any]:
    """The recording's create request: no tags, no identity, credentials with a password, remote login open."""
    return {
        "location": "westeurope",
        "properties": {
            "computeType": "AmlCompute",
            "description": "some_desc_aml",
            "properties": {
                "osType": "Linux",
                "vmSize": "Standard_DS2_v2",
                "vmPriority": "Dedicated",
                "scaleSettings": {"maxNodeCount": 2, "minNodeCount": min_nodes, "nodeIdleTimeBeforeScaleDown": idle},
                "userAccountCredentials": {
                    "adminUserName": "azureuser",
                    "adminUserSshPublicKey": SSH_KEY,
                    "adminUserPassword": "passwd12345",
                },
                "remoteLoginPortPublicAccess": "Enabled",
            },
        },
    }


@pytest.mark.parametrize(
    ("moment", "digits", "written"),
    [
        pytest.param(
            datetime(2022, 8, 30, 19, 56, 28, 226109, tzinfo=UTC),
            7,
            "2022-08-30T19:56:28.226109+00:00",
            id="ticks: the 7th digit Python lacks is a zero, dropped",
        ),
        pytest.param(
            datetime(2022, 8, 30, 19, 56, 59, 264095, tzinfo=UTC),
            7,
            "2022-08-30T19:56:59.264095+00:00",
            id="the recording's modifiedOn after the update PUT, as written",
        ),
        pytest.param(
            datetime(2022, 8, 30, 19, 56, 28, 632000, tzinfo=UTC),
            3,
            "2022-08-30T19:56:28.632+00:00",
            id="allocationStateTransitionTime: milliseconds",
        ),
        pytest.param(
            datetime(2022, 8, 30, 19, 56, 28, 500000, tzinfo=UTC),
            7,
            "2022-08-30T19:56:28.5+00:00",
            id="trailing zeros dropped",
        ),
        pytest.param(datetime(2022, 8, 30, 19, 56, 28, tzinfo=UTC), 7, "2022-08-30T19:56:28+00:00", id="no fraction"),
    ],
)
def test_arm_time_writes_dotnet_round_trip_with_offset(moment: datetime, digits: int, written: str) -> None:
    """The recording writes ``createdOn`` ``2022-08-30T19:56:28.2261097+00:00``, ``modifiedOn``
    ``2022-08-30T19:56:59.264095+00:00`` (a trailing zero dropped) and ``allocationStateTransitionTime``
    ``2022-08-30T19:56:28.632+00:00``: .NET's ``FFFFFFF`` fraction and ``+00:00``, never ``Z``."""
    assert arm_time(moment, digits) == written
    assert ARM_TIME.match(written)


async def test_create_201_has_no_null_identity_sku_location_or_credentials(frozen_arm: Arm) -> None:
    """The create's 201 body (recording, first PUT): top level exactly id, name, type, location, tags (null: none
    were sent), properties — no ``identity`` and no ``sku`` keys at all; in ``properties`` no ``computeLocation``,
    ``resourceId`` null, ``createdOn`` == ``modifiedOn`` in the ``+00:00`` form, ``provisioningErrors`` null,
    ``isAttachedCompute`` false; inside, ``vmSize`` upper-cased (``STANDARD_DS2_V2`` for ``Standard_DS2_v2``), the
    observed fields null, no ``allocationStateTransitionTime`` and no ``userAccountCredentials``."""
    status, headers, created = await frozen_arm.call("PUT", f"{BASE}/computes/recorded", recorded_body())

    assert status == 201
    assert "Azure-AsyncOperation" in headers
    assert set(created) == {"id", "name", "type", "location", "tags", "properties"}
    assert (created["name"], created["type"]) == ("recorded", "Microsoft.MachineLearningServices/workspaces/computes")
    assert created["tags"] is None
    props = created["properties"]
    assert "computeLocation" not in props
    assert (props["computeType"], props["description"], props["resourceId"]) == ("AmlCompute", "some_desc_aml", None)
    assert (props["provisioningState"], props["provisioningErrors"], props["isAttachedCompute"]) == (
        "Creating",
        None,
        False,
    )
    assert ARM_TIME.match(props["createdOn"])
    assert props["modifiedOn"] == props["createdOn"]
    aml = props["properties"]
    assert aml["vmSize"] == "STANDARD_DS2_V2"
    assert (aml["vmPriority"], aml["osType"], aml["remoteLoginPortPublicAccess"]) == ("Dedicated", "Linux", "Enabled")
    assert aml["scaleSettings"] == {"maxNodeCount": 2, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT1M40S"}
    assert aml["subnet"] is None
    for observed in ("currentNodeCount", "targetNodeCount", "nodeStateCounts", "allocationState", "errors"):
        assert aml[observed] is None, observed
    assert "allocationStateTransitionTime" not in aml
    assert "userAccountCredentials" not in aml


async def test_get_after_success_resizing_while_initial_nodes_come_and_modified_on_advanced(frozen_arm: Arm) -> None:
    """GETs after the create (recording, third and fourth entries): ``tags`` ``{}``, ``computeLocation`` present,
    ``modifiedOn`` later than ``createdOn`` (``…28.2261097`` → ``…37.8772733``: it moves when the work ends),
    ``allocationState`` ``Resizing`` with ``allocationStateTransitionTime`` in milliseconds while the cluster
    sizes, then ``Steady`` with a later transition time; ``userAccountCredentials`` echoed without the password
    (``adminUserPassword`` null); no ``identity``/``sku`` keys.

    vmSize: issue 15 says GETs after success return Azure's canonical casing (``Standard_DS2_v2``), but the
    recording shows ``STANDARD_DS2_V2`` in every GET after Succeeded (and getAmlCompute examples of the
    2020-08-01 and 2024-10-01 specs show ``STANDARD_NC6``). The evidence wins: the emulator answers upper-case,
    and the operator compares vmSize case-insensitively (tests/unit/test_amlcompute_map.py, the "case" row of
    ``vm_size_mismatch``), so either form converges."""
    await frozen_arm.call("PUT", f"{BASE}/computes/recorded", recorded_body(min_nodes=1))
    _, _, creating = await frozen_arm.call("GET", f"{BASE}/computes/recorded")
    await frozen_arm.advance(30)  # the create's operation ends; the first node is being allocated
    _, _, sizing = await frozen_arm.call("GET", f"{BASE}/computes/recorded")
    await frozen_arm.advance(120)  # allocated and prepared
    _, _, steady = await frozen_arm.call("GET", f"{BASE}/computes/recorded")

    assert creating["properties"]["modifiedOn"] == creating["properties"]["createdOn"]
    assert set(sizing) == {"id", "name", "type", "location", "tags", "properties"}
    assert sizing["tags"] == {}
    props = sizing["properties"]
    assert props["computeLocation"] == "westeurope"
    assert props["provisioningState"] == "Succeeded"
    assert ARM_TIME.match(props["modifiedOn"])
    assert datetime.fromisoformat(props["modifiedOn"]) > datetime.fromisoformat(props["createdOn"])
    aml = props["properties"]
    assert aml["vmSize"] == "STANDARD_DS2_V2"
    assert (aml["allocationState"], aml["currentNodeCount"], aml["targetNodeCount"]) == ("Resizing", 0, 1)
    assert MILLIS_TIME.match(aml["allocationStateTransitionTime"])
    assert aml["userAccountCredentials"] == {
        "adminUserName": "azureuser",
        "adminUserSshPublicKey": SSH_KEY,
        "adminUserPassword": None,
    }
    settled = steady["properties"]["properties"]
    assert (settled["allocationState"], settled["currentNodeCount"]) == ("Steady", 1)
    assert datetime.fromisoformat(settled["allocationStateTransitionTime"]) > datetime.fromisoformat(
        aml["allocationStateTransitionTime"]
    )
    assert steady["properties"]["modifiedOn"] == props["modifiedOn"]  # scaling alone is no modification


async def test_update_201_has_tags_resource_id_and_compute_location(frozen_arm: Arm) -> None:
    """The update's 201 (recording, second PUT, same body with a new idle time): ``tags`` ``{}`` (not null),
    ``computeLocation`` present, ``resourceId`` the BatchAI cluster
    (``…/providers/Microsoft.BatchAI/workspaces/{ws}/clusters/{name}``), ``provisioningState`` ``Creating``,
    ``createdOn`` kept and ``modifiedOn`` the time of this PUT; inside, ``vmSize`` upper-cased, the observed
    fields null and no ``userAccountCredentials``; no ``identity``/``sku`` keys."""
    _, _, created = await frozen_arm.call("PUT", f"{BASE}/computes/recorded", recorded_body())
    await frozen_arm.advance(31)
    status, _, updated = await frozen_arm.call("PUT", f"{BASE}/computes/recorded", recorded_body(idle="PT3M20S"))

    assert status == 201
    assert set(updated) == {"id", "name", "type", "location", "tags", "properties"}
    assert updated["tags"] == {}
    props = updated["properties"]
    assert props["computeLocation"] == "westeurope"
    ws_prefix = BASE.split("/providers/")[0]
    assert props["resourceId"] == f"{ws_prefix}/providers/Microsoft.BatchAI/workspaces/{BASE.rsplit('/', 1)[1]}" + (
        "/clusters/recorded"
    )
    assert props["provisioningState"] == "Creating"
    assert props["createdOn"] == created["properties"]["createdOn"]
    assert datetime.fromisoformat(props["modifiedOn"]) > datetime.fromisoformat(props["createdOn"])
    aml = props["properties"]
    assert aml["vmSize"] == "STANDARD_DS2_V2"
    assert aml["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] == "PT3M20S"
    for observed in ("currentNodeCount", "targetNodeCount", "nodeStateCounts", "allocationState", "errors"):
        assert aml[observed] is None, observed
    assert "userAccountCredentials" not in aml
