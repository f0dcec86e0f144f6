"""``helm install`` into the real apiserver, and the deletion-protection policy enforced by it.

No kube-controller-manager runs, so the Deployment never gets pods: the test checks what the API accepted.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import amlops_testbed as testbed
from tests.support.objects import wait_gone

from .conftest import Release

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KINDS = [("amlcompute", "cpu-cluster"), ("batchcompute", "batch"), ("paralleljob", "score")]


def test_install_creates_the_operator_objects(
    k8s: testbed.Testbed, namespace: str, install_chart: Callable[..., Release]
) -> None:
    release = install_chart(namespace, f"watchNamespaces={{{namespace}}}")
    deployment = json.loads(k8s.kubectl("get", "deployment", release.fullname, "-n", namespace, "-o", "json"))
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == release.fullname
    k8s.kubectl("get", "serviceaccount", release.fullname, "-n", namespace)
    k8s.kubectl("get", "role,rolebinding", release.fullname, "-n", namespace)
    k8s.kubectl("get", "service", f"{release.fullname}-metrics", "-n", namespace)
    k8s.kubectl("get", "poddisruptionbudget", release.fullname, "-n", namespace)
    k8s.kubectl(
        "get", "validatingadmissionpolicy,validatingadmissionpolicybinding", f"{release.fullname}-deletion-protection"
    )


def test_high_availability_install_creates_the_peering_object(
    k8s: testbed.Testbed, namespace: str, install_chart: Callable[..., Release]
) -> None:
    # The peering object is a post-install hook: Helm could not map its kind before the CRD existed.
    install_chart(namespace, "replicas=2", f"watchNamespaces={{{namespace}}}")
    peering = json.loads(k8s.kubectl("get", "kopfpeering.kopf.dev", "amlops", "-n", namespace, "-o", "json"))
    assert peering["metadata"]["name"] == "amlops"


def _delete(
    k8s: testbed.Testbed, namespace: str, resource: str, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "delete", resource, name, "-n", namespace, "--wait=false", *extra],
        env=k8s.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _protect(k8s: testbed.Testbed, namespace: str, resource: str, name: str, on: bool) -> None:
    patch = json.dumps({"spec": {"deletionProtection": on}})
    k8s.kubectl("patch", resource, name, "-n", namespace, "--type=merge", "-p", patch)


def test_deletion_protection_denies_delete_until_unprotected(
    k8s: testbed.Testbed, namespace: str, install_chart: Callable[..., Release]
) -> None:
    install_chart(namespace, f"watchNamespaces={{{namespace}}}")
    for resource, name in KINDS:
        k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / f"{resource}.yaml"))
        _protect(k8s, namespace, resource, name, True)

    # The apiserver loads a new policy asynchronously: wait until a server-side dry run is denied.
    resource, name = KINDS[0]
    testbed.eventually(
        lambda: "deletionProtection" in _delete(k8s, namespace, resource, name, "--dry-run=server").stderr,
        timeout=30,
        what="the deletion-protection policy is enforced",
    )
    # Objects that never set the field (it defaults to false) are deleted as usual.
    sample = (SAMPLES / "amlcompute.yaml").read_text().replace("name: cpu-cluster", "name: unprotected")
    k8s.kubectl("apply", "-n", namespace, "-f", "-", input_text=sample)
    unprotected = _delete(k8s, namespace, "amlcompute", "unprotected")
    assert unprotected.returncode == 0, unprotected.stderr

    for resource, name in KINDS:
        denied = _delete(k8s, namespace, resource, name)
        assert denied.returncode != 0, f"{resource}/{name} was deleted despite deletionProtection"
        assert "spec.deletionProtection: true; set it to false first" in denied.stderr
        assert testbed.get_object(k8s, resource, name, namespace) is not None

        _protect(k8s, namespace, resource, name, False)
        allowed = _delete(k8s, namespace, resource, name)
        assert allowed.returncode == 0, allowed.stderr
        wait_gone(k8s, resource, name, namespace, timeout=30)
