"""AmlCompute ``status.activeRuns`` (the seed's ``get_active_runs``) from the workspace's job listing, pure: which
jobs are on the cluster, and which amlops object owns each."""

from __future__ import annotations

from typing import Any

import pytest

from amlops.external.amlcompute_observe import ACTIVE_RUNS_LIMIT, active_runs

pytestmark = pytest.mark.unit

UID = "0b6a3c1e-5f7d-4e2a-9c11-2f3e4d5a6b7c"


def job(name: str, status: str = "Running", compute: str | None = "cpu", owner: str | None = None) -> dict[str, Any]:
    return {"name": name, "status": status, "type": "command", "compute": compute, "owner": owner,
            "displayName": None}  # fmt: skip


@pytest.mark.parametrize(
    ("jobs", "names", "why"),
    [
        ([job("a")], ["a"], "a running job on the cluster"),
        ([job(s) for s in ("NotStarted", "Queued", "Preparing", "Finalizing", "CancelRequested")],
         ["CancelRequested", "Finalizing", "NotStarted", "Preparing", "Queued"], "queued or still holding nodes"),
        ([job(s, status=s) for s in ("Completed", "Failed", "Canceled", "NotResponding")], [], "ended: not active"),
        ([job("other", compute="gpu"), job("serverless", compute=None)], [], "another cluster, or serverless"),
        ([job("A", compute="CPU")], ["A"], "Azure ML compute names ignore case"),
        ([job("b"), job("a")], ["a", "b"], "by name, so the status does not churn with the listing's order"),
    ],
)  # fmt: skip
def test_which_jobs_are_active_on_the_cluster(jobs: list[dict[str, Any]], names: list[str], why: str) -> None:
    assert [run["name"] for run in active_runs(jobs, "cpu")] == names, why


@pytest.mark.parametrize(
    ("owner", "expected", "why"),
    [
        (f"team-a.train.{UID}", "team-a/train", "an amlops object's tag: its namespace and name"),
        (None, None, "someone else's job (azure-ai-ml, Studio): no owner"),
        ("not a tag", None, "a tag amlops did not write: not read as an owner"),
    ],
)
def test_the_owner(owner: str | None, expected: str | None, why: str) -> None:
    [run] = active_runs([job("a", owner=owner)], "cpu")
    assert run["owner"] == expected, why
    assert (run["type"], run["status"]) == ("command", "Running")


def test_bounded() -> None:
    """A status field: a cluster with a thousand queued jobs reports the first hundred by name."""
    runs = active_runs([job(f"j{i:04d}") for i in range(1000)], "cpu")
    assert len(runs) == ACTIVE_RUNS_LIMIT
    assert runs[0]["name"] == "j0000"
