"""Helm for the chart tests: the binary from the test bed's cache, rendering, and releases on the bed."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "amlops"
# The test bed's version: `helm template` otherwise assumes the Kubernetes version compiled into helm.
KUBE_VERSION = testbed.K8S_VERSION.lstrip("v")


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], input=stdin, capture_output=True, text=True, env=env, timeout=180, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def template(
        self, values: dict[str, Any] | None = None, *, chart: Path = CHART, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # JSON is YAML: the values go through --values, as a user's values.yaml would, so the schema sees them.
        args = ["template", "amlops", str(chart), "--namespace", "amlops-system", "--kube-version", KUBE_VERSION]
        args += ["--values", "-"] if values else []
        return self.run(*args, stdin=json.dumps(values or {}), check=check)

    def render(self, values: dict[str, Any] | None = None, *, chart: Path = CHART) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(values, chart=chart).stdout) if doc]


@pytest.fixture(scope="session")
def helm() -> Helm:
    # The test bed's build script also builds helm, and is a no-op when the cache is complete.
    return Helm(testbed.ensure_built() / "helm")


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """The chart without files/, so a test decides which monitoring files exist."""
    copy = tmp_path / "amlops"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("files"))
    return copy


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    fullname: str


@pytest.fixture
def install_chart(k8s: testbed.Testbed, helm: Helm) -> Iterator[Callable[..., Release]]:
    """``helm install`` into the test bed; every release is uninstalled afterwards.

    Uninstalling matters: the deletion-protection policy is cluster-wide and would otherwise outlive the test.
    """
    installed: list[Release] = []

    def install(namespace: str, *settings: str) -> Release:
        name = f"amlops-{uuid.uuid4().hex[:6]}"
        args = ["install", name, str(CHART), "--namespace", namespace]
        for setting in settings:
            args += ["--set", setting]
        helm.run(*args, env=k8s.env())
        release = Release(name=name, namespace=namespace, fullname=name)
        installed.append(release)
        return release

    yield install
    for release in installed:
        helm.run("uninstall", release.name, "--namespace", release.namespace, env=k8s.env(), check=False)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
