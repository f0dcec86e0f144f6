"""The chart's alert rules under promtool, and every metric the rules and the dashboard use exists."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.gitops import gitops_support as gs

pytestmark = pytest.mark.tools

RULES = gs.RULES
DASHBOARD = gs.DASHBOARD
PROMTOOL_TESTS = gs.HERE / "promtool"
METRICS_PY = gs.REPO / "operator" / "amlops" / "metrics.py"
# Metrics the rules and dashboard use that operator/amlops/metrics.py does not declare yet (asked of the lead):
# amlops_resource_condition{kind,namespace,name,type} = 1 while that condition is True, else 0.
REQUESTED = {"amlops_resource_condition"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = gs.require_tool("promtool", "prometheus")
    return subprocess.run(
        [promtool, *args], cwd=PROMTOOL_TESTS, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_file_is_valid() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests() -> None:
    files = sorted(p.name for p in PROMTOOL_TESTS.glob("*.yaml"))
    assert files
    result = _promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = {
        case["alertname"]
        for f in PROMTOOL_TESTS.glob("*.yaml")
        for test in yaml.safe_load(f.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - tested == set(), "alerts with no firing test case"


def test_rules_and_dashboard_use_only_declared_metrics() -> None:
    declared = set(re.findall(r'"(amlops_[a-z_]+)"', METRICS_PY.read_text()))
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in gs.dashboard_exprs() + gs.rule_exprs()
        for name in re.findall(r"\bamlops_[a-z_]+", expr)
    }
    assert used - declared - REQUESTED == set()
    assert used >= REQUESTED, "REQUESTED lists a metric nothing uses any more"


def test_dashboard_shape() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            # Provisioned by the Grafana sidecar into any Grafana: the data source must be the variable.
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
