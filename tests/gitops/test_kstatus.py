"""kstatus (sigs.k8s.io/cli-utils, what Flux's health checks use) on amlops objects: fixtures and live CRs."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.gitops import gitops_support as gs

import amlops_testbed as testbed

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


def _observed(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if not obj or (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return obj


def _true(obj: dict[str, Any], condition_type: str) -> bool:
    return any(c["type"] == condition_type and c["status"] == "True" for c in obj["status"].get("conditions", []))


SAMPLE_OBJECTS = (("amlcompute", "cpu-cluster"), ("batchcompute", "batch"), ("paralleljob", "score"))


@pytest.mark.e2e
def test_kstatus_and_argocd_on_what_the_operator_writes(
    k8s: testbed.Testbed, namespace: str, operator_with_metrics: Any, kstatus_bin: Path, tmp_path: Path
) -> None:
    k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES))
    for resource, name in SAMPLE_OBJECTS:
        # Before the operator sees it, kstatus calls the empty status Current (its rule 6); Argo CD waits.
        fresh = testbed.get_object(k8s, resource, name, namespace)
        assert fresh is not None
        assert gs.kstatus(kstatus_bin, fresh)["status"] == "Current"
        assert gs.health(fresh, tmp_path) == {"status": "Progressing", "message": "Waiting for amlops"}

    # One operator for the three kinds. Not conftest's start_operator: that binds /metrics to 9090, which a
    # concurrent run may hold.
    operator_with_metrics(namespace)
    for resource, name in SAMPLE_OBJECTS:
        live = testbed.eventually(
            lambda r=resource, n=name: _observed(testbed.get_object(k8s, r, n, namespace)),
            timeout=60,
            what=f"{resource}/{name} status written",
        )
        # Without Azure on the bed a kind is either waiting (Reconciling, as every kind did at first) or, once
        # its reconciler exists, stalled (no credentials): both tools must read the same verdict from it.
        if _true(live, "Stalled"):
            want = ("Failed", "Degraded")
        elif _true(live, "Reconciling"):
            want = ("InProgress", "Progressing")
        else:
            pytest.fail(f"{resource}: amlops wrote neither Reconciling=True nor Stalled=True: {live['status']}")
        assert (gs.kstatus(kstatus_bin, live)["status"], gs.health(live, tmp_path)["status"]) == want, resource
        # The fixture capture keeps only what users and amlops' status wrote: no kubectl or kopf bookkeeping.
        captured = gs.capture(k8s.kubectl, f"{resource}/{name}", namespace)
        assert "annotations" not in captured["metadata"], captured["metadata"]
        assert captured["status"] == live["status"]
