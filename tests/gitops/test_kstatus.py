"""kstatus (sigs.k8s.io/cli-utils, what Flux's health checks use) on amlops objects: fixtures and live CRs."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

import amlops_testbed as testbed
from tests.gitops import gitops_support as gs
from tests.support.objects import is_true, observed, wait_for
from tests.support.processes import StartOperator

pytestmark = pytest.mark.tools

EXPECTED = gs.expected()
SAMPLES = gs.REPO / "samples"


@pytest.mark.parametrize("name", gs.fixture_names())
def test_kstatus_of_fixture(name: str, kstatus_bin: Path) -> None:
    result = gs.kstatus(kstatus_bin, gs.load_fixture(name))
    assert result["status"] == EXPECTED[name]["kstatus"], result


def test_kstatus_terminating_and_yaml_input(kstatus_bin: Path, tmp_path: Path) -> None:
    obj = copy.deepcopy(gs.load_fixture("amlcompute-ready.yaml"))
    obj["metadata"]["deletionTimestamp"] = "2026-03-02T10:00:00Z"
    assert gs.kstatus(kstatus_bin, obj)["status"] == "Terminating"
    # -f FILE with YAML, as a developer would call it on a fixture.
    out = subprocess.run(
        [str(kstatus_bin), "-f", str(gs.FIXTURES / "amlcompute-stalled-quota.yaml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["status"] == "Failed"


SAMPLE_OBJECTS = (
    ("amlcompute", "cpu-cluster"),
    ("batchcompute", "batch"),
    ("paralleljob", "score"),
    ("workspacequota", "team-quota"),
)


@pytest.mark.e2e
def test_kstatus_and_argocd_on_what_the_operator_writes(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, kstatus_bin: Path, tmp_path: Path
) -> None:
    k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES))
    for resource, name in SAMPLE_OBJECTS:
        # Before the operator sees it, kstatus calls the empty status Current (its rule 6); Argo CD waits.
        fresh = testbed.get_object(k8s, resource, name, namespace)
        assert fresh is not None
        assert gs.kstatus(kstatus_bin, fresh)["status"] == "Current"
        assert gs.health(fresh, tmp_path) == {"status": "Progressing", "message": "Waiting for amlops"}

    # One operator for every kind.
    start_operator(namespace)
    for resource, name in SAMPLE_OBJECTS:
        live = wait_for(k8s, resource, name, namespace, observed, what="status written", timeout=60)
        # Without Azure on the bed a kind is either waiting (Reconciling, as every kind did at first) or, once
        # its reconciler exists, stalled (no credentials): both tools must read the same verdict from it.
        if is_true(live, "Stalled"):
            want = ("Failed", "Degraded")
        elif is_true(live, "Reconciling"):
            want = ("InProgress", "Progressing")
        else:
            pytest.fail(f"{resource}: amlops wrote neither Reconciling=True nor Stalled=True: {live['status']}")
        assert (gs.kstatus(kstatus_bin, live)["status"], gs.health(live, tmp_path)["status"]) == want, resource
        # The fixture capture keeps only what users and amlops' status wrote: no kubectl or kopf bookkeeping.
        captured = gs.capture(k8s.kubectl, f"{resource}/{name}", namespace)
        assert "annotations" not in captured["metadata"], captured["metadata"]
        assert captured["status"] == live["status"]
