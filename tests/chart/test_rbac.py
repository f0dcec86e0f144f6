"""The chart's RBAC is enough for the operator, and no more: the operator runs as the chart's ServiceAccount.

Neither kopf nor the ``kubernetes`` client honours a kubeconfig's ``as:`` impersonation, so the operator gets
the ServiceAccount's own credential instead: a bound token from the TokenRequest API, which the apiserver
serves without a controller-manager. Every request kopf makes is then authorised as that ServiceAccount.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import amlops_testbed as testbed
from amlops_emulator.azurite import azurite_blob
from amlops_emulator.seed import DEFAULT_BATCH_KEY
from amlops_testbed import demo
from tests.support.objects import wait_condition
from tests.support.processes import EmulatorProcess, StartOperator

from .conftest import Release

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


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


def test_operator_completes_every_flow_with_only_the_charts_namespaced_rbac(
    k8s: testbed.Testbed,
    namespace: str,
    install_chart: Callable[..., Release],
    start_operator: StartOperator,
    azure: EmulatorProcess,
    tmp_path: Path,
) -> None:
    """The operator as the chart's ServiceAccount (a real token, namespaced Role): AmlCompute and BatchCompute
    become Ready and the ParallelJob scores the sample data to Complete, reading the Secrets and the
    BatchCompute it needs, writing status and Events, and never hitting a permission it lacks."""
    release = install_chart(namespace, f"watchNamespaces={{{namespace}}}")
    kubeconfig = service_account_kubeconfig(k8s, release, tmp_path / "operator.kubeconfig")
    whoami = as_operator(kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{namespace}:{release.fullname}", whoami.stderr

    k8s.kubectl(
        "create", "secret", "generic", "amlopsbatch-key", "-n", namespace, f"--from-literal=key={DEFAULT_BATCH_KEY}"
    )
    with azurite_blob(tmp_path / "azurite") as azurite:
        # The operator's own storage account, as the chart's blob.connectionString gives it: this namespace may
        # use it, in a container of its own name.
        demo.upload_sample_data(azurite.connection_string, namespace)
        env = {"KUBECONFIG": str(kubeconfig), **azure.operator_env()}
        shared = {"AMLOPS_BLOB_CONNECTION_STRING": azurite.connection_string,
                  "AMLOPS_SHARED_STORAGE_NAMESPACES": namespace}  # fmt: skip
        operator = start_operator(namespace, extra_env={**env, **shared})
        for text in demo.sample_manifests(azurite.blob_endpoint, namespace):
            k8s.kubectl("apply", "-n", namespace, "-f", "-", input_text=text)
        for resource, name, done in (("amlcompute", "cpu-cluster", "Ready"), ("batchcompute", "batch", "Ready"),
                                     ("paralleljob", "score", "Complete")):  # fmt: skip
            try:
                wait_condition(k8s, resource, name, namespace, done, timeout=120)
            except TimeoutError as e:
                # A missing grant shows only in the operator's log.
                raise AssertionError(f"{e}\n--- operator log ---\n{operator.output()[-5000:]}") from e
    events = k8s.kubectl("get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}")
    assert "Succeeded" in events.split()
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


def test_secret_guard_lets_the_operator_change_only_its_finalizer(
    k8s: testbed.Testbed, namespace: str, install_chart: Callable[..., Release], tmp_path: Path
) -> None:
    """RBAC grants the operator "patch" on Secrets (the in-use finalizer); the chart's admission policy narrows it
    to that one finalizer: the operator can neither read more nor rewrite a tenant's credentials."""
    release = install_chart(namespace, f"watchNamespaces={{{namespace}}}")
    kubeconfig = service_account_kubeconfig(k8s, release, tmp_path / "operator.kubeconfig")
    k8s.kubectl("create", "secret", "generic", "sp", "-n", namespace, "--from-literal=AZURE_CLIENT_SECRET=s3cr3t")

    def patch(kind: str, body: str, *dry_run: str) -> subprocess.CompletedProcess[str]:
        return as_operator(kubeconfig, "patch", "secret", "sp", "-n", namespace, f"--type={kind}", "-p", body, *dry_run)

    rewrite = '{"data": {"AZURE_CLIENT_SECRET": "ZXZpbA=="}}'
    # A new policy takes a moment to be enforced: probe with server-side dry runs, which admission sees but
    # which change nothing (a real write let through early would make every later probe a no-op).
    testbed.eventually(
        lambda: "credentials-in-use finalizer" in patch("merge", rewrite, "--dry-run=server").stderr,
        timeout=30,
        what="the secret-guard policy is enforced",
    )
    denied = patch("merge", rewrite)
    assert denied.returncode != 0
    assert "credentials-in-use finalizer" in denied.stderr, denied.stderr
    other = patch("strategic", '{"metadata": {"finalizers": ["example.com/keep"]}}')
    assert other.returncode != 0
    assert "credentials-in-use finalizer" in other.stderr, other.stderr
    relabel = patch("merge", '{"metadata": {"labels": {"team": "b"}}}')
    assert relabel.returncode != 0, relabel.stdout
    protect = patch("strategic", '{"metadata": {"finalizers": ["amlops.io/credentials-in-use"]}}')
    assert protect.returncode == 0, protect.stderr
    release_it = patch(
        "strategic", '{"metadata": {"$deleteFromPrimitiveList/finalizers": ["amlops.io/credentials-in-use"]}}'
    )
    assert release_it.returncode == 0, release_it.stderr
    secret = json.loads(k8s.kubectl("get", "secret", "sp", "-n", namespace, "-o", "json"))
    assert base64.b64decode(secret["data"]["AZURE_CLIENT_SECRET"]) == b"s3cr3t"
    assert not secret["metadata"].get("finalizers")
