"""The committed CRDs are exactly what the typed models generate (crds/ and the chart's copy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from amlops.api import KINDS, AmlCompute, BatchCompute, ParallelJob, amlcompute, batchcompute, crdgen, workspacequota

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", ["crds", "charts/amlops/crds"])
def test_committed_crds_match_the_models(target: str, tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    committed = {p.name: p.read_text() for p in (REPO / target).glob("*.yaml")}
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    assert committed == generated, f"{target} is stale: run `amlops crdgen`"


def test_committed_chart_kind_list_matches_the_models() -> None:
    for name, text in crdgen.render_chart().items():
        assert (REPO / "charts/amlops" / name).read_text() == text, f"{name} is stale: run `amlops crdgen`"


def test_the_chart_lists_every_kind_its_status_and_only_real_subresources() -> None:
    """What the chart's RBAC and admission policy are generated from: every kind of the API; /scale only where
    the CRD has a scale subresource; delete only for job kinds (ttlSecondsAfterFinished)."""
    lists = crdgen.chart_kinds((AmlCompute, BatchCompute, ParallelJob))
    assert lists == {
        "amlops.kinds": ["amlcomputes", "batchcomputes", "paralleljobs"],
        "amlops.kinds.status": ["amlcomputes/status", "batchcomputes/status", "paralleljobs/status"],
        "amlops.kinds.scale": ["amlcomputes/scale"],
        "amlops.kinds.jobs": ["paralleljobs"],
    }
    computes_only = crdgen.chart_kinds((BatchCompute,))
    assert computes_only["amlops.kinds.jobs"] == [], "no job kind: no delete at all"
    assert computes_only["amlops.kinds.scale"] == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind())
def test_every_crd_has_status_subresource_printer_columns_and_category(kind: type) -> None:
    spec = crdgen.crd(kind)["spec"]
    version = spec["versions"][0]
    assert "status" in version["subresources"]
    assert any(c["name"] == "Ready" for c in version["additionalPrinterColumns"])
    assert spec["names"]["categories"] == ["amlops"]
    assert spec["names"]["shortNames"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind())
def test_every_spec_field_is_described_for_kubectl_explain(kind: type) -> None:
    root = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            if "description" not in sub:
                undocumented.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(root["properties"]["spec"], "spec")
    assert undocumented == []


FROZEN = [
    (amlcompute.AmlComputeSpec, amlcompute.IMMUTABLE),
    (batchcompute.BatchComputeSpec, batchcompute.IMMUTABLE),
    (batchcompute.ManagedPool, batchcompute.POOL_IMMUTABLE),
    (workspacequota.WorkspaceQuotaSpec, workspacequota.IMMUTABLE),
]


@pytest.mark.parametrize(("model", "fields"), FROZEN, ids=lambda v: getattr(v, "__name__", ""))
def test_each_immutable_field_exists_and_its_rule_says_what_to_do(
    model: type[BaseModel], fields: dict[str, str]
) -> None:
    """A rule on a field the model lacks would never fire (a typo freezes nothing); each message says what to
    do instead of the change."""
    names = {info.alias or name for name, info in model.model_fields.items()}
    assert set(fields) <= names, f"not fields of {model.__name__}: {set(fields) - names}"
    rules = model.model_json_schema(by_alias=True)["x-kubernetes-validations"]
    for name, instead in fields.items():
        rule = next(r for r in rules if r.get("fieldPath") == f".{name}")
        assert rule["message"].startswith(f"{name} is immutable: {instead}")
        assert f"self.{name} == oldSelf.{name}" in rule["rule"]
        assert "create" in instead or "add" in instead or "attach" in instead, f"{name}: what to do instead?"
