"""ParallelJob decisions: task facts and summaries → phase, action, counts, progress (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from amlops.api.paralleljob import ParallelJobSpec
from amlops.external import paralleljob_map as m
from amlops.reconcile import job
from amlops.reconcile.managed import OWNER_TAG

pytestmark = pytest.mark.unit


def ok(index: int, retries: int = 0) -> m.TaskFact:
    return m.TaskFact(index, "completed", "success", retries)


def bad(index: int, retries: int = 0) -> m.TaskFact:
    return m.TaskFact(index, "completed", "failure", retries)


def running(index: int) -> m.TaskFact:
    return m.TaskFact(index, "running")


def queued(index: int) -> m.TaskFact:
    return m.TaskFact(index, "active")


def facts(tasks: list[m.TaskFact], total: int | None = None, **kw: Any) -> m.Facts:
    # One item per mini-batch: a failed task failed its item, a succeeded one processed it.
    items = {"failure": (0, 1), "success": (1, 0)}
    done = {t.index: m.finished(t, items[t.result or ""]) for t in tasks if t.state == "completed"}
    base = m.Facts(
        total=len(tasks) if total is None else total,
        added=len(tasks),
        running=sum(1 for t in tasks if t.state in ("running", "preparing")),
        finished=done,
        job_state="active",
    )
    return replace(base, **kw)


THREE_FAILED = [ok(0), bad(1), ok(2), bad(3), bad(4), ok(5)]


@dataclass(frozen=True)
class Case:
    reason: str
    facts: m.Facts
    phase: str
    action: str | None
    why: str = ""


CASES = [
    Case("Tasks not all added yet: add the rest", facts([ok(0), running(1)], total=5), "Running", "add"),
    Case("All added, some running: wait for Batch", facts([ok(0), running(1), queued(2)]), "Running", None),
    Case(
        "errorThreshold N-1: strictly above, fail (terminate the live job)",
        facts(THREE_FAILED, error_threshold=2),
        "Running",
        "fail",
        m.REASON_ERROR_THRESHOLD,
    ),
    Case(
        "errorThreshold N: not above, finish",
        facts(THREE_FAILED, error_threshold=3),
        "Running",
        "finish",
    ),
    Case("errorThreshold N+1: finish", facts(THREE_FAILED, error_threshold=4), "Running", "finish"),
    Case(
        "miniBatchErrorThreshold N-1: fail",
        facts(THREE_FAILED, mini_batch_error_threshold=2),
        "Running",
        "fail",
        m.REASON_MINI_BATCH_ERROR_THRESHOLD,
    ),
    Case("miniBatchErrorThreshold N: finish", facts(THREE_FAILED, mini_batch_error_threshold=3), "Running", "finish"),
    Case("-1 ignores every failure", facts(THREE_FAILED), "Running", "finish"),
    Case(
        "Threshold exceeded and the job already ended: Failed",
        facts(THREE_FAILED, error_threshold=0, job_state="completed"),
        "Failed",
        None,
        m.REASON_ERROR_THRESHOLD,
    ),
    Case(
        "Threshold exceeded before the end: fail at once, not after the rest",
        facts([bad(0), running(1), queued(2)], total=10, error_threshold=0),
        "Running",
        "fail",
        m.REASON_ERROR_THRESHOLD,
    ),
    Case(
        "All finished, output written, job ended: Complete",
        facts([ok(0), ok(1)], output_ready=True, job_state="completed"),
        "Complete",
        None,
        job.REASON_SUCCEEDED,
    ),
    Case(
        "All finished, output written, job still live (crash before terminate): finish again",
        facts([ok(0), ok(1)], output_ready=True),
        "Running",
        "finish",
    ),
    Case("Empty input: finish at once", facts([], total=0), "Running", "finish"),
    Case("Suspend requested on a live job: suspend", facts([ok(0), running(1)], suspend=True), "Running", "suspend"),
    Case(
        "Suspend requested, Batch still disabling: wait",
        facts([ok(0), running(1)], suspend=True, job_state="disabling"),
        "Running",
        None,
    ),
    Case(
        "Suspended in Batch: Suspended",
        facts([ok(0), queued(1)], suspend=True, job_state="disabled"),
        "Suspended",
        None,
        job.REASON_SUSPENDED,
    ),
    Case("Suspend lifted: resume", facts([ok(0), queued(1)], job_state="disabled"), "Running", "resume"),
    Case(
        "Suspended before every task was added: stays suspended, adds nothing",
        facts([ok(0)], total=5, suspend=True, job_state="disabled"),
        "Suspended",
        None,
    ),
    Case(
        "Deadline passed: fail",
        facts([ok(0), running(1)], deadline=60, elapsed=61.0),
        "Running",
        "fail",
        job.REASON_DEADLINE,
    ),
    Case("Deadline not yet: wait", facts([ok(0), running(1)], deadline=60, elapsed=60.0), "Running", None),
    Case(
        "Job ended by someone else before its mini-batches: Failed",
        facts([ok(0), queued(1)], job_state="completed", terminate_reason="UserTerminate"),
        "Failed",
        None,
        m.REASON_JOB_TERMINATED,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in CASES])
def test_decide(case: Case) -> None:
    decision = m.decide(case.facts)
    assert decision.phase == case.phase, case.reason
    assert decision.action == case.action, case.reason
    if case.why:
        assert decision.reason == case.why, case.reason


def test_counts_and_status_fields() -> None:
    tasks = [ok(0, retries=1), bad(3, retries=2), bad(4, retries=2), running(5), queued(6)]
    decision = m.decide(facts(tasks, total=9))
    fields = m.status_fields(decision, elapsed=30.0)
    assert fields["miniBatches"] == {"total": 9, "pending": 5, "running": 1, "succeeded": 1, "failed": 2, "retried": 5}
    assert fields["items"] == {"processed": 1, "failed": 2}
    assert fields["failedMiniBatches"] == "3-4"
    assert fields["progress"] == "3/9"
    assert fields["progressPercentage"] == 33
    assert fields["estimatedRemainingSeconds"] == 60  # 3 done in 30 s, 6 to go


def short_run(total: int) -> dict[int, m.Finished]:
    """Mini-batches of 2 items each; 1 and 3 ran and returned one result short, 2 raised."""
    tasks = [ok(0), ok(1), bad(2), ok(3)][:total]
    items = {0: (2, 0), 1: (1, 1), 2: (0, 2), 3: (1, 1)}
    return {t.index: m.finished(t, items[t.index]) for t in tasks}


@pytest.mark.parametrize(
    ("threshold", "action", "why"),
    [
        (2, "fail", "N-1: three failed mini-batches (two short, one raised) are above 2"),
        (3, "finish", "N: not above"),
        (4, "finish", "N+1"),
    ],
)
def test_a_short_run_is_a_failed_mini_batch(threshold: int, action: str, why: str) -> None:
    """Azure ML ("How to use parallel job in pipeline", mini_batch_error_threshold): a mini-batch whose run()
    returns fewer results than inputs is marked failed; the emulator's runtime does the same
    (amlops_emulator/ml/parallel.py), so miniBatchErrorThreshold counts it on both backends."""
    base = m.Facts(total=4, added=4, running=0, finished=short_run(4), job_state="active")
    decision = m.decide(replace(base, mini_batch_error_threshold=threshold))
    assert decision.action == action, why
    assert decision.counts.failed_indexes == (1, 2, 3), why
    assert (decision.counts.items_processed, decision.counts.items_failed) == (4, 4), why


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "expected"),
    [
        pytest.param(0, 4, 10.0, {"progress": "0/4", "progressPercentage": 0, "estimatedRemainingSeconds": None},
                     id="NothingDoneNoEstimate"),
        pytest.param(4, 4, 10.0, {"progress": "4/4", "progressPercentage": 100, "estimatedRemainingSeconds": 0},
                     id="AllDone"),
        pytest.param(0, 0, None, {"progress": "0/0", "progressPercentage": 100, "estimatedRemainingSeconds": 0},
                     id="EmptyJobIsDone"),
        pytest.param(1, 4, None, {"progress": "1/4", "progressPercentage": 25, "estimatedRemainingSeconds": None},
                     id="NoStartTimeNoEstimate"),
    ],
)  # fmt: skip
def test_progress(done: int, total: int, elapsed: float | None, expected: dict[str, object]) -> None:
    assert m.progress(m.Counts(total=total, succeeded=done), elapsed) == expected


def test_observation_per_phase() -> None:
    owner = "ns.job.uid"
    running_ = m.observation(m.decide(facts([ok(0), running(1)])), {}, owner)
    assert running_.transitional
    assert ("Running", "True") in {(c.type, c.status) for c in running_.conditions}

    acting = m.observation(m.decide(facts([ok(0)], total=3)), {}, owner)
    assert not acting.resource_up_to_date
    assert acting.diff == "adding 2 mini-batches"

    suspended = m.observation(m.decide(facts([queued(0)], suspend=True, job_state="disabled")), {}, owner)
    assert not suspended.ready
    assert suspended.reason == job.REASON_SUSPENDED
    assert ("Suspended", "True") in {(c.type, c.status) for c in suspended.conditions}

    failed = m.observation(m.decide(facts([bad(0)], error_threshold=0, job_state="completed")), {}, owner)
    assert failed.failure is not None
    assert failed.failure[0] == m.REASON_ERROR_THRESHOLD
    assert ("Failed", "True") in {(c.type, c.status) for c in failed.conditions}


@pytest.mark.parametrize(
    ("reason", "decision", "pool_left", "action"),
    [
        ("Complete with its pool gone: done", m.Decision("Complete", m.Counts(1)), False, None),
        ("Complete with its pool still there (killed before deleting it): release", m.Decision("Complete", m.Counts(1)),
         True, "release"),
        ("Failed (job ended from outside) with its pool there: release", m.Decision("Failed", m.Counts(1), None,
         m.REASON_JOB_TERMINATED), True, "release"),
        ("Running: never a release, whatever the pool", m.Decision("Running", m.Counts(1)), True, None),
        ("An action already decided (finish releases too): kept", m.Decision("Running", m.Counts(1), "finish"), True,
         "finish"),
    ],
)  # fmt: skip
def test_releasing(reason: str, decision: m.Decision, pool_left: bool, action: str | None) -> None:
    got = m.releasing(decision, pool_left)
    assert got.action == action, reason
    # Not finished while its pool is there: the pass after the release decides again (reason and all).
    assert got.phase == ("Running" if action == "release" else decision.phase), reason
    released = m.observation(got, {}, "o")
    assert released.resource_up_to_date is (action is None), reason


@pytest.mark.parametrize(
    ("reason", "pool_id", "allowed"),
    [
        ("no poolId: the job gets a pool of its own", None, True),
        ("a pool of the BatchCompute's spec.pools", "scoring", True),
        ("another job's pool", "pj-6f1c2b9e-0000-4000-8000-000000000002", False),
        ("a pool the BatchCompute does not manage", "theirs", False),
    ],
)
def test_unmanaged_pool(reason: str, pool_id: str | None, allowed: bool) -> None:
    why = m.unmanaged_pool(pool_id, ["scoring", "gpu"], "batch")
    assert (why is None) is allowed, reason
    if why is not None:
        assert pool_id is not None
        assert pool_id in why
        assert "spec.pools" in why


def test_task_ids_round_trip_and_foreign_tasks_are_ignored() -> None:
    tasks: list[dict[str, Any]] = [
        {"id": m.task_id(7), "state": "completed", "executionInfo": {"result": "failure", "retryCount": 2}},
        {"id": "someone-elses", "state": "running"},
        {"id": "mb-x", "state": "running"},
    ]
    assert m.task_facts(tasks) == [m.TaskFact(7, "completed", "failure", 2)]


# -- the Batch job's body from the spec ----------------------------------------------------------------------

CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def spec(**overrides: Any) -> ParallelJobSpec:
    return ParallelJobSpec.model_validate(
        {
            "compute": {"name": "batch", **overrides.pop("compute", {})},
            "inputs": {"data": {"uri": "https://a.blob.core.windows.net/c/in"}},
            "outputs": {"scores": {"uri": "https://a.blob.core.windows.net/c/out"}},
            "inputData": "${{inputs.data}}",
            "task": {"code": "https://a.blob.core.windows.net/c/code", "entryScript": "score.py"},
            **overrides,
        }
    )


@pytest.mark.parametrize(
    ("job", "named", "why"),
    [
        (spec(), None, "nothing only Azure ML honours: Batch runs it"),
        (spec(resources={}), None, "an empty resources asks for nothing"),
        (spec(resources={"instanceType": "Standard_NC6s_v3"}), "resources.instanceType needs", "a VM type: refused"),
        (spec(resources={"shmSize": "2g"}), "resources.shmSize needs", "shared memory Batch tasks do not size"),
        (spec(resources={"dockerArgs": "--ipc=host"}), "resources.dockerArgs needs", "docker run arguments"),
        (spec(identity={"type": "aml_token"}), "identity needs", "an identity the Batch tasks cannot take"),
        (
            spec(resources={"shmSize": "2g", "dockerArgs": "-x"}, identity={"type": "managed", "clientId": CLIENT_ID}),
            "resources.shmSize, resources.dockerArgs, identity need",
            "every field named, not only the first",
        ),
    ],
)
def test_azure_ml_only(job: ParallelJobSpec, named: str | None, why: str) -> None:
    refusal = m.azure_ml_only(job)
    if named is None:
        assert refusal is None, why
        return
    assert refusal is not None, why
    assert refusal.startswith(named), why
    assert "AmlCompute" in refusal, "says what to do instead"
    assert "compute.instanceType" in refusal, "and where a Batch pool's VM size goes"


POOL = {"id": "scoring", "vmSize": "standard_d2s_v3", "taskSlotsPerNode": 4}


@pytest.mark.parametrize(
    ("job", "refused", "why"),
    [
        (spec(), None, "nothing asked of the pool: its VM size and slots are used"),
        (spec(compute={"instanceType": "STANDARD_D2S_V3"}), None, "the pool's VM size, whatever its case"),
        (spec(compute={"instanceType": "STANDARD_D4S_V3"}), "is not the vmSize", "another VM size: never ignored"),
        (spec(maxConcurrencyPerInstance=4), None, "as many as the pool's slots"),
        (spec(maxConcurrencyPerInstance=5), "more than the 4 task slots", "more than the pool's slots"),
    ],
)
def test_shared_pool_refusal(job: ParallelJobSpec, refused: str | None, why: str) -> None:
    refusal = m.shared_pool_refusal(job, POOL)
    assert (refusal is None) == (refused is None), why
    if refused is not None:
        assert refused in str(refusal), why


def test_a_pool_without_task_slots_has_one_per_node() -> None:
    """Batch's default taskSlotsPerNode is 1 (a pool as listed may leave it out)."""
    assert m.shared_pool_refusal(spec(maxConcurrencyPerInstance=2), {"id": "p", "vmSize": "x"}) is not None


@pytest.mark.parametrize(
    ("job", "vm_size", "why"),
    [
        (spec(), "STANDARD_D2S_V3", "absent: the default size"),
        (spec(compute={"instanceType": "STANDARD_D4S_V3"}), "STANDARD_D4S_V3", "as given"),
    ],
)
def test_vm_size(job: ParallelJobSpec, vm_size: str, why: str) -> None:
    assert m.vm_size(job) == vm_size, why


@pytest.mark.parametrize(
    ("job", "shared", "cap", "why"),
    [
        (spec(), True, 1, "the seed's defaults: one node, one mini-batch at a time"),
        (spec(instanceCount=2, maxConcurrencyPerInstance=4), True, 8, "instanceCount times maxConcurrencyPerInstance"),
        (spec(instanceCount=2, maxConcurrencyPerInstance=4), False, None, "a pool of its own is already that size"),
    ],
)
def test_max_parallel_tasks_on_a_shared_pool(job: ParallelJobSpec, shared: bool, cap: int | None, why: str) -> None:
    body = m.job_body(job, "pj-u", "scoring", "ns.n.u", "ns/n", shared)
    assert body.get("maxParallelTasks") == cap, why


def test_the_job_body_carries_the_seeds_identity_fields() -> None:
    """description, experimentName, tags and properties reach the Batch job's metadata after the owner tag;
    displayName is the job's own displayName."""
    job = spec(
        displayName="Score",
        description="parallel component for batch score",
        experimentName="seed",
        tags={"team": "ml", "a": "1"},
        properties={"origin": "seed"},
    )
    body = m.job_body(job, "pj-u", "pj-u", "ns.n.u", "ns/n", False)
    assert body == {
        "id": "pj-u",
        "displayName": "Score",
        "poolInfo": {"poolId": "pj-u"},
        "metadata": [
            {"name": OWNER_TAG, "value": "ns.n.u"},
            {"name": "description", "value": "parallel component for batch score"},
            {"name": "experimentName", "value": "seed"},
            {"name": "tag:a", "value": "1"},
            {"name": "tag:team", "value": "ml"},
            {"name": "property:origin", "value": "seed"},
        ],
    }


def test_the_job_body_without_them_is_the_owner_tag_and_a_fallback_name() -> None:
    body = m.job_body(spec(), "pj-u", "pj-u", "ns.n.u", "ns/n", False)
    assert body["displayName"] == "ns/n"
    assert body["metadata"] == [{"name": OWNER_TAG, "value": "ns.n.u"}]


@pytest.mark.parametrize(
    ("tags", "fits", "why"),
    [
        ({"a": "v" * 4096}, True, "the largest value the schema allows fits easily"),
        ({f"k{n}": "v" * 4096 for n in range(64)}, True, "every tag at its largest: 262 KB"),
        ({f"{'k' * 12_000}{n}": "v" * 4096 for n in range(64)}, False, "keys are unbounded: over Batch's 1 MB"),
    ],
)
def test_oversized(tags: dict[str, str], fits: bool, why: str) -> None:
    body = m.job_body(spec(tags=tags), "pj-u", "pj-u", "ns.n.u", "ns/n", False)
    assert (m.oversized(body) is None) == fits, why
