"""The chart's RBAC is enough for the operator, and no more: the operator runs as the chart's ServiceAccount.

Neither kopf nor the ``kubernetes`` client honours a kubeconfig's ``as:`` impersonation, so the operator gets
the ServiceAccount's own credential instead: a bound token from the TokenRequest API, which the apiserver
serves without a controller-manager. Every request kopf makes is then authorised as that ServiceAccount.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from amlops import testbed

from .conftest import Release, offline_azure_env

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KINDS = [("amlcompute", "cpu-cluster"), ("batchcompute", "batch"), ("paralleljob", "score")]


def service_account_kubeconfig(k8s: testbed.Testbed, release: Release, path: Path) -> Path:
    token = k8s.kubectl("create", "token", release.fullname, "-n", release.namespace, "--duration=1h").strip()
    admin = yaml.safe_load(k8s.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "amlops-operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": admin["clusters"][0]["name"], "user": "amlops-operator"}}
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def as_operator(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _reconciling(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if not obj or (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return next((c for c in obj["status"].get("conditions", []) if c["type"] == "Reconciling"), None)


def test_operator_reconciles_with_only_the_charts_namespaced_rbac(
    k8s: testbed.Testbed,
    namespace: str,
    install_chart: Callable[..., Release],
    start_operator: Any,
    tmp_path: Path,
) -> None:
    release = install_chart(namespace, f"watchNamespaces={{{namespace}}}")
    kubeconfig = service_account_kubeconfig(k8s, release, tmp_path / "operator.kubeconfig")
    whoami = as_operator(kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{namespace}:{release.fullname}", whoami.stderr

    operator = start_operator(namespace, extra_env={"KUBECONFIG": str(kubeconfig), **offline_azure_env()})
    for resource, _ in KINDS:
        k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / f"{resource}.yaml"))
    for resource, name in KINDS:
        # Whether Reconciling is True or False depends on how far the kind's Azure flow goes today (there is
        # no Azure here); the RBAC proof is that the operator, as the ServiceAccount, saw it and wrote status.
        try:
            testbed.eventually(
                lambda resource=resource, name=name: _reconciling(testbed.get_object(k8s, resource, name, namespace)),
                timeout=60,
                what=f"{resource}/{name} reconciled by the operator as its ServiceAccount",
            )
        except TimeoutError as e:
            # A missing grant shows only in the operator's log.
            raise AssertionError(f"{e}\n--- operator log ---\n{operator.output()[-5000:]}") from e
    # kopf also posts Events; a missing grant there only shows in the log, so the log must show no denial.
    events = k8s.kubectl("get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}")
    assert events.strip(), "the operator posted no Event"
    log = operator.output()
    assert "Forbidden" not in log, log[-3000:]
    assert "Not enough permissions" not in log, log[-3000:]


def test_service_account_cannot_read_outside_its_namespaces(
    k8s: testbed.Testbed, namespace: str, install_chart: Callable[..., Release], tmp_path: Path
) -> None:
    release = install_chart(namespace, f"watchNamespaces={{{namespace}}}")
    other = f"{namespace[:50]}-other"
    k8s.kubectl("create", "namespace", other)
    k8s.kubectl("create", "secret", "generic", "azure-sp", "-n", other, "--from-literal=AZURE_CLIENT_SECRET=s3cr3t")
    kubeconfig = service_account_kubeconfig(k8s, release, tmp_path / "operator.kubeconfig")

    denied = as_operator(kubeconfig, "get", "secret", "azure-sp", "-n", other)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr, denied.stderr

    def can_i(*args: str) -> str:
        return as_operator(kubeconfig, "auth", "can-i", *args).stdout.strip()

    assert can_i("get", "secrets", "-n", namespace) == "yes"
    assert can_i("get", "secrets", "-n", other) == "no"
    assert can_i("list", "secrets", "-n", namespace) == "no", "a Secret is read by name, never listed"
    assert can_i("patch", "amlcomputes.amlops.io/status", "-n", namespace) == "yes"
    assert can_i("watch", "paralleljobs.amlops.io", "-n", other) == "no"
    assert can_i("delete", "amlcomputes.amlops.io", "-n", namespace) == "no"
    assert can_i("get", "secrets", "--all-namespaces") == "no"
