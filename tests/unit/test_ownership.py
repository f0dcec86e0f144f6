"""Who may manage an existing Azure resource or Batch pool (adoption), and which Azure answers end a deletion:
pure decisions, one reason per case."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from amlops.api.batchcompute import BatchComputeSpec, ManagedPool
from amlops.external import batchcompute_map as bm
from amlops.reconcile import policy
from amlops.reconcile.managed import OWNER_TAG, Managed, OwnerRef, parse_owner

pytestmark = pytest.mark.unit

UID = "6f1c2b9e-0000-4000-8000-000000000001"
OURS = f"ns.obj.{UID}"
OTHER = "team-b.theirs.6f1c2b9e-0000-4000-8000-000000000002"


class Spec(BaseModel):
    adopt: bool = False


def managed(adopt: bool = False) -> Managed[Spec]:
    return Managed(kind="AmlCompute", namespace="ns", name="obj", uid=UID, generation=1, spec=Spec(adopt=adopt))


@pytest.mark.parametrize(
    ("reason", "adopt", "tag", "tag_owner_exists", "owned"),
    [
        ("our own tag: ours, adopt or not", False, OURS, True, True),
        ("no tag, no adopt: not ours", False, None, False, False),
        ("no tag, adopt: adopted", True, None, False, True),
        ("another object's tag, no adopt: not ours", False, OTHER, False, False),
        ("another existing object's tag, adopt: never taken over", True, OTHER, True, False),
        ("the tag of an object that no longer exists, adopt: adopted", True, OTHER, False, True),
    ],
)
def test_owned(reason: str, adopt: bool, tag: str | None, tag_owner_exists: bool, owned: bool) -> None:
    assert policy.owned(managed(adopt), tag, tag_owner_exists) is owned, reason


@pytest.mark.parametrize(
    ("reason", "adopt", "tag", "lookup"),
    [
        ("our tag: nothing to look up", True, OURS, False),
        ("no tag: nothing to look up", True, None, False),
        ("another's tag without adopt: Stalled whatever it is, no lookup", False, OTHER, False),
        ("another's tag with adopt: whether it exists decides", True, OTHER, True),
    ],
)
def test_owner_lookup_only_when_it_decides(reason: str, adopt: bool, tag: str | None, lookup: bool) -> None:
    assert policy.needs_owner_lookup(managed(adopt), tag) is lookup, reason


@pytest.mark.parametrize(
    ("code", "nothing_left"),
    [
        ("ParentResourceNotFound", True),  # a typo in spec.workspace
        ("ResourceGroupNotFound", True),
        ("SubscriptionNotFound", True),
        ("ResourceNotFound", True),
        ("WorkspaceNotFound", True),
        ("AccountNotFound", True),  # Batch: the account and every pool in it are gone
        ("AuthorizationFailed", False),  # may exist and bill: releasing would leak it
        ("AuthenticationFailed", False),
        ("InvalidAuthenticationToken", False),
        ("QuotaExceeded", False),
        ("BadRequest", False),
    ],
)
def test_which_answers_end_a_deletion(code: str, nothing_left: bool) -> None:
    assert policy.nothing_left(code) is nothing_left


@pytest.mark.parametrize(
    ("tag", "parsed"),
    [
        (OURS, OwnerRef("ns", "obj", UID)),
        ("ns.name.with.dots.uid-1", OwnerRef("ns", "name.with.dots", "uid-1")),  # a name may hold dots
        ("ns.obj", None),  # no uid
        ("../../x", None),  # never a path: the tag comes from Azure, where anyone may have written it
        ("ns.a..b.uid", None),
        ("NS.obj.uid", None),  # not a namespace Kubernetes allows
        ("ns.obj.uid/../x", None),
        ("", None),
    ],
)
def test_parse_owner(tag: str, parsed: OwnerRef | None) -> None:
    assert parse_owner(tag) == parsed


def test_parse_owner_inverts_the_owner_tag() -> None:
    assert parse_owner(managed().owner) == OwnerRef("ns", "obj", UID)


POOL = ManagedPool(id="scoring", vm_size="STANDARD_D2S_V3", target_dedicated_nodes=2)
ADOPTING = POOL.model_copy(update={"adopt": True})


@pytest.mark.parametrize(
    ("reason", "pool", "current", "exists", "claim"),
    [
        ("our metadata: ours", POOL, OURS, True, "ours"),
        ("no owner metadata, no adopt: NotOwned", POOL, None, False, "notOwned"),
        ("no owner metadata, adopt: adopted", ADOPTING, None, False, "adopt"),
        ("another existing object's pool (a job's pj- pool), adopt: never", ADOPTING, OTHER, True, "notOwned"),
        ("another existing object's pool, no adopt: NotOwned", POOL, OTHER, True, "notOwned"),
        ("the owner no longer exists, adopt: adopted", ADOPTING, OTHER, False, "adopt"),
        ("the owner no longer exists, no adopt: NotOwned", POOL, OTHER, False, "notOwned"),
    ],
)
def test_pool_claim(reason: str, pool: ManagedPool, current: str | None, exists: bool, claim: str) -> None:
    got, why = bm.pool_claim(pool, current, OURS, exists)
    assert got == claim, reason
    assert (why == "") is (claim != "notOwned"), reason
    if claim == "notOwned":
        assert "scoring" in why, reason


def observed(pool_id: str, owner: str | None, dedicated: int = 2, **extra: Any) -> dict[str, Any]:
    meta = [{"name": OWNER_TAG, "value": owner}] if owner else []
    return {"id": pool_id, "targetDedicatedNodes": dedicated, "targetLowPriorityNodes": 0, "state": "active",
            "allocationState": "steady", "metadata": [{"name": "team", "value": "b"}, *meta], **extra}  # fmt: skip


def spec(*pools: ManagedPool) -> BatchComputeSpec:
    return BatchComputeSpec.model_validate(
        {
            "workspace": {
                "subscriptionId": "00000000-0000-0000-0000-000000000001",
                "resourceGroup": "rg",
                "name": "ws1",
            },
            "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/acct",
            "pools": [p.model_dump(by_alias=True) for p in pools],
        }
    )


def test_plan_resizes_only_what_it_owns_or_adopts() -> None:
    wanted = spec(POOL.model_copy(update={"target_dedicated_nodes": 3}))
    # Ours: resized.
    plan = bm.plan_pools(wanted, [observed("scoring", OURS)], OURS)
    assert [p.id for p in plan.resize] == ["scoring"]
    assert not plan.not_owned
    # Untagged without adopt: NotOwned, not resized, not adopted.
    plan = bm.plan_pools(wanted, [observed("scoring", None)], OURS)
    assert not plan.resize
    assert not plan.adopt
    assert plan.not_owned
    assert "adopt: true" in plan.not_owned[0]
    # A live job's pool: never touched, adopt or not.
    adopting = spec(ADOPTING.model_copy(update={"target_dedicated_nodes": 3}))
    plan = bm.plan_pools(adopting, [observed("scoring", OTHER)], OURS, frozenset({OTHER}))
    assert plan.empty
    assert plan.not_owned
    assert "still exists" in plan.not_owned[0]
    # Untagged with adopt: tagged, then resized in the same pass.
    plan = bm.plan_pools(adopting, [observed("scoring", None)], OURS)
    assert plan.adopt == ("scoring",)
    assert [p.id for p in plan.resize] == ["scoring"]
    assert plan.describe().startswith("adopt pool scoring")
    # Adopting a pool already at its targets is still work to do: the owner metadata.
    plan = bm.plan_pools(spec(ADOPTING), [observed("scoring", None)], OURS)
    assert not plan.empty


def test_plan_deletes_only_pools_carrying_our_owner() -> None:
    pools = [observed("old", OURS), observed("theirs", OTHER), observed("untagged", None)]
    assert bm.plan_pools(spec(), pools, OURS).delete == ("old",)


def test_foreign_owners_are_only_those_of_spec_pools() -> None:
    pools = [observed("scoring", OTHER), observed("elsewhere", "x.y.z"), observed("mine", OURS)]
    assert bm.foreign_owners(spec(POOL), pools, OURS) == {OTHER}


def test_with_owner_keeps_other_metadata_and_replaces_ours() -> None:
    assert bm.with_owner(observed("p", OTHER), OURS) == [
        {"name": "team", "value": "b"},
        {"name": OWNER_TAG, "value": OURS},
    ]
