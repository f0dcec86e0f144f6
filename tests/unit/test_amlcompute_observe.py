"""AmlCompute: what Azure answered → the engine's Observation (``amlcompute_observe``), case by case. Bodies are
api-version 2020-08-01 ``ComputeResource`` shapes (azure-rest-api-specs getAmlCompute.json); an operation's state
is what the LRO's Azure-AsyncOperation answers (InProgress, Succeeded, Failed with an error)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from amlops.api.amlcompute import AmlComputeSpec
from amlops.azure.ml import OperationState
from amlops.external import amlcompute_observe as o
from amlops.external.ports import SecretVersion
from amlops.reconcile.external import Pending

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
WORKSPACE = {"subscriptionId": SUB, "resourceGroup": "rg", "name": "ws-1"}
OWNER_TAGS = {"amlops.io-owner": "ns.cpu.uid-1"}
SYNC = {"lastSyncTime": "2026-11-29T08:00:00Z", "quota": None}


def spec(**fields: Any) -> AmlComputeSpec:
    return AmlComputeSpec.model_validate(
        {"workspace": WORKSPACE, "vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 4}, **fields}
    )


def body(state: str = "Succeeded", errors: list[Any] | None = None, **props: Any) -> dict[str, Any]:
    settings = {"minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT1800S"}
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
        "/computes/cpu",
        "location": "westeurope",
        "tags": OWNER_TAGS,
        "properties": {
            "computeType": "AmlCompute",
            "provisioningState": state,
            "provisioningErrors": errors,
            "properties": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": settings, **props},
        },
    }


UPDATE = Pending("update", "token-1")
CREATE = Pending("create", "token-0")
DONE = OperationState(done=True)
RUNNING = OperationState(done=False)
FAILED = OperationState(done=True, failed=True, error_code="BadRequest", error_message="update refused")
# What Azure reports for a cluster it cannot build (public threads: Azure/mlops-v2#81 for the quota,
# Azure/MachineLearningNotebooks#1169 for the size, its supported sizes in the details).
QUOTA = (
    "The specified subscription has a total vCPU quota of 0 and cannot accomodate for at least 1 requested managed "
    "compute node which maps to 2 vCPUs."
)
SIZE = "The specified value Standard_B2s for property Cluster.Properties.VMSize is not a supported VM size."
SIZES_DETAIL = {"code": "SupportedVMSizes", "message": "STANDARD_D1,STANDARD_D2"}
QUOTA_FAILED = OperationState(done=True, failed=True, error_code="BadRequest", error_message=QUOTA)


@dataclass(frozen=True)
class Case:
    reason: str
    body: dict[str, Any]
    pending: Pending | None
    state: OperationState | None
    asks_operation: bool
    transitional: bool
    pending_after: Pending | None
    failure: tuple[str, str] | None = None


CASES = [
    Case("steady, nothing saved", body(), None, None, False, False, None),
    Case("Azure still creating: the GET is enough, the saved create is kept", body("Creating"), CREATE, None, False,
         True, CREATE),
    Case("a finished create is judged from the compute", body(), CREATE, None, False, False, None),
    Case("a failed create: the compute's own error", body("Failed", [{"error": {"code": "QuotaExceeded",
         "message": "no cores"}}]), CREATE, None, False, False, None, ("QuotaExceeded", "no cores")),
    Case("an update Azure still runs, though the GET looks done", body(), UPDATE, RUNNING, True, True, UPDATE),
    Case("an update that finished", body(), UPDATE, DONE, True, False, None),
    Case("an update only its operation says failed", body(), UPDATE, FAILED, True, False, None,
         ("BadRequest", "update refused")),
    Case("a token Azure no longer knows: done", body(), UPDATE, None, True, False, None),
    Case("a quota named in a BadRequest: amlops' reason, Azure's code and message kept", body("Failed",
         [{"error": {"code": "BadRequest", "message": QUOTA}}]), CREATE, None, False, False, None,
         ("QuotaExceeded", f"BadRequest: {QUOTA}")),
    Case("the same from a failed operation", body(), UPDATE, QUOTA_FAILED, True, False, None,
         ("QuotaExceeded", f"BadRequest: {QUOTA}")),
    Case("a size the cluster refuses: the size and the supported list in the message", body("Failed",
         [{"error": {"code": "InvalidPropertyValue", "message": SIZE, "details": [SIZES_DETAIL]}}]), CREATE, None,
         False, False, None,
         ("VmSizeNotAvailable", f"InvalidPropertyValue: {SIZE} (SupportedVMSizes: STANDARD_D1,STANDARD_D2)")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.reason)
def test_a_saved_operation_is_resolved_with_one_look_at_most(case: Case) -> None:
    assert o.needs_operation_state(case.pending, case.body) is case.asks_operation
    progress = o.progress(case.pending, case.body, case.state)
    assert progress.transitional is case.transitional
    assert progress.pending == case.pending_after
    obs = o.observation(spec(), case.body, sync=SYNC, quota=None, progress_=progress)
    assert obs.failure == case.failure
    assert obs.pending == case.pending_after
    assert obs.transitional is case.transitional


def test_absent_compute() -> None:
    quota = o.quota_condition((False, "16 vCPUs needed, 8 free"))
    obs = o.observation(spec(), None, sync=SYNC, quota=quota)
    assert not obs.resource_exists
    assert obs.at_provider == SYNC
    assert [(c.type, c.status, c.reason) for c in obs.conditions] == [("QuotaSufficient", "False", "QuotaExceeded")]


def test_a_ready_cluster_reports_counts_nodes_and_min_nodes() -> None:
    b = body(allocationState="Steady", currentNodeCount=1, targetNodeCount=1, nodeStateCounts={"idleNodeCount": 1})
    nodes = ([{"nodeId": "tvm-1", "nodeState": "idle", "port": 50000}], 1)
    obs = o.observation(spec(scaleSettings={"minNodeCount": 2, "maxNodeCount": 4}), b, sync=SYNC, quota=None,
                        nodes=nodes)  # fmt: skip
    assert obs.resource_exists
    assert obs.owner == "ns.cpu.uid-1"
    assert obs.at_provider["nodes"] == [
        {"nodeId": "tvm-1", "privateIpAddress": None, "publicIpAddress": None, "port": 50000, "nodeState": "idle",
         "runId": None}
    ]  # fmt: skip
    assert obs.at_provider["nodeCount"] == 1
    (min_nodes,) = obs.conditions
    assert (min_nodes.status, min_nodes.reason, min_nodes.message) == (
        "False", "WaitingForNodes", "1 of minNodeCount 2 nodes allocated",
    )  # fmt: skip
    assert obs.diff == "scaleSettings.minNodeCount 0 → 2"
    assert not obs.resource_up_to_date


def test_a_cluster_azure_is_still_creating_reports_no_min_nodes_yet() -> None:
    """Counted once Azure has created it: a condition that changes a pass before Ready is one more Event."""
    b = body("Creating", allocationState="Steady", currentNodeCount=0, targetNodeCount=0)
    quota = o.quota_condition((True, "4 vCPUs needed, 8 free"))
    obs = o.observation(spec(), b, sync=SYNC, quota=quota)
    assert obs.transitional
    assert obs.interim, "what it reports while Creating is replaced by the pass that finds it created"
    assert [c.type for c in obs.conditions] == ["QuotaSufficient"]


def test_nodes_are_listed_only_when_asked_and_settled() -> None:
    assert o.reports_nodes(spec(reportNodes=True), converging=False)
    assert not o.reports_nodes(spec(reportNodes=True), converging=True)
    assert not o.reports_nodes(spec(), converging=False)
    assert o.observation(spec(), body(), sync=SYNC, quota=None).at_provider["nodes"] is None


def test_a_vm_size_azure_kept_is_a_failure_not_a_diff() -> None:
    obs = o.observation(spec(vmSize="STANDARD_NC6"), body(), sync=SYNC, quota=None)
    assert obs.failure is not None
    assert obs.failure[0] == "ImmutableFieldChanged"
    assert obs.resource_up_to_date, "vmSize is never patched"


def test_resizing_is_settling_not_converging() -> None:
    obs = o.observation(spec(), body(allocationState="Resizing"), sync=SYNC, quota=None)
    assert obs.settling
    assert not obs.transitional


RECORDED = {"name": "admin", "uid": "u-1", "resourceVersion": "41"}


@pytest.mark.parametrize(
    ("recorded", "current", "status", "reason", "fragment"),
    [
        # The Secret as it was when the cluster was created: its password is the nodes'.
        (RECORDED, SecretVersion("u-1", "41"), "True", "AsCreated", "resourceVersion 41"),
        # A new password in the same Secret (any write gives a new resourceVersion): Azure cannot apply it.
        (RECORDED, SecretVersion("u-1", "57"), "False", "SecretChangedSinceCreate", "create a new AmlCompute"),
        # Deleted and made anew under the same name: another uid, so another Secret.
        (RECORDED, SecretVersion("u-2", "41"), "False", "SecretChangedSinceCreate", "uid u-2"),
        # Gone: the nodes keep the password of the creation.
        (RECORDED, None, "False", "SecretNotFound", "no longer exists"),
        # Adopted, or created before amlops recorded it: no claim either way.
        (None, SecretVersion("u-1", "41"), "Unknown", "NotRecorded", "cannot tell"),
        ({}, SecretVersion("u-1", "41"), "Unknown", "NotRecorded", "cannot tell"),
    ],
)
def test_admin_credentials_condition(
    recorded: dict[str, str] | None, current: SecretVersion | None, status: str, reason: str, fragment: str
) -> None:
    got = o.admin_credentials_condition(recorded, "admin", current)
    assert (got.type, got.status, got.reason) == ("AdminCredentialsCurrent", status, reason)
    assert fragment in got.message


@pytest.mark.parametrize(
    ("version", "record"),
    [
        # What is recorded is the Secret's identity and version, nothing derived from its data.
        (SecretVersion("u-1", "41"), {"name": "admin", "uid": "u-1", "resourceVersion": "41"}),
        # No Secret yet: nothing to record (the create fails SecretNotFound anyway).
        (None, None),
    ],
)
def test_secret_record(version: SecretVersion | None, record: dict[str, str] | None) -> None:
    assert o.secret_record("admin", version) == record


def test_the_admin_condition_joins_the_observations_conditions() -> None:
    admin = o.admin_credentials_condition(RECORDED, "admin", SecretVersion("u-1", "57"))
    obs = o.observation(spec(), body(), sync=SYNC, quota=None, admin=admin)
    assert admin in obs.conditions
