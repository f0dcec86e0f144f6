"""ParallelJob and BatchCompute: pools only their owner touches, and every path ends with the Batch job and
amlops' own ``pj-<uid>`` pool gone (issue 13, points 5 and 7). Real apiserver, operator process, the Batch
emulator running the driver, Azurite; faults injected through the emulator and SIGKILL of the operator."""

from __future__ import annotations

import json
import signal
from functools import partial
from typing import Any

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient

import amlops_testbed as testbed
from tests.support.objects import condition, events, find_condition, wait_condition
from tests.support.processes import EmulatorProcess

from . import test_paralleljob
from .test_batchcompute import batch, pools
from .test_paralleljob import Bed, files

pytestmark = pytest.mark.e2e
bed = test_paralleljob.bed  # the same test bed: a Ready BatchCompute "batch", the storage Secret, code


def account(azure: EmulatorProcess) -> tuple[list[str], dict[str, str]]:
    """The account's job ids and its pools by id with their state."""

    async def collect(client: BatchClient) -> tuple[list[str], dict[str, str]]:
        jobs = [j.id async for j in client.list_jobs()]
        found = {p.id: p.state async for p in client.list_pools()}
        return jobs, found

    return batch(azure, collect)


def assert_nothing_left(b: Bed) -> None:
    """No Batch job and no pool of amlops' own jobs remain (a deleting pool is gone seconds later)."""

    def clean() -> bool:
        jobs, found = account(b.azure)
        return not jobs and not [p for p in found if p.startswith("pj-")]

    try:
        testbed.eventually(clean, timeout=60, what="no Batch job and no pj- pool left")
    except Exception:
        print(account(b.azure))
        raise


def start_own_pool_job(b: Bed, name: str, count: int = 8, delay: str = "1") -> dict[str, Any]:
    """A job on a pool of its own (no poolId), seen running a mini-batch."""
    b.upload("inputs", files(count))
    b.job(name, compute={"name": "batch"}, instanceCount=1, miniBatchSize="1", environmentVariables={"DELAY": delay})
    return testbed.eventually(
        lambda: b.get(name) if (b.get(name).get("status") or {}).get("miniBatches", {}).get("running") else None,
        timeout=90,
        what=f"paralleljob/{name} running on its own pool",
    )


def stalled_reason(b: Bed, kind: str, name: str) -> tuple[str, str] | None:
    obj = testbed.get_object(b.k8s, kind, name, b.ns) or {}
    found = find_condition(obj, "Stalled") or {}
    return (found["reason"], found["message"]) if found.get("status") == "True" else None


def test_pools_are_touched_only_by_their_owner(bed: Bed) -> None:
    # A pool somebody made without amlops, and one job's own pool.
    bare = {"id": "foreign", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 0,
            "virtualMachineConfiguration": {"imageReference": {"publisher": "canonical", "offer": "x", "sku": "y"},
                                            "nodeAgentSKUId": "batch.node.ubuntu 22.04"}}  # fmt: skip
    batch(bed.azure, lambda c: c.create_pool(models.BatchPoolCreateOptions(bare)))
    own = start_own_pool_job(bed, "own", delay="2")
    own_pool = own["status"]["poolId"]
    assert own_pool.startswith("pj-")
    jobs_before, _ = account(bed.azure)

    # compute.poolId may name only a pool of the BatchCompute's spec.pools: refused before any Batch job exists.
    bed.job("stray", compute={"name": "batch", "poolId": "foreign"})
    bed.job("thief", compute={"name": "batch", "poolId": own_pool})
    for name, pool in (("stray", "foreign"), ("thief", own_pool)):
        found = testbed.eventually(partial(stalled_reason, bed, "paralleljob", name), what=f"{name} refused")
        assert found[0] == "PoolNotManaged", found
        assert pool in found[1]
    assert account(bed.azure)[0] == jobs_before

    # spec.pools naming a pool amlops does not own: Stalled NotOwned naming it, and the pool is not resized.
    def set_pools(*extra: dict[str, Any]) -> None:
        scoring = {"id": "scoring", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 4}
        body = {"spec": {"pools": [scoring, *extra]}}
        bed.k8s.kubectl("patch", "batchcompute/batch", "-n", bed.ns, "--type=merge", "-p", json.dumps(body))

    foreign = {"id": "foreign", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 1}
    set_pools(foreign)
    found = testbed.eventually(lambda: stalled_reason(bed, "batchcompute", "batch"), what="BatchCompute NotOwned")
    assert found[0] == "NotOwned"
    assert "pool foreign exists with no owner metadata" in found[1]
    assert "adopt: true" in found[1]
    assert pools(bed.azure)["foreign"].target_dedicated_nodes == 0

    # Another existing object's pool (the running job's own) is never taken over, adopt or not.
    set_pools({"id": own_pool, "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 3, "adopt": True})
    testbed.eventually(
        lambda: (f := stalled_reason(bed, "batchcompute", "batch")) and own_pool in f[1] and "still exists" in f[1],
        what="the job's pool refused",
    )
    assert pools(bed.azure)[own_pool].target_dedicated_nodes == 1

    # An explicit adopt takes the bare pool over: owner metadata written, then resized.
    set_pools({**foreign, "adopt": True})
    wait_condition(bed.k8s, "batchcompute", "batch", bed.ns, "Ready")
    taken = testbed.eventually(
        lambda: (p := pools(bed.azure)["foreign"]).target_dedicated_nodes == 1 and p, what="adopted pool resized"
    )
    uid = bed.k8s.kubectl("get", "batchcompute/batch", "-n", bed.ns, "-o", "jsonpath={.metadata.uid}")
    assert {m.name: m.value for m in taken.metadata or []} == {"amlops.io-owner": f"{bed.ns}.batch.{uid}"}

    for name in ("own", "stray", "thief"):
        bed.k8s.kubectl("delete", f"paralleljob/{name}", "-n", bed.ns, "--timeout=60s")
    assert_nothing_left(bed)


def test_a_compute_being_deleted_waits_for_its_jobs_and_they_still_release_their_pools(bed: Bed) -> None:
    own = start_own_pool_job(bed, "own")
    job_id, pool_id = own["status"]["jobId"], own["status"]["poolId"]

    # As a namespace deletion does, the BatchCompute goes first: it waits for the job that runs on it
    # (WaitingForDependents), no longer Ready, still attached.
    bed.k8s.kubectl("delete", "batchcompute/batch", "-n", bed.ns, "--wait=false")
    waiting = wait_condition(bed.k8s, "batchcompute", "batch", bed.ns, "Reconciling")
    assert condition(waiting, "Reconciling")["reason"] == "WaitingForDependents"
    assert "ParallelJob own" in condition(waiting, "Reconciling")["message"]
    assert condition(waiting, "Ready")["status"] == "False"
    jobs, found = account(bed.azure)
    assert job_id in jobs
    assert found[pool_id] == "active"

    # The job's deletion reaches the account through the BatchCompute that is not Ready: its Batch job and its
    # pool go, then the BatchCompute detaches and deletes its own pool.
    bed.k8s.kubectl("delete", "paralleljob/own", "-n", bed.ns, "--timeout=60s")
    testbed.eventually(lambda: not testbed.get_object(bed.k8s, "batchcompute", "batch", bed.ns), what="detached")
    assert_nothing_left(bed)
    testbed.eventually(lambda: "scoring" not in account(bed.azure)[1], what="the BatchCompute's pool deleted")


def test_deleting_a_job_while_its_compute_is_throttled_releases_its_pool(bed: Bed) -> None:
    own = start_own_pool_job(bed, "own")
    # Batch throttles the BatchCompute's pool listing (429 with Retry-After, as Batch answers a busy account):
    # it is no longer Ready.
    bed.azure.control(
        "POST",
        "/faults",
        {"method": "GET", "path": "/pools$", "status": 429, "code": "TooManyRequests", "retryAfter": 1},
    )
    throttled = wait_condition(bed.k8s, "batchcompute", "batch", bed.ns, "Reconciling")
    assert condition(throttled, "Reconciling")["reason"] == "Throttled"
    assert condition(throttled, "Ready")["status"] == "False"

    bed.k8s.kubectl("delete", "paralleljob/own", "-n", bed.ns, "--timeout=60s")
    # The object is gone; its Batch job and pool went first (the listing is readable again to check).
    bed.azure.control("DELETE", "/faults")
    assert own["status"]["poolId"].startswith("pj-")
    assert_nothing_left(bed)


def test_operator_killed_between_ending_the_job_and_deleting_its_pool_releases_it_after_restart(bed: Bed) -> None:
    # Batch refuses the pool's deletion (500) until the operator has been killed: the job ends, its pool stays.
    fault = bed.azure.control(
        "POST", "/faults", {"method": "DELETE", "path": "/pools/pj-", "status": 500, "code": "InternalServerError"}
    )["faults"][0]["id"]
    bed.upload("inputs", files(4))
    bed.job("short", compute={"name": "batch"}, instanceCount=1, miniBatchSize="2")

    def pool_delete_refused() -> bool:
        faults = bed.azure.control("GET", "/faults")["faults"]
        return any(f["id"] == fault and f["applied"] >= 1 for f in faults)

    testbed.eventually(pool_delete_refused, timeout=120, what="the job ended and its pool's deletion was tried")
    status = bed.get("short")["status"]
    found = account(bed.azure)[1]
    assert found[status["poolId"]] == "active"
    assert batch(bed.azure, lambda c: c.get_job(status["jobId"])).state == "completed"
    assert bed.operator is not None
    bed.operator.stop(signal.SIGKILL)
    bed.azure.control("DELETE", f"/faults/{fault}")

    bed.operator = bed.start_operator(bed.ns, extra_env=bed.azure.operator_env())
    testbed.eventually(
        lambda: (s := bed.get("short").get("status") or {}).get("phase") == "Complete" and s.get("resourcesReleased"),
        timeout=90,
        what="Complete with its pool released",
    )
    testbed.eventually(lambda: status["poolId"] not in account(bed.azure)[1], what="the job's pool deleted")
    assert bed.output_rows("short") == [f"f{i:04d}.txt ITEM{i}" for i in range(4)]
    bed.k8s.kubectl("delete", "paralleljob/short", "-n", bed.ns, "--timeout=60s")
    assert_nothing_left(bed)


def test_a_job_terminated_from_outside_releases_its_pool(bed: Bed) -> None:
    own = start_own_pool_job(bed, "ended", delay="5")
    job_id, pool_id = own["status"]["jobId"], own["status"]["poolId"]

    async def terminate(client: BatchClient) -> None:
        # azure-batch 15.1.0 does not export BatchJobTerminateOptions: the options go as a plain mapping.
        reason = {"terminateReason": "UserTerminate"}
        await client.begin_terminate_job(job_id, reason, polling_interval=0)  # type: ignore[arg-type]

    batch(bed.azure, terminate)
    failed = testbed.eventually(
        lambda: (o := bed.get("ended"))["status"].get("resourcesReleased") and find_condition(o, "Failed") and o,
        timeout=90,
        what="Failed with its pool released",
    )
    assert failed["status"]["phase"] == "Failed"
    assert condition(failed, "Failed")["reason"] == "JobTerminated"
    assert "UserTerminate" in condition(failed, "Failed")["message"]
    testbed.eventually(lambda: pool_id not in account(bed.azure)[1], what="the job's pool deleted")
    bed.k8s.kubectl("delete", "paralleljob/ended", "-n", bed.ns, "--timeout=60s")
    assert_nothing_left(bed)


def test_a_job_whose_compute_was_removed_by_force_goes_with_a_warning_naming_what_may_remain(bed: Bed) -> None:
    own = start_own_pool_job(bed, "stranded")
    job_id, pool_id = own["status"]["jobId"], own["status"]["poolId"]
    # Someone removes the BatchCompute's finalizer while it waits for its jobs: it is gone, its access with it.
    bed.k8s.kubectl("delete", "batchcompute/batch", "-n", bed.ns, "--wait=false")
    wait_condition(bed.k8s, "batchcompute", "batch", bed.ns, "Reconciling")
    bed.k8s.kubectl(
        "patch", "batchcompute/batch", "-n", bed.ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    testbed.eventually(lambda: not testbed.get_object(bed.k8s, "batchcompute", "batch", bed.ns), what="removed")

    # The job cannot be cleaned up by amlops any more: it goes (nothing waits forever), and says what is left.
    bed.k8s.kubectl("delete", "paralleljob/stranded", "-n", bed.ns, "--timeout=60s")

    def warning() -> dict[str, Any] | None:
        return next(iter(events(bed.k8s, bed.ns, "ComputeGone")), None)

    event = testbed.eventually(warning, what="a ComputeGone Warning")
    assert event["type"] == "Warning"
    assert job_id in event["message"]
    assert f"the pool {pool_id}" in event["message"]
    jobs, found = account(bed.azure)
    assert job_id in jobs
    assert found[pool_id] == "active"

    # What the Event names is what a human deletes.
    async def clean_up(client: BatchClient) -> None:
        await client.begin_delete_job(job_id, polling_interval=0)
        await client.begin_delete_pool(pool_id, polling_interval=0)

    batch(bed.azure, clean_up)
    assert_nothing_left(bed)
