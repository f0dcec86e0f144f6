"""Every status fixture written to the test bed's real CRDs: nothing pruned or rejected, and kstatus and
argocd/health.lua read the live object as they read the fixture (Ready → Current, Stalled → Failed, ...)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed
from tests.gitops import gitops_support as gs

pytestmark = pytest.mark.e2e
EXPECTED = gs.expected()


def _shift_generations(status: dict[str, Any], by: int) -> dict[str, Any]:
    """The fixture's status with every observedGeneration moved by ``by`` (the live object starts at 1)."""
    out: dict[str, Any] = json.loads(json.dumps(status))
    out["observedGeneration"] += by
    for condition in out.get("conditions", []):
        condition["observedGeneration"] += by
    return out


def _create_from_fixture(k8s: testbed.Testbed, namespace: str, fixture: dict[str, Any]) -> tuple[str, Any]:
    """Create the fixture's object in ``namespace`` and write its status; return ``kind/name`` and that status."""
    obj = {key: fixture[key] for key in ("apiVersion", "kind", "spec")}
    obj["metadata"] = {"name": fixture["metadata"]["name"], "namespace": namespace}
    k8s.kubectl("create", "-f", "-", input_text=json.dumps(obj))
    resource = f"{fixture['kind'].lower()}/{fixture['metadata']['name']}"
    if "status" not in fixture:
        return resource, None
    generation = json.loads(k8s.kubectl("get", resource, "-n", namespace, "-o", "json"))["metadata"]["generation"]
    # Keep the fixture's distance between generation and observedGeneration (stale stays stale).
    status = _shift_generations(fixture["status"], generation - fixture["metadata"]["generation"])
    status = json.loads(json.dumps(status, default=str))  # YAML timestamps as the strings the API returns
    patch = json.dumps({"status": status})
    k8s.kubectl("patch", resource, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
    return resource, status


@pytest.mark.parametrize("name", gs.fixture_names())
def test_fixture_on_the_live_crd(
    name: str, k8s: testbed.Testbed, namespace: str, kstatus_bin: Path, tmp_path: Path
) -> None:
    resource, status = _create_from_fixture(k8s, namespace, gs.load_fixture(name))
    live = gs.capture(k8s.kubectl, resource, namespace)
    # The structural schema prunes unknown fields silently: a round trip proves the fixture's shape.
    assert live.get("status") == status

    want = EXPECTED[name]
    assert gs.kstatus(kstatus_bin, live)["status"] == want["kstatus"]
    assert gs.health(live, tmp_path)["status"] == want["argocd"]


def test_capture_command_writes_a_fixture(k8s: testbed.Testbed, namespace: str, tmp_path: Path) -> None:
    # The documented refresh path (fixtures/README.md), run as a developer would.
    fixture = gs.load_fixture("amlcompute-stalled-quota.yaml")
    resource, status = _create_from_fixture(k8s, namespace, fixture)
    out = tmp_path / "captured.yaml"
    cmd = [sys.executable, str(gs.HERE / "gitops_support.py"), "capture", resource, "-n", namespace, "-o", str(out)]
    subprocess.run(cmd, env=k8s.env(), check=True, capture_output=True, timeout=60)
    captured = yaml.safe_load(out.read_text())
    assert out.read_text().startswith("# Captured from a live test bed.")
    assert captured["status"] == status
    # The API server adds the CRD's defaults to the spec.
    assert {key: captured["spec"][key] for key in fixture["spec"]} == fixture["spec"]
    assert set(captured["metadata"]) == {"name", "namespace", "generation", "creationTimestamp"}
