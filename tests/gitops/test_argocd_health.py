"""argocd/health.lua on every kind and the job actions, run by a real Lua 5.1 the way Argo CD runs them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from amlops.api import KINDS, CustomResource
from amlops.api.job import is_job
from tests.gitops import gitops_support as gs

pytestmark = pytest.mark.tools

EXPECTED = gs.expected()
ACTIONS = gs.ARGOCD / "actions"
ARGOCD_README = gs.ARGOCD / "README.md"


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == gs.fixture_names()


@pytest.mark.parametrize("name", gs.fixture_names())
def test_health_of_fixture(name: str, tmp_path: Path) -> None:
    want = EXPECTED[name]
    result = gs.health(gs.load_fixture(name), tmp_path)
    assert result["status"] == want["argocd"], result
    assert want["message"] in result["message"], result


def _with_status(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["status"].update(changes)
    return out


def test_missing_observed_generation_no_conditions_unknown_ready(tmp_path: Path) -> None:
    ready = gs.load_fixture("amlcompute-ready.yaml")
    # observedGeneration missing: amlops has not written this status (someone else did, or an old version).
    no_generation = copy.deepcopy(ready)
    del no_generation["status"]["observedGeneration"]
    assert gs.health(no_generation, tmp_path) == {"status": "Progressing", "message": "Waiting for amlops"}
    # Seen but no conditions yet, and Ready=Unknown: converging, never Healthy.
    assert gs.health(_with_status(ready, conditions=[]), tmp_path)["status"] == "Progressing"
    unknown = [{"type": "Ready", "status": "Unknown", "reason": "WaitingForAzure", "message": ""}]
    assert gs.health(_with_status(ready, conditions=unknown), tmp_path) == {
        "status": "Progressing",
        "message": "WaitingForAzure",
    }


@pytest.mark.parametrize(
    "body", ['return {status = string.format("%s", "Healthy")}', 'return {status = ("x"):upper()}']
)
def test_harness_has_argocds_sandbox(body: str, tmp_path: Path) -> None:
    # argocd-cm scripts run without the string library in Argo CD; a script relying on it must fail here too.
    script = tmp_path / "uses-string.lua"
    script.write_text(body + "\n")
    with pytest.raises(AssertionError, match="script error"):
        gs.run_lua(script, gs.load_fixture("amlcompute-ready.yaml"), tmp_path)


def test_terminal_job_conditions_win_over_suspend(tmp_path: Path) -> None:
    # Complete and Failed are sticky: a finished job edited to suspend: true stays Healthy / Degraded.
    for name, status in (("paralleljob-complete.yaml", "Healthy"), ("paralleljob-failed.yaml", "Degraded")):
        job = gs.load_fixture(name)
        job["spec"]["suspend"] = True
        assert gs.health(job, tmp_path)["status"] == status


def test_stalled_wins_over_ready(tmp_path: Path) -> None:
    # A compute that was Ready and then hit a terminal error (e.g. an immutable field changed) is Degraded.
    obj = gs.load_fixture("amlcompute-ready.yaml")
    stalled = {"type": "Stalled", "status": "True", "reason": "ImmutableFieldChanged", "message": "vmSize is immutable"}
    obj["status"]["conditions"] = [stalled if c["type"] == "Stalled" else c for c in obj["status"]["conditions"]]
    assert gs.health(obj, tmp_path) == {"status": "Degraded", "message": "ImmutableFieldChanged: vmSize is immutable"}


@pytest.mark.parametrize("name", [n for n in gs.fixture_names() if "actions" in EXPECTED[n]])
def test_action_discovery(name: str, tmp_path: Path) -> None:
    actions = gs.run_lua(ACTIONS / "discovery.lua", gs.load_fixture(name), tmp_path)
    # Lua's empty table is encoded as [] (as Argo CD's gopher-json does; Argo reads it as "no actions").
    assert sorted(actions or {}) == EXPECTED[name]["actions"]
    for action in actions or {}:
        assert (ACTIONS / action / "action.lua").is_file()
        assert actions[action]["iconClass"].startswith("fa ")


def _same_object(a: Any, b: Any) -> bool:
    """Equal up to Lua's empty table, which comes back as [] whether it was {} or [] (Argo CD cleans it too)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_object(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_object(x, y) for x, y in zip(a, b, strict=True))
    if a in ({}, []) and b in ({}, []):
        return True
    return bool(a == b)


@pytest.mark.parametrize(
    ("action", "fixture", "suspend"),
    [("suspend", "paralleljob-running.yaml", True), ("resume", "paralleljob-suspended.yaml", False)],
)
def test_action_changes_only_spec_suspend(action: str, fixture: str, suspend: bool, tmp_path: Path) -> None:
    before = gs.load_fixture(fixture)
    after = gs.run_lua(ACTIONS / action / "action.lua", before, tmp_path)
    assert after["spec"]["suspend"] is suspend
    want = yaml.safe_load(yaml.safe_dump(before))  # the same plain JSON types the harness sees
    want["spec"]["suspend"] = suspend
    assert _same_object(after, want)


def _readme_argocd_cm() -> dict[str, Any]:
    text = ARGOCD_README.read_text()
    start = text.index("```yaml\n") + len("```yaml\n")
    block: dict[str, Any] = yaml.safe_load(text[start : text.index("```", start)])
    assert block["kind"] == "ConfigMap"
    assert block["metadata"]["name"] == "argocd-cm"
    return block


def test_readme_argocd_cm_carries_the_scripts_verbatim_for_every_kind() -> None:
    """Every kind of the registry has the health script, every job kind the actions, and nothing else."""
    data = _readme_argocd_cm()["data"]
    health = gs.HEALTH_LUA.read_text()
    keys = {key for key in data if key.startswith("resource.customizations.")}
    assert keys == {f"resource.customizations.health.amlops.io_{kind.kind()}" for kind in KINDS} | {
        f"resource.customizations.actions.amlops.io_{kind.kind()}" for kind in KINDS if is_job(kind)
    }
    for kind in KINDS:
        assert data[f"resource.customizations.health.amlops.io_{kind.kind()}"] == health
        if not is_job(kind):
            continue
        actions = yaml.safe_load(data[f"resource.customizations.actions.amlops.io_{kind.kind()}"])
        assert actions["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
        definitions = {d["name"]: d["action.lua"] for d in actions["definitions"]}
        assert definitions == {name: (ACTIONS / name / "action.lua").read_text() for name in ("suspend", "resume")}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind())
def test_every_kind_has_health_fixtures(kind: type[CustomResource]) -> None:
    """The Lua runs on objects of every kind of the registry: at least a healthy and a progressing one."""
    fixtures = [gs.load_fixture(name) for name in gs.fixture_names()]
    assert {f["kind"] for f in fixtures} <= {k.kind() for k in KINDS}, "a fixture of a kind amlops does not have"
    healths = {EXPECTED[name]["argocd"] for name in gs.fixture_names() if gs.load_fixture(name)["kind"] == kind.kind()}
    assert {"Healthy", "Progressing"} <= healths, f"add fixtures of {kind.kind()} to tests/gitops/fixtures"
