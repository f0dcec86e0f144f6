"""AmlCompute ``updatePolicy: Recreate``: the create-only record, what changed, the step a re-create takes, and
the observation of each step (``amlcompute_recreate``, ``amlcompute_observe.recreate_step``), case by case.

Bodies are ``ComputeResource`` shapes as Azure returns them (azure-rest-api-specs getAmlCompute.json: vmSize,
vmPriority, subnet.id and location echoed; userAccountCredentials without the password; nodeStateCounts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from amlops.api.amlcompute import IMMUTABLE, NAMES_THE_CLUSTER, AmlComputeSpec
from amlops.external import amlcompute_observe as o
from amlops.external import amlcompute_recreate as r
from amlops.reconcile.external import Pending

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
WORKSPACE = {"subscriptionId": SUB, "resourceGroup": "rg", "name": "ws-1"}
SYNC = {"lastSyncTime": "2026-11-29T08:00:00Z", "quota": None}
SUBNET = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/sn"
KEY = "ssh-rsa AAAAB3NzaC1yc2E= user@host"


# The create-only fields Azure does not echo back in the form the record compares (named when a tag says "changed").
UNECHOED = ", ".join(n for n in r.CREATE_ONLY if n not in ("vmSize", "vmPriority", "subnet", "location"))


def spec(**fields: Any) -> AmlComputeSpec:
    return AmlComputeSpec.model_validate({"workspace": WORKSPACE, "updatePolicy": "Recreate", **fields})


def body(
    *,
    created_from: AmlComputeSpec | None = None,
    state: str = "Succeeded",
    busy: tuple[int, int] = (0, 0),
    **props: Any,
) -> dict[str, Any]:
    """A cluster; ``created_from``: amlops created it from that spec (its create-digest tag), else no tag."""
    tags = {"amlops.io-owner": "ns.cpu.uid-1", **(r.create_tags(created_from) if created_from else {})}
    running, preparing = busy
    counts = {"idleNodeCount": 1, "runningNodeCount": running, "preparingNodeCount": preparing}
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
        "/computes/cpu",
        "location": "westeurope",
        "tags": tags,
        "properties": {
            "computeType": "AmlCompute",
            "provisioningState": state,
            "properties": {
                "vmSize": "STANDARD_DS3_V2",
                "vmPriority": "Dedicated",
                "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT1800S"},
                "nodeStateCounts": counts,
                **props,
            },
        },
    }


def test_the_record_covers_every_create_only_field_but_those_that_name_the_cluster() -> None:
    """Derived from IMMUTABLE, so a field another change makes create-only is recorded without more code."""
    assert set(r.CREATE_ONLY) == set(IMMUTABLE) - NAMES_THE_CLUSTER
    assert "workspace" not in r.CREATE_ONLY
    assert "computeName" not in r.CREATE_ONLY


@dataclass(frozen=True)
class DigestCase:
    reason: str
    a: dict[str, Any]
    b: dict[str, Any]
    same: bool


DIGEST_CASES = [
    DigestCase("an explicit default is the same record", {}, {"vmSize": "STANDARD_DS3_V2"}, True),
    DigestCase("a mutable field is not recorded", {}, {"scaleSettings": {"maxNodeCount": 9}}, True),
    DigestCase("updatePolicy itself is not recorded", {}, {"updatePolicy": "Refuse"}, True),
    DigestCase("vmSize is", {}, {"vmSize": "STANDARD_D2_V2"}, False),
    DigestCase("an admin user's key is", {"adminUser": {"username": "a"}},
               {"adminUser": {"username": "a", "sshPublicKey": KEY}}, False),
    DigestCase(
        "the password Secret's name is (its value is never read for the record)",
        {"adminUser": {"username": "a", "passwordSecretRef": {"name": "s1"}}},
        {"adminUser": {"username": "a", "passwordSecretRef": {"name": "s2"}}},
        False,
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", DIGEST_CASES, ids=lambda c: c.reason)
def test_record_digest(case: DigestCase) -> None:
    a, b = r.field_digests(spec(**case.a)), r.field_digests(spec(**case.b))
    assert (a == b) is case.same
    assert (r.record_digest(a) == r.record_digest(b)) is case.same
    assert len(r.create_tags(spec(**case.a))[r.CREATE_DIGEST_TAG]) <= 256, "an ARM tag value"


def test_the_record_holds_digests_never_values() -> None:
    fields = r.field_digests(spec(adminUser={"username": "root-7", "sshPublicKey": KEY}, vmSize="STANDARD_D2_V2"))
    assert set(fields) == set(r.CREATE_ONLY)
    assert all(len(v) == 16 for v in fields.values())
    assert "root-7" not in json.dumps(fields)
    assert "D2" not in json.dumps(fields)


OLD = spec()
NEW_SIZE = spec(vmSize="STANDARD_D2_V2")
WITH_KEY = spec(adminUser={"username": "admin", "sshPublicKey": KEY})
KEY_CHANGED = spec(adminUser={"username": "admin", "sshPublicKey": KEY + "2"})


# A cluster an older amlops made, when adminUser was not yet create-only: its record and tag lack the field.
BEFORE_ADMIN_USER = {k: v for k, v in r.field_digests(WITH_KEY).items() if k != "adminUser"}
OLDER_OPERATOR = body()
OLDER_OPERATOR["tags"] = {**OLDER_OPERATOR["tags"], r.CREATE_DIGEST_TAG: r.record_digest(BEFORE_ADMIN_USER)}


@dataclass(frozen=True)
class CompareCase:
    reason: str
    spec: AmlComputeSpec
    body: dict[str, Any]
    recorded: dict[str, str] | None
    changes: tuple[str, ...]
    recorded_after: dict[str, str] | None


COMPARE_CASES = [
    CompareCase("created by amlops from this spec: nothing", OLD, body(created_from=OLD), None, (),
                r.field_digests(OLD)),
    CompareCase(
        "vmSize changed: named with Azure's value and the spec's",
        NEW_SIZE, body(created_from=OLD), r.field_digests(OLD),
        ("vmSize standard_ds3_v2 → standard_d2_v2",), r.field_digests(OLD),
    ),
    CompareCase(
        "a field Azure does not echo (the admin's key): the record names it",
        KEY_CHANGED, body(created_from=WITH_KEY), r.field_digests(WITH_KEY), ("adminUser",), r.field_digests(WITH_KEY),
    ),
    CompareCase(
        "tagged but the status lost the record: the change is certain, the fields Azure echoes are named",
        NEW_SIZE, body(created_from=OLD), None, ("vmSize standard_ds3_v2 → standard_d2_v2",), None,
    ),
    CompareCase(
        "tagged, no record, nothing echoed differs: a field Azure does not echo changed",
        KEY_CHANGED, body(created_from=WITH_KEY), None, (f"one of {UNECHOED}",), None,
    ),
    CompareCase(
        "the new cluster (created after a crash lost the status write) is never taken for the old one",
        NEW_SIZE, body(created_from=NEW_SIZE, vmSize="STANDARD_D2_V2"), r.field_digests(OLD),
        (), r.field_digests(NEW_SIZE),
    ),
    CompareCase(
        "no tag (an older cluster): Azure's values agree, so the spec is its record",
        WITH_KEY, body(), None, (), r.field_digests(WITH_KEY),
    ),
    CompareCase(
        "no tag: Azure's vmSize differs, so that is the change and nothing is recorded",
        NEW_SIZE, body(), None, ("vmSize standard_ds3_v2 → standard_d2_v2",), None,
    ),
    CompareCase(
        "no tag, a record from an earlier pass: a later change of an unechoed field is seen",
        KEY_CHANGED, body(), r.field_digests(WITH_KEY), ("adminUser",), r.field_digests(WITH_KEY),
    ),
    CompareCase(
        "a subnet added where Azure has none",
        spec(subnet={"subnetId": SUBNET}), body(created_from=OLD), r.field_digests(OLD),
        (f"subnet none → {SUBNET.lower()}",), r.field_digests(OLD),
    ),
    CompareCase(
        "location named as the region Azure has, in another case: nothing to re-create for",
        spec(location="WestEurope"), body(created_from=OLD), r.field_digests(OLD), (), r.field_digests(OLD),
    ),
    CompareCase(
        "location named as another region",
        spec(location="eastus"), body(created_from=OLD), r.field_digests(OLD),
        ("location westeurope → eastus",), r.field_digests(OLD),
    ),
    CompareCase(
        "location removed: the workspace's region is not known here, so it counts as a change",
        OLD, body(created_from=spec(location="eastus"), location="eastus"), r.field_digests(spec(location="eastus")),
        ("location",), r.field_digests(spec(location="eastus")),
    ),
    CompareCase(
        "a field the record lacks became create-only since the cluster was made: no re-create for it",
        KEY_CHANGED, OLDER_OPERATOR, BEFORE_ADMIN_USER, (), BEFORE_ADMIN_USER,
    ),
    CompareCase(
        "vmSize only in another case: Azure has it, nothing to re-create for",
        spec(vmSize="standard_ds3_v2"), body(), None, (), r.field_digests(spec(vmSize="standard_ds3_v2")),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", COMPARE_CASES, ids=lambda c: c.reason)
def test_compare(case: CompareCase) -> None:
    record = r.compare(case.spec, case.body, case.recorded)
    assert record.changes == case.changes
    assert record.fields == case.recorded_after


@dataclass(frozen=True)
class StepCase:
    reason: str
    spec: AmlComputeSpec
    body: dict[str, Any]
    changes: tuple[str, ...]
    deleting: bool
    step: r.Step


CHANGE = ("vmSize a → b",)
STEP_CASES = [
    StepCase("no change", OLD, body(), (), False, r.Step.NONE),
    StepCase("Refuse: never (the apiserver refused the edit; an adopted mismatch stays Stalled)",
             spec(updatePolicy="Refuse"), body(), CHANGE, False, r.Step.NONE),
    StepCase("ObserveOnly: never writes", spec(managementPolicy="ObserveOnly"), body(), CHANGE, False, r.Step.NONE),
    StepCase("the object is being deleted: the deletion decides", OLD, body(), CHANGE, True, r.Step.NONE),
    StepCase("Creating: wait for Azure", OLD, body(state="Creating"), CHANGE, False, r.Step.WAIT_FOR_AZURE),
    StepCase("Deleting (the DELETE already sent, maybe by a killed operator): wait, never send it twice",
             OLD, body(state="Deleting"), CHANGE, False, r.Step.WAIT_FOR_AZURE),
    StepCase("a node runs a job: wait", OLD, body(busy=(1, 0)), CHANGE, False, r.Step.WAIT_FOR_IDLE),
    StepCase("a node prepares for a job: wait", OLD, body(busy=(0, 2)), CHANGE, False, r.Step.WAIT_FOR_IDLE),
    StepCase("idle nodes only: delete", OLD, body(), CHANGE, False, r.Step.DELETE),
    StepCase("Failed for the old values: delete, the new ones may do", OLD, body(state="Failed"), CHANGE, False,
             r.Step.DELETE),
]  # fmt: skip


@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.reason)
def test_next_step(case: StepCase) -> None:
    converging = case.body["properties"]["provisioningState"] in ("Creating", "Deleting")
    assert r.next_step(case.spec, case.body, case.changes, deleting=case.deleting, converging=converging) is case.step


RECORD = r.to_status(r.field_digests(OLD))


def observe(s: AmlComputeSpec, b: dict[str, Any] | None, status: dict[str, Any]) -> Any:
    return o.observation(s, b, sync=SYNC, quota=None, status=status)


def test_waiting_for_idle_nodes_is_reconciling_with_the_changes() -> None:
    obs = observe(NEW_SIZE, body(created_from=OLD, busy=(2, 0)), {"createOnlyFields": RECORD})
    assert obs.transitional
    assert obs.resource_up_to_date
    assert obs.transitional_reason == "WaitingForIdleCluster"
    assert "2 running or preparing" in obs.message
    assert "vmSize standard_ds3_v2 → standard_d2_v2" in obs.message
    assert obs.events == (), "the Reconciling condition's reason posts the Event (status.set_conditions)"
    assert obs.at_provider["recreating"] == "vmSize standard_ds3_v2 → standard_d2_v2"


def test_idle_cluster_is_deleted_through_update_with_an_event() -> None:
    obs = observe(NEW_SIZE, body(created_from=OLD), {"createOnlyFields": RECORD})
    assert not obs.resource_up_to_date
    assert obs.step
    assert obs.intent == o.RECREATE
    assert obs.failure is None, "the vmSize mismatch is what the re-create resolves, not a Stalled"
    assert [e.reason for e in obs.events] == ["Recreating"]
    assert "vmSize" in obs.diff


def test_under_refuse_an_adopted_vm_size_mismatch_stays_stalled() -> None:
    obs = observe(spec(updatePolicy="Refuse", vmSize="STANDARD_D2_V2"), body(), {})
    assert obs.failure is not None
    assert obs.failure[0] == "ImmutableFieldChanged"
    assert obs.intent is None
    assert obs.at_provider["recreating"] is None


def test_absent_during_a_recreate_says_deleted_and_keeps_the_changes() -> None:
    obs = observe(NEW_SIZE, None, {"recreating": "vmSize a → b"})
    assert not obs.resource_exists
    assert [e.reason for e in obs.events] == ["Deleted"]
    assert obs.at_provider["recreating"] == "vmSize a → b"
    assert observe(NEW_SIZE, None, {}).events == (), "a first create is no re-create"


def test_the_new_cluster_creating_keeps_the_marker_and_settled_clears_it() -> None:
    creating = observe(NEW_SIZE, body(created_from=NEW_SIZE, state="Creating", vmSize="STANDARD_D2_V2"),
                       {"recreating": "vmSize a → b", "createOnlyFields": RECORD})  # fmt: skip
    assert creating.at_provider["recreating"] == "vmSize a → b"
    assert creating.events == ()
    done = observe(NEW_SIZE, body(created_from=NEW_SIZE, vmSize="STANDARD_D2_V2"), dict(creating.at_provider))
    assert done.at_provider["recreating"] is None
    assert [e.reason for e in done.events] == ["Recreated"]
    assert done.at_provider["createOnlyFields"] == r.to_status(r.field_digests(NEW_SIZE))
    assert r.from_status(done.at_provider["createOnlyFields"]) == r.field_digests(NEW_SIZE)


def test_status_record_round_trips_and_an_all_default_record_is_empty_not_unknown() -> None:
    assert r.to_status({}) == []
    assert r.from_status([]) == {}
    assert r.from_status(r.to_status({"vmSize": "abc"})) == {"vmSize": "abc"}
    assert r.from_status(None) is None
    assert r.from_status(["garbage"]) is None


def test_the_crd_relaxes_only_the_create_only_fields_and_only_under_recreate() -> None:
    """The transition rules from ``frozen(IMMUTABLE, RECREATE)``; the apiserver runs them in the e2e tests."""
    rules = {rule["fieldPath"]: rule for rule in AmlComputeSpec.model_json_schema()["x-kubernetes-validations"]}
    for name in IMMUTABLE:
        relaxed = rules[f".{name}"]["rule"].startswith("(has(self.updatePolicy) && self.updatePolicy == 'Recreate')")
        assert relaxed is (name not in NAMES_THE_CLUSTER), name
        assert ("updatePolicy: Recreate" in rules[f".{name}"]["message"]) is relaxed, name


def test_a_delete_amlops_saved_still_running_is_waited_for_though_a_listing_shows_the_cluster_succeeded() -> None:
    """A listing read before the DELETE answered may come back after it: the saved operation is what counts
    (the e2e caught a second Recreating Event from such a listing)."""
    stale = body(created_from=OLD)
    assert r.next_step(NEW_SIZE, stale, CHANGE, deleting=False, converging=True) is r.Step.WAIT_FOR_AZURE
    progress = o.Progress(transitional=True, pending=Pending("delete", "token-1"), failure=None)
    obs = o.observation(NEW_SIZE, stale, sync=SYNC, quota=None, progress_=progress,
                        status={"createOnlyFields": RECORD, "recreating": "vmSize a → b"})  # fmt: skip
    assert obs.intent is None
    assert obs.events == ()
    assert obs.transitional


def test_a_new_cluster_azure_failed_ends_the_recreate_without_saying_it_was_created() -> None:
    failed = body(created_from=NEW_SIZE, state="Failed", vmSize="STANDARD_D2_V2")
    failed["properties"]["provisioningErrors"] = [{"error": {"code": "QuotaExceeded", "message": "no cores"}}]
    obs = observe(NEW_SIZE, failed, {"recreating": "vmSize a → b", "createOnlyFields": RECORD})
    assert obs.failure is not None
    assert obs.events == ()
    assert obs.at_provider["recreating"] is None
