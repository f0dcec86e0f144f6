"""examples/ (Argo CD Applications, Flux objects), the argocd-cm snippet and samples/, server-side dry-run
against the test bed; and the examples' Helm values render the chart with the rules and dashboard files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed
from tests.gitops import gitops_support as gs

pytestmark = pytest.mark.e2e
EXAMPLES = gs.REPO / "examples"
STAND_IN_CRDS = gs.HERE / "crds"


@pytest.fixture(scope="module")
def gitops_bed(k8s: testbed.Testbed) -> testbed.Testbed:
    """The bed with stand-in Argo CD / Flux CRDs and the namespaces the examples live in."""
    testbed.install_crds(k8s, STAND_IN_CRDS)
    for ns in ("argocd", "flux-system"):
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        k8s.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
    return k8s


def _dry_run(bed: testbed.Testbed, *args: str, input_text: str | None = None) -> list[str]:
    """``kubectl apply --server-side --dry-run=server``: admission and schema run, nothing is stored."""
    out = bed.kubectl("apply", "--server-side", "--dry-run=server", "-o", "name", *args, input_text=input_text)
    return out.split()


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_examples_dry_run(gitops_bed: testbed.Testbed) -> None:
    files = sorted(EXAMPLES.rglob("*.yaml"))
    applied = [name for f in files for name in _dry_run(gitops_bed, "-f", str(f))]
    assert sorted(applied) == sorted(
        [
            "application.argoproj.io/amlops",
            "application.argoproj.io/amlops-samples",
            "gitrepository.source.toolkit.fluxcd.io/amlops",
            "helmrelease.helm.toolkit.fluxcd.io/amlops",
            "kustomization.kustomize.toolkit.fluxcd.io/amlops-samples",
        ]
    )


def test_flux_sources_refer_to_the_gitrepository() -> None:
    repo = _documents(EXAMPLES / "flux" / "gitrepository.yaml")[0]["metadata"]["name"]
    release = _documents(EXAMPLES / "flux" / "helmrelease.yaml")[0]
    samples = _documents(EXAMPLES / "flux" / "samples-kustomization.yaml")[0]
    assert release["spec"]["chart"]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo}
    assert samples["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo}
    assert samples["spec"]["wait"] is True
    # Paths point at folders of this repository.
    assert (gs.REPO / release["spec"]["chart"]["spec"]["chart"]).is_dir()
    assert (gs.REPO / samples["spec"]["path"]).is_dir()
    for app in _documents(EXAMPLES / "argocd-application.yaml"):
        assert (gs.REPO / app["spec"]["source"]["path"]).is_dir()


def test_argocd_cm_snippet_dry_run(gitops_bed: testbed.Testbed) -> None:
    text = (gs.ARGOCD / "README.md").read_text()
    start = text.index("```yaml\n") + len("```yaml\n")
    snippet = text[start : text.index("```", start)]
    # The ConfigMap key format (no '*' allowed) is what the API server checks here.
    assert _dry_run(gitops_bed, "-f", "-", input_text=snippet) == ["configmap/argocd-cm"]


def test_samples_dry_run(gitops_bed: testbed.Testbed, namespace: str) -> None:
    applied = _dry_run(gitops_bed, "-n", namespace, "-f", str(gs.REPO / "samples"))
    assert sorted(applied) == [
        "amlcompute.amlops.io/cpu-cluster",
        "batchcompute.amlops.io/batch",
        "commandjob.amlops.io/train",
        "configmap/train-code",
        "paralleljob.amlops.io/score",
        "workspacequota.amlops.io/team-quota",
    ]


def _helm_values() -> list[dict[str, Any]]:
    release = _documents(EXAMPLES / "flux" / "helmrelease.yaml")[0]["spec"]["values"]
    app = _documents(EXAMPLES / "argocd-application.yaml")[0]["spec"]["source"]["helm"]["valuesObject"]
    return [release, app]


@pytest.mark.parametrize("values", _helm_values(), ids=["flux-helmrelease", "argocd-application"])
def test_example_values_render_rules_and_dashboard(values: dict[str, Any], tmp_path: Path) -> None:
    helm = testbed.ensure_built() / "helm"
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    args = [str(helm), "template", "amlops", str(gs.REPO / "charts" / "amlops"), "--namespace", "amlops-system"]
    # The chart's kubeVersion constraint and the prometheus-operator API, as a real cluster would report them.
    args += ["--kube-version", testbed.K8S_VERSION, "--api-versions", "monitoring.coreos.com/v1"]
    rendered = subprocess.run([*args, "-f", str(values_file)], capture_output=True, text=True, timeout=120, check=False)
    assert rendered.returncode == 0, rendered.stderr  # the chart's values.schema.json accepts the example
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] != "ConfigMap"}
    configmaps = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "ConfigMap"]
    assert docs["PrometheusRule"]["spec"]["groups"] == yaml.safe_load(gs.RULES.read_text())["groups"]
    assert "ServiceMonitor" in docs
    dashboards = [json.loads(c["data"]["amlops.json"]) for c in configmaps if "amlops.json" in c.get("data", {})]
    assert dashboards == [json.loads(gs.DASHBOARD.read_text())]
